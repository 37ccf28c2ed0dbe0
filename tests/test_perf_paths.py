"""The optimised paths compute what the reference paths compute (issue 5).

Optimised → reference: everything → ``vitkit.fast_paths(False)``; Swin's window-ordered stream →
blocks on the spatial map (pad, roll, partition, reverse, roll); fused attention → explicit softmax
(the ``capture`` path); chunked inference → one piece; the patch embedding's matmul → the
convolution; cached masks → rebuilt ones; gradient checkpointing → none; ``torch.compile`` → eager,
without graph breaks, at two input sizes. fp32 results agree to 1e-5 relative (norm of the
difference over the norm of the reference). Hooks anywhere in a block or stage see the reference.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.layers import PatchEmbed, attention, fastpath, workspace
from vitkit.layers.fastpath import inference_chunk, may_take
from vitkit.layers.window import window_order, window_partition
from vitkit.models import swin_fast, vit_fast


def assert_rel(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    err = float((a - b).detach().norm() / b.detach().norm().clamp_min(1e-12))
    assert err <= tol, f"relative error {err:.2e} > {tol:.0e}"


def forward_backward(model: torch.nn.Module, run) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Output of ``run()`` and every parameter's gradient of a loss on it."""
    model.zero_grad()
    out = run()
    out.square().mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same_forward_backward(got, ref) -> None:
    assert_rel(got[0], ref[0])
    for name, g in ref[1].items():
        assert_rel(got[1][name], g, 1e-4 if g.norm() < 1e-3 else 1e-5)


def tiny_swin(**kw) -> torch.nn.Module:  # window 7 on 4×4 patches: stage maps 10..2 for 40×40 inputs
    return vitkit.create_model("swin_tiny_patch4_window7_224", embed_dim=24, depths=(2, 2, 2, 2),
                               num_heads=(1, 2, 2, 4), **kw)


def tiny_vit(**kw) -> torch.nn.Module:
    return vitkit.create_model("vit_micro_patch4_32", **kw)


def set_all(model: torch.nn.Module, **attrs) -> None:
    for m in model.modules():
        for k, v in attrs.items():
            if hasattr(m, k):
                setattr(m, k, v)


def tiny_hybrid(**kw) -> torch.nn.Module:  # ResNet stem /16, 1×1 patches: 2×2 tokens for 32×32 inputs
    return vitkit.create_model("vit_base_r50_s16_224", img_size=32, stem_depths=(1, 1, 1), embed_dim=32,
                               depth=2, num_heads=2, mlp_dim=64, num_classes=10, **kw)


FAST_FUNCTIONS = [(vit_fast, "block_inplace"), (vit_fast, "features_for_head"), (vit_fast, "forward_queries"),
                  (swin_fast, "window_stream"), (swin_fast, "block_windows"), (swin_fast, "attention_in_chunks"),
                  (swin_fast, "_cache"), (workspace, "linear")]


def spy_fast_functions(monkeypatch) -> list[str]:
    """Record every call of a speed-path function (they still run)."""
    calls: list[str] = []
    for mod, name in FAST_FUNCTIONS:
        orig = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, orig=orig, name=name, **k: calls.append(name) or orig(*a, **k))
    return calls


