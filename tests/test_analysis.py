"""Invariants of the attention analyses (ViT §4.5): captured maps, rollout, attention distance."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

import vitkit
from vitkit.analysis import (
    WindowGeometry,
    apply_window_attention,
    attention_distance,
    attention_layers,
    attention_rollout,
    capture_attention,
    mean_attention_distance,
    merge_rollout,
    patch_distances,
    rollout_map,
    window_attention_to_full,
)
from vitkit.models.vit import VisionTransformer


def _vit(**kw) -> torch.nn.Module:
    return vitkit.create_model("vit_micro_patch4_32", **kw).eval()


def _swin(**kw) -> torch.nn.Module:
    return vitkit.create_model("swin_micro_patch2_window4_32", **kw).eval()


# ------------------------------------------------------------------------------- capture
def test_vit_captured_map_equals_plain_softmax_from_module_weights():
    model = _vit()
    x = torch.randn(2, 3, 32, 32)
    attn = model.blocks[2].attn
    inputs = {}
    handle = attn.register_forward_pre_hook(lambda m, args: inputs.update(x=args[0].detach()))
    with torch.no_grad():
        fused = model(x)
        inputs.clear()
        with capture_attention(model, [2]) as rec:
            captured_out = model(x)
    handle.remove()
    assert set(rec.maps) == {2}  # only the requested layer
    h, hd = attn.num_heads, attn.head_dim
    t = inputs["x"]  # (B, N, D): the attention's input
    B, N, D = t.shape
    qkv = t @ attn.qkv.weight.T + attn.qkv.bias  # (B, N, 3D), features ordered (3, heads, hd)
    q = qkv[..., :D].reshape(B, N, h, hd).transpose(1, 2)
    k = qkv[..., D: 2 * D].reshape(B, N, h, hd).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
    torch.testing.assert_close(rec.maps[2], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(captured_out, fused, atol=1e-5, rtol=1e-5)  # capturing changes nothing
    assert all(not b.attn.capture and b.attn.attn_map is None for b in model.blocks)  # restored


def _relative_bias_by_loops(table: torch.Tensor, wh: int, ww: int, window: int) -> torch.Tensor:
    """(heads, N, N) bias: row (dy + M−1)·(2M−1) + (dx + M−1) of the table for query i, key j."""
    pos = [(r, c) for r in range(wh) for c in range(ww)]
    N = len(pos)
    out = torch.empty(table.shape[1], N, N)
    for i, (ri, ci) in enumerate(pos):
        for j, (rj, cj) in enumerate(pos):
            out[:, i, j] = table[(ri - rj + window - 1) * (2 * window - 1) + (ci - cj + window - 1)]
    return out


def test_swin_captured_map_equals_plain_softmax_with_bias_and_shift_mask():
    model = _swin()
    x = torch.randn(2, 3, 40, 40)  # stage 0 is 20×20 in 4×4 windows; the shifted block needs its mask
    attn = model.stages[0].blocks[1].attn  # a shifted block
    seen = {}
    handle = attn.register_forward_pre_hook(lambda m, args: seen.update(x=args[0], wh=args[1], ww=args[2], mask=args[3]))
    with torch.no_grad(), capture_attention(model, [1]) as rec:
        model(x)
    handle.remove()
    t, wh, ww, mask = seen["x"], seen["wh"], seen["ww"], seen["mask"]
    assert mask is not None
    BnW, N, C = t.shape
    h, hd = attn.num_heads, attn.head_dim
    qkv = t @ attn.qkv.weight.T + attn.qkv.bias
    q = qkv[..., :C].reshape(BnW, N, h, hd).transpose(1, 2)
    k = qkv[..., C: 2 * C].reshape(BnW, N, h, hd).transpose(1, 2)
    logits = q @ k.transpose(-1, -2) / math.sqrt(hd)
    logits = logits + _relative_bias_by_loops(attn.relative_position_bias_table.detach(), wh, ww, attn.window_size)
    nW = mask.shape[0]
    logits = logits.view(BnW // nW, nW, h, N, N).masked_fill(~mask[None, :, None], float("-inf")).view(BnW, h, N, N)
    torch.testing.assert_close(rec.maps[1], torch.softmax(logits, dim=-1), atol=1e-6, rtol=1e-5)


def test_capture_selects_layers_and_callback_keeps_nothing():
    model = _vit()
    x = torch.randn(1, 3, 32, 32)
    got = []
    with torch.no_grad(), capture_attention(model, [-1, 0], callback=lambda layer, a, g: got.append(layer.index)) as rec:
        model(x)
    assert got == [0, 5] and rec.maps == {}
    with pytest.raises(ValueError, match="out of range"):
        with capture_attention(model, [6]):
            pass
    with pytest.raises(ValueError, match="'all'"):
        with capture_attention(model, "some"):
            pass


def test_analyses_run_through_wrappers_dataparallel_and_compile():
    """A model wrapped for training (DataParallel/DDP, torch.compile) is analysed through its
    wrapper: the same maps, rollout and position-embedding similarity as the bare model."""
    from vitkit.analysis import position_embedding_similarity

    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    for make in (_vit, _swin):
        model = make()
        with torch.no_grad(), capture_attention(model, [0, -1]) as rec:
            model(x)
        ref = dict(rec.maps)
        wrappers = [torch.nn.DataParallel(model)]
        if make is _vit:  # compiling costs seconds per capture set: one model; the unwrapping is shared
            wrappers.append(torch.compile(model))
        for wrapped in wrappers:
            with torch.no_grad(), capture_attention(wrapped, [0, -1]) as rec:
                wrapped(x)
            assert rec.maps.keys() == ref.keys()
            for k in ref:
                torch.testing.assert_close(rec.maps[k], ref[k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rollout_map(wrappers[0], x), rollout_map(model, x))
    vit = _vit()
    assert torch.equal(position_embedding_similarity(torch.compile(vit)), position_embedding_similarity(vit))


# ---------------------------------------------------------------------- Swin windows → map
def test_window_maps_to_full_matrix_reproduce_the_block_output():
    """Dense (H·W)² maps from the window maps (shift undone, padding dropped) must give the block's
    output when applied to the values computed on the unshifted map: a check of the mapping that
    shares no window code with the model."""
    model = _swin()
    blk = model.stages[0].blocks[1]  # shifted; 36×36 input → 18×18 map, padded to 20 before the shift
    io = {}
    h1 = blk.register_forward_pre_hook(lambda m, args: io.update(x=args[0]))
    h2 = blk.register_forward_hook(lambda m, args, out: io.update(y=out))
    with torch.no_grad(), capture_attention(model, [1]) as rec:
        model(torch.randn(2, 3, 36, 36))
    h1.remove(), h2.remove()
    g = rec.geometry[1]
    assert (g.H, g.W, g.sh, g.sw) == (18, 18, 2, 2) and g.Hp == 20
    full = window_attention_to_full(rec.maps[1], g)  # (B, heads, HW, HW)
    torch.testing.assert_close(full.sum(-1), torch.ones(full.shape[:-1]), atol=1e-5, rtol=0)
    x = io["x"]
    B, H, W, C = x.shape
    attn = blk.attn
    with torch.no_grad():
        v = blk.norm1(x).reshape(B, H * W, C) @ attn.qkv.weight[2 * C:].T + attn.qkv.bias[2 * C:]
        v = v.reshape(B, H * W, attn.num_heads, attn.head_dim).transpose(1, 2)  # (B, heads, HW, hd)
        branch = attn.proj((full @ v).transpose(1, 2).reshape(B, H * W, C)).reshape(B, H, W, C)
        mid = x + branch
        expected = mid + blk.mlp(blk.norm2(mid))
    torch.testing.assert_close(io["y"], expected, atol=1e-5, rtol=1e-4)
    # the in-place application used by rollout agrees with the dense matrix
    r = torch.randn(B, H, W, 5)
    fused = rec.maps[1].mean(1)
    dense = window_attention_to_full(fused[:, None], g)[:, 0] @ r.reshape(B, H * W, 5)
    torch.testing.assert_close(apply_window_attention(r, fused, g), dense.reshape(B, H, W, 5), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------- rollout
def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(17).expand(2, 3, 17, 17)
    torch.testing.assert_close(attention_rollout([eye] * 4), torch.eye(17).expand(2, 17, 17))


def test_rollout_matches_the_formula_written_out():
    maps = [torch.softmax(torch.randn(1, 2, 5, 5), -1) for _ in range(3)]
    expected = torch.eye(5)
    for a in maps:
        a = 0.5 * a[0].mean(0) + 0.5 * torch.eye(5)  # rows of A sum to 1, so (A + I)/rowsum = (A + I)/2
        expected = a @ expected
    torch.testing.assert_close(attention_rollout(maps)[0], expected)


def test_rollout_of_a_model_whose_attention_is_the_identity_is_the_identity():
    """One head, q = k = s·LN(x): every token's norm is √D after LN, so each query's largest logit
    is its own key and a large s makes the attention the identity."""
    model = VisionTransformer(img_size=16, patch_size=4, num_classes=0, embed_dim=32, depth=3, num_heads=1, mlp_dim=32).eval()
    D = 32
    with torch.no_grad():
        for blk in model.blocks:
            w = torch.cat([30 * torch.eye(D), 30 * torch.eye(D), torch.eye(D)])
            blk.attn.qkv.weight.copy_(w)
            blk.attn.qkv.bias.zero_()
        with capture_attention(model, "all") as rec:
            model(torch.randn(2, 3, 16, 16))
    maps = [rec.maps[i] for i in range(3)]
    eye = torch.eye(17).expand(2, 17, 17)
    for a in maps:
        torch.testing.assert_close(a[:, 0], eye, atol=1e-4, rtol=0)
    torch.testing.assert_close(attention_rollout(maps), eye, atol=1e-4, rtol=0)


def test_merge_rollout_averages_real_children_only():
    H, W = 3, 4  # odd height: the last merged row has one real child row
    r = torch.eye(H * W).reshape(1, H, W, H * W)
    m = merge_rollout(r, (2, 2))
    assert m.shape == (1, 2, 2, H * W)
    top_left = torch.zeros(H * W)
    top_left[[0, 1, 4, 5]] = 0.25
    torch.testing.assert_close(m[0, 0, 0], top_left)
    bottom_right = torch.zeros(H * W)
    bottom_right[[10, 11]] = 0.5
    torch.testing.assert_close(m[0, 1, 1], bottom_right)


def _merge_matrix(H: int, W: int) -> torch.Tensor:
    """(⌈H/2⌉·⌈W/2⌉, H·W): a merged token is the mean of its real 2×2 children, by loops."""
    H2, W2 = -(-H // 2), -(-W // 2)
    m = torch.zeros(H2 * W2, H * W)
    for i in range(H2):
        for j in range(W2):
            kids = [(r, c) for r in (2 * i, 2 * i + 1) for c in (2 * j, 2 * j + 1) if r < H and c < W]
            for r, c in kids:
                m[i * W2 + j, r * W + c] = 1 / len(kids)
    return m


def test_swin_rollout_equals_the_dense_product_over_blocks_and_merges():
    """36×36 input: stage maps 18 (padded windows), 9 (odd: merging pads), 5 (padded and shifted),
    3 (one window). The backward row-vector rollout must equal the dense forward product."""
    model = _swin()
    x = torch.randn(2, 3, 36, 36)
    with torch.no_grad(), capture_attention(model, "all") as rec:
        model(x)
    r = None
    for i in range(len(rec.layers)):
        g = rec.geometry[i]
        a = window_attention_to_full(rec.maps[i], g).mean(1)  # (B, HW, HW), heads averaged
        a = a + torch.eye(g.H * g.W)
        a = a / a.sum(-1, keepdim=True)
        if r is not None and r.shape[1] != g.H * g.W:
            prev = rec.geometry[i - 1]
            r = _merge_matrix(prev.H, prev.W) @ r
        r = a if r is None else a @ r
    expected = r.mean(1).reshape(2, 18, 18)
    torch.testing.assert_close(rollout_map(model, x), expected, atol=1e-5, rtol=1e-4)


def test_vit_rollout_map_reads_the_class_row_or_the_pooled_rows():
    x = torch.randn(2, 3, 32, 32)
    for pool in ("token", "avg"):
        model = _vit(global_pool=pool)
        with torch.no_grad(), capture_attention(model, "all") as rec:
            model(x)
        full = attention_rollout([rec.maps[i] for i in range(6)])
        p = model.num_prefix_tokens
        expected = full[:, 0, 1:] if pool == "token" else full[:, p:, p:].mean(1)
        torch.testing.assert_close(rollout_map(model, x), expected.reshape(2, 8, 8))


def test_rollout_maps_are_distributions_over_patches():
    swin = rollout_map(_swin(), torch.randn(2, 3, 36, 36))
    assert swin.shape == (2, 18, 18)
    torch.testing.assert_close(swin.sum((1, 2)), torch.ones(2), atol=1e-5, rtol=0)
    vit = rollout_map(_vit(), torch.randn(2, 3, 32, 32))
    assert vit.shape == (2, 8, 8) and (vit >= 0).all() and (vit.sum((1, 2)) <= 1 + 1e-5).all()


# -------------------------------------------------------------------------- attention distance
def _mean_pairwise_distance(Gh: int, Gw: int, stride: float) -> float:
    pts = [(r * stride, c * stride) for r in range(Gh) for c in range(Gw)]
    return sum(math.dist(p, q) for p, q in itertools.product(pts, pts)) / len(pts) ** 2


def test_mean_distance_of_uniform_attention_is_mean_pairwise_patch_distance():
    Gh, Gw, stride = 5, 7, 16
    N = Gh * Gw
    uniform = torch.full((2, 3, N, N), 1.0 / N)
    got = mean_attention_distance(uniform, patch_distances((Gh, Gw), stride))
    torch.testing.assert_close(got, torch.full((3,), _mean_pairwise_distance(Gh, Gw, stride)), atol=1e-4, rtol=1e-6)


def test_model_with_uniform_attention_gives_mean_pairwise_distance():
    """Zero q/k weights make every ViT layer attend uniformly over [class] + patches; with the class
    token left out, every layer and head must report the mean pairwise patch distance."""
    model = _vit()
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight[: 2 * 64].zero_()
            blk.attn.qkv.bias[: 2 * 64].zero_()
    x = torch.randn(3, 3, 32, 32)
    dist = attention_distance(model, [x[:2], x[2:]], layers=[0, 3])
    assert len(dist) == 2
    expected = _mean_pairwise_distance(8, 8, model.stride)
    for d in dist:
        torch.testing.assert_close(d, torch.full((4,), expected), atol=1e-3, rtol=1e-5)


def test_swin_uniform_window_attention_distance():
    """Zero q/k and bias tables: each query attends uniformly within its window. In an unshifted
    block of a 16×16 map cut into 4×4 windows, that is the mean pairwise distance in a 4×4 block."""
    model = _swin()
    with torch.no_grad():
        for layer in attention_layers(model):
            C = layer.module.qkv.in_features
            layer.module.qkv.weight[: 2 * C].zero_()
            layer.module.qkv.bias[: 2 * C].zero_()
            layer.module.relative_position_bias_table.zero_()
    dist = attention_distance(model, torch.randn(2, 3, 32, 32), layers=[0, 2])
    torch.testing.assert_close(dist[0], torch.full((1,), _mean_pairwise_distance(4, 4, 2)), atol=1e-4, rtol=1e-6)
    torch.testing.assert_close(dist[1], torch.full((2,), _mean_pairwise_distance(4, 4, 4)), atol=1e-4, rtol=1e-6)


def test_window_geometry_properties():
    g = WindowGeometry(H=10, W=7, wh=4, ww=4, sh=2, sw=2)
    assert (g.Hp, g.Wp, g.num_windows) == (12, 8, 6)
