"""The optimised paths compute what the reference paths compute (issue 5).

Optimised → reference: Swin's window-ordered stream → blocks on the spatial map (pad, roll,
partition, reverse, roll); fused attention → explicit softmax (the ``capture`` path); chunked
inference → one piece; the patch embedding's matmul → the convolution; cached masks → rebuilt
ones; gradient checkpointing → none; ``torch.compile`` → eager, without graph breaks, at two input
sizes. fp32 results agree to 1e-5 relative (norm of the difference over the norm of the reference).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.layers import PatchEmbed
from vitkit.layers.window import window_order, window_partition
from vitkit.models.vit import inference_chunk


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
def test_swin_window_stream_equals_spatial_reference_inference(size):
    model = tiny_swin().eval()
    x = torch.randn(3, 3, *size)
    with torch.inference_mode():
        set_all(model, fast_path=False, chunk_bytes=0)
        ref = model(x)
        set_all(model, fast_path=True, chunk_bytes=0)
        fast = model(x)
        set_all(model, chunk_bytes=1)  # the smallest budget: chunks of single images where tokens allow
        chunked = model(x)
        again = model(x)  # cached masks and indices
    assert_rel(fast, ref)
    assert_rel(chunked, ref)
    torch.testing.assert_close(again, chunked, rtol=0, atol=0)


def test_swin_window_stream_gradients_equal_reference():
    model = tiny_swin().train()
    x = torch.randn(2, 3, 40, 52)
    results = []
    for fast in (False, True):
        set_all(model, fast_path=fast)
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
        attn._mask_cache.clear()
        attn._batched_mask = None
        fresh = model(x)
    torch.testing.assert_close(cached, fresh, rtol=0, atol=0)
    model.set_input_size(window_size=4)
    with torch.no_grad():
        out = model(x)
        set_all(model, fast_path=False)
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
    import vitkit.models.swin as swin_mod

    model = tiny_swin().eval()
    x = torch.randn(3, 3, *size)
    with torch.inference_mode():
        monkeypatch.setattr(swin_mod, "ATTENTION_CHUNK_PAIRS", pairs)
        chunked = model(x)
        again = model(x)  # cached masks
        monkeypatch.setattr(swin_mod.WindowAttention, "_attention_in_chunks",
                            lambda self, q, k, v, bias: swin_mod.attention(
                                q, k, v, self._batched(bias, q.shape[0]) if bias.shape[0] > 1 else bias)[0]
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
    import vitkit.models.swin as swin_mod
    import vitkit.models.vit as vit_mod

    calls = []
    for mod in (swin_mod, vit_mod):
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
    assert model._class_token_tail()
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
    assert not gap._class_token_tail()  # average pooling reads every token
    seen = []
    handle = model.blocks[-1].mlp.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    assert not model._class_token_tail()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert seen == [torch.Size([2, 65, 64])]  # the hook saw every token
    handle.remove()
    model.blocks[-1].attn.capture = True
    assert not model._class_token_tail()


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
def test_vit_chunked_inference_equals_one_piece():
    model = tiny_vit().eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        model.chunk_bytes = 0
        ref = model(x)
        model.chunk_bytes = 1
        chunked = model(x)
    assert_rel(chunked, ref)
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

    from vitkit.layers import workspace

    model = build().eval()
    xs = [torch.randn(b, 3, size, size) for b in (3, 1, 2)]
    with torch.inference_mode():
        monkeypatch.setattr(workspace, "enabled", False)
        refs = [model(x) for x in xs]
        monkeypatch.setattr(workspace, "enabled", True)
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
    from vitkit.layers import workspace

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