# --------------------------------------------------------------------------- window mathematics
@pytest.mark.parametrize("H,W,shift", [(14, 21, 3), (10, 13, 3), (7, 7, 0), (12, 9, 0)])
def test_window_order_is_pad_roll_partition_in_one_gather(H, W, shift):
    wh = ww = 7
    Hp, Wp = -(-H // wh) * wh, -(-W // ww) * ww
    x = F.pad(torch.randn(2, H, W, 5), (0, 0, 0, Wp - W, 0, Hp - H))
    ref = window_partition(torch.roll(x, (-shift, -shift), dims=(1, 2)), wh, ww).reshape(2, -1, 5)
    order = window_order(H, W, wh, ww, shift, shift)
    assert sorted(order.tolist()) == list(range(Hp * Wp))  # a permutation
    torch.testing.assert_close(x.flatten(1, 2)[:, order], ref, rtol=0, atol=0)


# ------------------------------------------------------------------------------ Swin fast path
@pytest.mark.parametrize("size", [(56, 56), (40, 52)])  # window multiples everywhere; padding + shift
def test_swin_window_stream_equals_spatial_reference_inference(size, monkeypatch):
    model = tiny_swin().eval()
    x = torch.randn(3, 3, *size)
    with torch.inference_mode():
        with vitkit.fast_paths(False):
            ref = model(x)
        fastpath.CHUNK_BYTES = 0
        try:
            fast = model(x)
            fastpath.CHUNK_BYTES = 1  # the smallest budget: chunks of single images where tokens allow
            chunked = model(x)
            again = model(x)  # cached masks and indices
        finally:
            fastpath.CHUNK_BYTES = None
        monkeypatch.setattr(fastpath, "inference_chunk", lambda batch, *a, **k: 1)  # one image at a time
        forced = model(x)
    assert_rel(fast, ref)
    assert_rel(chunked, ref)
    assert_rel(forced, ref)
    torch.testing.assert_close(again, chunked, rtol=0, atol=0)


def test_swin_window_stream_gradients_equal_reference():
    model = tiny_swin().train()
    x = torch.randn(2, 3, 40, 52)
    results = []
    for fast in (False, True):
        with vitkit.fast_paths(fast):
            results.append(forward_backward(model, lambda: model(x)))
    assert_same_forward_backward(results[1], results[0])


def test_swin_hooks_on_blocks_see_spatial_maps():
    model = tiny_swin().eval()
    seen = []
    model.stages[1].blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    with torch.no_grad():
        model(torch.randn(1, 3, 56, 56))
    assert seen == [torch.Size([1, 7, 7, 48])]  # (B, H, W, C): the reference path ran for the hook


def test_swin_cached_mask_follows_table_updates_and_window_changes():
    model = tiny_swin().eval()
    x = torch.randn(1, 3, 56, 56)
    attn = model.stages[0].blocks[1].attn
    with torch.no_grad():
        model(x)  # fills the caches
        attn.relative_position_bias_table.add_(0.5 * torch.randn_like(attn.relative_position_bias_table))
        cached = model(x)
        swin_fast.clear_caches(attn)
        fresh = model(x)
    torch.testing.assert_close(cached, fresh, rtol=0, atol=0)
    model.set_input_size(window_size=4)
    with torch.no_grad():
        out = model(x)
        with vitkit.fast_paths(False):
            ref = model(x)
    assert_rel(out, ref)


# ---------------------------------------------------------------------------- fused attention
@pytest.mark.parametrize("build,size", [(tiny_vit, 32), (tiny_swin, 40)])
def test_fused_attention_equals_explicit_softmax(build, size):
    model = build().eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        fused = model(x)
        set_all(model, capture=True)
        explicit = model(x)
    assert_rel(fused, explicit)


@pytest.mark.parametrize("pairs", [1, 3, 8, 256])
@pytest.mark.parametrize("size", [(56, 56), (40, 52)])
def test_swin_chunked_window_attention_equals_fused_kernel(pairs, size, monkeypatch):
    """Inference attention runs in chunks of (window, head) pairs; chunks smaller than an image's
    windows (mask slices) and larger (mask repeated over images), with and without shift masks
    and padding, against the fused kernel and against the explicit softmax."""
    model = tiny_swin().eval()
    x = torch.randn(3, 3, *size)
    with torch.inference_mode():
        monkeypatch.setattr(swin_fast, "ATTENTION_CHUNK_PAIRS", pairs)
        chunked = model(x)
        again = model(x)  # cached masks
        monkeypatch.setattr(swin_fast, "attention_in_chunks",
                            lambda attn, q, k, v, bias: attention(
                                q, k, v, swin_fast.batched_mask(attn, bias, q.shape[0]) if bias.shape[0] > 1 else bias)[0]
                            .transpose(1, 2).contiguous())
        fused = model(x)
        set_all(model, capture=True)
        explicit = model(x)
    assert_rel(chunked, fused)
    assert_rel(chunked, explicit)
    torch.testing.assert_close(again, chunked, rtol=0, atol=0)


@pytest.mark.parametrize("build,size", [(tiny_vit, 32), (tiny_swin, 40)])
def test_fused_residual_inference_equals_module_by_module(build, size, monkeypatch):
    """In inference the output projections accumulate into the residual stream in place; a hook
    on a projection (analysis, feature extraction) turns that off, so the two can be compared."""
    calls = []
    for mod in (swin_fast, vit_fast):
        orig = mod.residual_linear_
        monkeypatch.setattr(mod, "residual_linear_", lambda *a, orig=orig: calls.append(1) or orig(*a))
    model = build().eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        fused = model(x)
        fused_calls = len(calls)
        seen = []
        for n, m in model.named_modules():
            if n.endswith("attn.proj"):
                m.register_forward_hook(lambda *a: seen.append(1))
        plain = model(x)
    tail = 1 if build is tiny_vit else 0  # ViT's last block runs the class-token tail instead
    assert fused_calls == 2 * (len(seen) - tail) > 0 and len(calls) == fused_calls  # fused, then module by module
    assert_rel(fused, plain)


@pytest.mark.parametrize("kw", [{}, {"init_values": 0.1}, {"representation_size": 48}, {"drop_path_rate": 0.2}])
def test_vit_class_token_tail_equals_full_last_block(kw):
    """model(x) runs the last block on the [class] token's row only (the head reads nothing
    else): logits and every gradient equal the full path's (forward_features → forward_head)."""
    model = tiny_vit(**kw)
    assert vit_fast.tail_applies(model)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        model.eval()
        assert_rel(model(x), model.forward_head(model.forward_features(x)))
    model.train()
    results = []
    for run in (lambda: model(x), lambda: model.forward_head(model.forward_features(x))):
        torch.manual_seed(0)  # the same stochastic-depth draws (one per image, whatever the tokens)
        results.append(forward_backward(model, run))
    assert_same_forward_backward(results[0], results[1])


def test_vit_class_token_tail_steps_aside_for_watchers():
    model = tiny_vit().eval()
    gap = vitkit.create_model("vit_micro_patch7_gap_28")
    assert not vit_fast.tail_applies(gap)  # average pooling reads every token
    seen = []
    handle = model.blocks[-1].mlp.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    assert not vit_fast.tail_applies(model)
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert seen == [torch.Size([2, 65, 64])]  # the hook saw every token
    handle.remove()
    model.blocks[-1].attn.capture = True
    assert not vit_fast.tail_applies(model)


def test_stages_and_blocks_leave_the_callers_tensor_alone():
    swin, vit = tiny_swin().eval(), tiny_vit().eval()
    maps = torch.randn(1, 7, 7, 24)  # stage 0 of Swin takes the map as is (no merging, one window)
    tokens = torch.randn(2, 65, 64)
    saved = maps.clone(), tokens.clone()
    with torch.no_grad():
        swin.stages[0](maps)
        vit.blocks[0](tokens)
    torch.testing.assert_close(maps, saved[0], rtol=0, atol=0)
    torch.testing.assert_close(tokens, saved[1], rtol=0, atol=0)


# ------------------------------------------------------------------------ ViT and patch embedding
def test_vit_chunked_inference_equals_one_piece(monkeypatch):
    model = tiny_vit().eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        fastpath.CHUNK_BYTES = 0
        try:
            ref = model(x)
            fastpath.CHUNK_BYTES = 1
            chunked = model(x)
        finally:
            fastpath.CHUNK_BYTES = None
        monkeypatch.setattr(fastpath, "inference_chunk", lambda batch, *a, **k: 2)  # 2 + 2 + 1 images
        assert vit_fast.inference_chunk(model, torch.empty(5, 65, 64)) == 2
        forced = model(x)
        features = model.forward_features(x)
        monkeypatch.undo()
        with vitkit.fast_paths(False):
            ref_features = model.forward_features(x)
    assert_rel(chunked, ref)
    assert_rel(forced, ref)
    assert_rel(features, ref_features)
    assert inference_chunk(5, 65, 128, 4, budget=1, min_tokens=130) == 2  # 2 images for 130 tokens: 2 + 2 + 1
    assert inference_chunk(8, 100, 10, 4, budget=1, min_tokens=600) == 4  # 6 needed: balanced 4 + 4, not 6 + 2
    assert inference_chunk(8, 197, 3072, 4, budget=8 << 20, min_tokens=768) == 4
    assert inference_chunk(8, 49, 3072, 4, budget=8 << 20, min_tokens=768) == 0  # one piece
    assert inference_chunk(8, 197, 3072, 4, budget=0) == 0


@pytest.mark.parametrize("patch,chans,pad", [(4, 3, True), (16, 3, False), (1, 8, False)])
def test_patch_embedding_matmul_equals_convolution(patch, chans, pad):
    pe = PatchEmbed(patch, chans, 24, norm=False, pad=pad)
    x = torch.randn(2, chans, 35 if pad else 32, 34 if pad else 48)
    xp = F.pad(x, (0, -x.shape[-1] % patch, 0, -x.shape[-2] % patch))
    ref = F.conv2d(xp, pe.proj.weight, pe.proj.bias, stride=patch).permute(0, 2, 3, 1)
    assert_rel(pe(x), ref)


@pytest.mark.parametrize("build,size", [(tiny_vit, 32), (tiny_swin, 40)])
def test_grad_checkpointing_gives_the_same_gradients(build, size):
    model = build().train()
    x = torch.randn(2, 3, size, size)
    out = []
    for ckpt in (False, True):
        model.set_grad_checkpointing(ckpt)
        model.zero_grad()
        model(x).logsumexp(-1).sum().backward()
        out.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert_rel(out[1], out[0])


# ------------------------------------------------------------------------------- torch.compile
@pytest.mark.parametrize("build,sizes", [(tiny_vit, (32, 48)), (tiny_swin, (56, 40))])
def test_compiles_without_graph_breaks_at_two_sizes(build, sizes):
    torch._dynamo.reset()
    model = build().eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True, dynamic=False)  # fullgraph: a break raises
    with torch.no_grad():
        for s in sizes:
            x = torch.randn(2, 3, s, s)
            assert_rel(compiled(x), model(x))


# ---------------------------------------------------------------------------- inference buffers
@pytest.mark.parametrize("build,size", [(tiny_vit, 32), (tiny_swin, 56)])
def test_workspace_buffers_give_the_same_outputs_and_are_per_thread(build, size, monkeypatch):
    """The fused inference paths write qkv and MLP activations into per-thread buffers kept
    between calls: the outputs equal those without reuse, calls of other sizes and concurrent
    threads do not disturb one another, release() frees them."""
    import threading

    model = build().eval()
    xs = [torch.randn(b, 3, size, size) for b in (3, 1, 2)]
    with torch.inference_mode():
        workspace.release()
        monkeypatch.setattr(workspace, "MAX_BYTES", 0)  # no activation fits: every one from the allocator
        refs = [model(x) for x in xs]
        assert workspace.held_bytes() == 0
        monkeypatch.undo()
        workspace.release()
        outs = [model(x) for x in xs]
    assert workspace.held_bytes() > 0
    for out, ref in zip(outs, refs):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)

    errors, results = [], {}

    def worker(i: int) -> None:
        try:
            with torch.inference_mode():
                results[i] = [model(xs[i % 3]) for _ in range(5)]
        except Exception as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, outs_i in results.items():
        for out in outs_i:
            torch.testing.assert_close(out, refs[i % 3], rtol=0, atol=0)
    workspace.release()
    assert workspace.held_bytes() == 0


def test_workspace_is_not_used_when_a_hook_watches_the_layers():
    model = tiny_vit().eval()
    fc1 = model.blocks[0].mlp.fc1
    seen = []
    fc1.register_forward_hook(lambda m, a, out: seen.append((a[0].clone(), out)))
    workspace.release()
    with torch.inference_mode():
        model(torch.randn(2, 3, 32, 32))
        model(torch.randn(2, 3, 32, 32))
        for inp, out in seen:  # what the hook kept is fc1's output still: not GELU'd in place, not overwritten
            torch.testing.assert_close(out, F.linear(inp, fc1.weight, fc1.bias))


# ------------------------------------------------------------------ the one switch: fast_paths
SWITCH_MODELS = {  # name → (build, input size)
    "vit_token": (tiny_vit, (32, 32)),
    "vit_gap": (lambda: tiny_vit(global_pool="avg"), (32, 32)),
    "hybrid": (tiny_hybrid, (32, 32)),
    "swin_odd": (tiny_swin, (52, 60)),  # 13×15 patches: padding and shift in every stage
}


@pytest.mark.parametrize("name", SWITCH_MODELS)
def test_fast_paths_off_runs_the_reference_and_computes_the_same(name, monkeypatch):
    """``with vitkit.fast_paths(False)`` no speed-path function runs (spies count them), and the
    outputs (inference) and every gradient (training) equal the fast paths' within fp32 tolerance."""
    build, size = SWITCH_MODELS[name]
    torch.manual_seed(0)
    model = build()
    x = torch.randn(3, 3, *size)
    calls = spy_fast_functions(monkeypatch)
    monkeypatch.setattr(fastpath, "CHUNK_BYTES", 1)  # chunk wherever the token counts allow it
    model.eval()
    with torch.inference_mode():
        fast = model(x)
        fast_features = model.forward_features(x)
        fast_calls = set(calls)
        calls.clear()
        with vitkit.fast_paths(False):
            ref = model(x)
            ref_features = model.forward_features(x)
    assert calls == []
    assert fast_calls >= ({"_cache", "window_stream", "attention_in_chunks"} if name.startswith("swin")
                          else {"block_inplace", "linear"})
    assert_rel(fast, ref)
    assert_rel(fast_features, ref_features)

    model.train()
    with vitkit.fast_paths(False):
        ref_train = forward_backward(model, lambda: model(x))
    assert calls == []
    fast_train = forward_backward(model, lambda: model(x))
    # training has speed paths too: the window stream, the class-token tail (GAP reads every token)
    assert set(calls) == {"vit_token": {"features_for_head", "forward_queries"}, "vit_gap": set(),
                          "hybrid": {"features_for_head", "forward_queries"}, "swin_odd": {"window_stream", "block_windows", "_cache"}}[name]
    assert_same_forward_backward(fast_train, ref_train)


def test_fast_paths_switch_nests_and_is_per_thread():
    import threading

    assert fastpath.fast_paths_enabled()
    with vitkit.fast_paths(False):
        assert not fastpath.fast_paths_enabled() and not may_take()
        seen = []
        t = threading.Thread(target=lambda: seen.append(fastpath.fast_paths_enabled()))
        t.start()
        t.join()
        assert seen == [True]  # another thread keeps the process default
        with vitkit.fast_paths(True):
            assert fastpath.fast_paths_enabled()
        assert not fastpath.fast_paths_enabled()
    assert fastpath.fast_paths_enabled()
    fastpath.set_fast_paths(False)
    try:
        assert not fastpath.fast_paths_enabled()
        with vitkit.fast_paths(True):
            assert fastpath.fast_paths_enabled()
        assert not fastpath.fast_paths_enabled()
    finally:
        fastpath.set_fast_paths(True)


def test_may_take_conditions():
    blk = tiny_vit().blocks[0]
    blk.eval()
    assert may_take(blk, traceable=True)
    with torch.no_grad():
        assert may_take(blk, inference=True)
        blk.mlp.drop1.train()  # a submodule in training mode: dropout expected
        assert not may_take(blk, inference=True) and may_take(blk)
        blk.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not may_take(blk, inference=True) and may_take(blk)
    assert not may_take(blk, inference=True)  # autograd on
    handle = blk.mlp.fc1.register_forward_pre_hook(lambda m, a: None)  # deep in the subtree
    assert not may_take(blk) and may_take(blk.attn) and may_take()  # caches skip no module: hooks do not matter
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, a, out: None)  # global
    try:
        assert not may_take(blk.attn)
    finally:
        handle.remove()
    assert may_take(blk)


def test_hook_on_a_swin_blocks_norm_sees_the_spatial_map():
    """A hook anywhere inside a stage (here the first block's norm1) makes the stage run its blocks
    on the (B, H, W, C) map: it sees the reference layout, not window-ordered (B, L, C) tokens."""
    model = tiny_swin().eval()
    x = torch.randn(2, 3, 52, 60)
    with torch.no_grad():
        fast = model(x)
    seen = []
    model.stages[0].blocks[0].norm1.register_forward_hook(lambda m, a, out: seen.append(a[0].shape))
    model.stages[1].blocks[1].mlp.fc1.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    with torch.no_grad():
        hooked = model(x)
    assert seen == [torch.Size([2, 13, 15, 24]), torch.Size([2, 7, 8, 4 * 48])]
    assert_rel(hooked, fast)


def test_hook_on_a_vit_blocks_fc1_sees_every_token(monkeypatch):
    """A hook on a block's mlp.fc1 makes that block (and only it) stand aside from the in-place
    residual path and the last block from the class-token tail; the hook gets (B, N, hidden)."""
    calls = spy_fast_functions(monkeypatch)
    model = tiny_vit().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fast = model(x)
        depth = len(model.blocks)
        assert calls.count("block_inplace") == depth - 1 and calls.count("forward_queries") == 1
        calls.clear()
        seen = []
        for i in (0, depth - 1):
            model.blocks[i].mlp.fc1.register_forward_hook(lambda m, a, out: seen.append(out.shape))
        hooked = model(x)
    assert seen == [torch.Size([2, 65, 128])] * 2
    assert calls.count("block_inplace") == depth - 2 and "forward_queries" not in calls
    assert_rel(hooked, fast)


def test_train_config_drops_the_legacy_keep_freed_memory_key(caplog):
    from vitkit.train.config import TrainConfig

    saved = dict(TrainConfig().to_dict(), keep_freed_memory=False)  # a run folder of an older version
    with caplog.at_level("WARNING", logger="vitkit.train"):
        cfg = TrainConfig.from_dict(saved)
    assert cfg == TrainConfig() and not hasattr(cfg, "keep_freed_memory")
    assert "keep_freed_memory" in caplog.text
    with pytest.raises(ValueError, match="unknown config field"):
        TrainConfig.from_dict(dict(saved, no_such_field=1))
