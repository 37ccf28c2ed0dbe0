"""ViT's position embeddings (``pos_embed=``, vitkit.layers.pos_embed): each kind builds, runs at two
sizes, resamples after ``set_input_size``, exports with a dynamic H×W, trains (gradients reach the
learned parts only), round-trips through its record; the mathematics of each against its definition."""
from __future__ import annotations

import math

import pytest
import torch
from torch.export import Dim

import vitkit
from vitkit import build
from vitkit.layers import pos_embed as P
from vitkit.train import apply_overrides, get_recipe
from vitkit.train.config import POS_EMBEDS as CONFIG_POS_EMBEDS

KINDS = P.POS_EMBEDS
LEARNED = {"learned_1d": ["pos_embed"], "learned_2d": ["pos_embed_2d.row", "pos_embed_2d.col"],
           "relative": ["blocks.0.attn.rel_pos.weight", "blocks.1.attn.rel_pos.weight"]}


def tiny(kind: str, **kw) -> vitkit.models.VisionTransformer:
    args = dict(depth=2, embed_dim=32, num_heads=2, mlp_dim=64, num_classes=5, pos_embed=kind)
    return vitkit.create_model("vit_micro_patch4_32", **{**args, **kw})


def images(h: int = 32, w: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(h * 1000 + w))


def test_the_training_field_knows_the_same_kinds():
    assert CONFIG_POS_EMBEDS == P.POS_EMBEDS
    assert apply_overrides(get_recipe("cifar10_vit_cpu"), ["pos_embed=rope_2d"]).pos_embed == "rope_2d"
    with pytest.raises(ValueError, match="pos_embed='rope'.*rope_2d"):
        apply_overrides(get_recipe("cifar10_vit_cpu"), ["pos_embed=rope"])


def test_bad_kinds_and_widths_are_named():
    with pytest.raises(ValueError, match="pos_embed='sin'.*sincos_2d"):
        tiny("sin")
    with pytest.raises(ValueError, match="divisible by 4"):
        tiny("sincos_2d", embed_dim=30, num_heads=2)
    with pytest.raises(ValueError, match="head dimension divisible by 4"):
        tiny("rope_2d", embed_dim=36, num_heads=6)  # head_dim 6


def test_a_model_without_the_option_says_so(tmp_path):
    from vitkit.train.loop import build_model
    cfg = apply_overrides(get_recipe("cifar10_vit_cpu"), dict(model="swin_micro_patch2_window4_32", pos_embed="none"))
    with pytest.raises(ValueError, match="pos_embed='none'.*swin_micro_patch2_window4_32 has no such option"):
        build_model(cfg, 10)
    cfg = apply_overrides(cfg, dict(model="vit_micro_patch4_32", pos_embed="sincos_2d", global_pool="avg"))
    model, record = build_model(cfg, 10)
    assert record["pos_embed"] == "sincos_2d" and record["global_pool"] == "avg" and model.cls_token is None


@pytest.mark.parametrize("kind", KINDS)
def test_runs_at_two_sizes_and_trains_the_learned_parts(kind):
    model = tiny(kind, global_pool="avg")
    assert model.init_kwargs["pos_embed"] == kind
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(images()).logsumexp(-1).mean() + model(images(48, 40)).logsumexp(-1).mean()
    loss.backward()
    pos_params = [n for n, _ in model.named_parameters() if "pos" in n]
    assert pos_params == LEARNED.get(kind, [])  # fixed kinds (none, sincos_2d, rope_2d) have nothing to learn
    for n, p in model.named_parameters():  # with GAP every parameter matters for the loss
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n in pos_params}
    opt.step()
    for n in pos_params:
        assert not torch.equal(before[n], dict(model.named_parameters())[n]), n
    assert model(images(48, 40)).shape == (2, 5) and torch.isfinite(model(images(48, 40))).all()


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_set_input_size_gives_what_the_model_computes_on_the_fly(kind):
    model = tiny(kind).eval()
    x = images(48, 40)
    on_the_fly = model(x)
    model.set_input_size((48, 40))
    assert model.init_kwargs["img_size"] == (48, 40) and model.grid_size == (12, 10)
    torch.testing.assert_close(model(x), on_the_fly, rtol=1e-5, atol=1e-5)
    if kind in ("learned_2d", "relative"):  # the stored tables now have the new grid's shape
        shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if "pos" in n}
        assert shapes[LEARNED[kind][0]] == ((12, 16) if kind == "learned_2d" else (23, 19, 16))


@pytest.mark.parametrize("kind", ["learned_2d", "relative"])
@torch.no_grad()
def test_a_checkpoint_at_another_size_is_resampled_on_load(kind):
    """Weights trained at 32×32 loaded into a 48×40 model: the tables are resampled (reported), and
    the model computes what the 32×32 model computes on 48×40 images."""
    src = tiny(kind).eval()
    dst = tiny(kind, img_size=(48, 40)).eval()
    report = vitkit.load_weights(dst, src.state_dict())
    assert sorted(r.split(":")[0] for r in report.resampled) == sorted(LEARNED[kind])
    x = images(48, 40)
    torch.testing.assert_close(dst(x), src(x), rtol=1e-5, atol=1e-5)


def test_resampling_a_table_to_its_own_size_is_exact():
    t2 = torch.randn(7, 9, 5)
    t1 = torch.randn(8, 5)
    assert torch.equal(P.resample_table(t2, (7, 9)), t2) and torch.equal(P.resample_table(t1, (8,)), t1)
    assert P.resample_table(t2, (13, 17)).shape == (13, 17, 5) and P.resample_table(t1, (3,)).shape == (3, 5)


# ------------------------------------------------------------------------------------- export
EXPORTABLE = [k for k in KINDS if k != "learned_1d"]


def _dynamic(model, x):
    h, w = Dim("h", min=2, max=32), Dim("w", min=2, max=32)
    return torch.export.export(model, (x,), dynamic_shapes={"x": {2: 4 * h, 3: 4 * w}})


@pytest.mark.parametrize("kind", EXPORTABLE)
@torch.no_grad()
def test_exports_with_a_dynamic_size(kind):
    model = tiny(kind, depth=1).eval()
    program = _dynamic(model, images())
    for h, w in ((32, 32), (48, 40)):
        x = images(h, w)
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_learned_1d_exports_at_each_size():
    model = tiny("learned_1d", depth=1).eval()
    for h, w in ((32, 32), (48, 40)):
        x = images(h, w)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), model(x), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_learned_1d_exports_with_a_dynamic_size():
    model = tiny("learned_1d", depth=1).eval()
    program = _dynamic(model, images())
    torch.testing.assert_close(program.module()(images(48, 40)), model(images(48, 40)))


# ---------------------------------------------------------------------------- learned_1d is today's
@torch.no_grad()
def test_learned_1d_is_the_default_and_unchanged():
    torch.manual_seed(3)
    default = vitkit.create_model("vit_micro_patch4_32")
    torch.manual_seed(3)
    explicit = vitkit.create_model("vit_micro_patch4_32", pos_embed="learned_1d")
    assert default.init_kwargs["pos_embed"] == "learned_1d"
    sd, se = default.state_dict(), explicit.state_dict()
    assert list(sd) == list(se) and all(torch.equal(sd[k], se[k]) for k in sd)
    assert sd["pos_embed"].shape == (1, 65, 64)
    assert not any("pos_embed_2d" in k or "rel_pos" in k for k in sd)  # the key set timm/official files map onto
    x = images(48, 48)
    assert torch.equal(default.eval()(x), explicit.eval()(x))


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_the_record_rebuilds_the_same_variant(kind, tmp_path):
    src = tiny(kind).eval()
    again = vitkit.create_model(src.model_name, **src.init_kwargs).eval()
    assert again.pos_embed_kind == kind
    again.load_state_dict(src.state_dict())
    assert torch.equal(again(images()), src(images()))
    ckpt = {"model_name": src.model_name, "model_kwargs": dict(src.init_kwargs), "model": src.state_dict()}
    torch.save(ckpt, tmp_path / "checkpoint-last.pt")
    loaded = build.build_from_file(tmp_path / "checkpoint-last.pt").eval()
    assert loaded.init_kwargs == src.init_kwargs and loaded.load_report.ok
    assert torch.equal(loaded(images(48, 40)), src(images(48, 40)))


# ------------------------------------------------------------------------------- the mathematics
def test_learned_2d_concatenates_a_row_and_a_column_embedding():
    model = tiny("learned_2d")
    grid = model.position_embedding_grid()  # (Gh, Gw, D)
    row, col = model.pos_embed_2d.row.detach(), model.pos_embed_2d.col.detach()
    assert grid.shape == (8, 8, 32)
    assert torch.equal(grid[3, 5], torch.cat([row[3], col[5]]))
    assert torch.equal(grid[3, :, :16], row[3].expand(8, -1)) and torch.equal(grid[:, 5, 16:], col[5].expand(8, -1))


def test_sincos_2d_is_the_sine_cosine_of_row_and_column():
    emb = P.sincos_2d(3, 4, 16).reshape(3, 4, 16)
    omega = [10000 ** (-t / 4) for t in range(4)]
    i, j = 2, 3
    want = [math.sin(i * w) for w in omega] + [math.cos(i * w) for w in omega] + \
           [math.sin(j * w) for w in omega] + [math.cos(j * w) for w in omega]
    torch.testing.assert_close(emb[i, j], torch.tensor(want))
    assert not any(True for _ in P.SinCosPosEmbed(16).parameters())
    model = tiny("sincos_2d")
    torch.testing.assert_close(model.position_embedding_grid(), P.sincos_2d(8, 8, 32).reshape(8, 8, 32))


def test_rope_scores_depend_on_the_offset_only_and_leave_the_class_token():
    rot = P.Rotary2d.for_grid(5, 6, 16, num_prefix_tokens=1)
    q = torch.randn(16).expand(1, 1, 31, 16)  # the same vector at every position (31 = class token + 30)
    k = torch.randn(16).expand(1, 1, 31, 16)
    qr, kr = rot.rotate(q), rot.rotate(k)
    assert torch.equal(qr[:, :, 0], q[:, :, 0])  # the class token is not rotated
    torch.testing.assert_close(qr.norm(dim=-1), q.norm(dim=-1))  # a rotation
    score = (qr[0, 0, 1:] @ kr[0, 0, 1:].T).reshape(5, 6, 5, 6)  # [query row, col, key row, col]
    torch.testing.assert_close(score[1, 2, 3, 1], score[2, 4, 4, 3])  # offset (−2, +1) both times
    torch.testing.assert_close(score[0, 0, 0, 0], score[4, 5, 4, 5])  # offset 0
    assert not torch.allclose(score[1, 2, 3, 1], score[1, 2, 1, 3])  # another offset, another score


def test_rope_rotates_the_first_half_with_the_row_and_the_second_with_the_column():
    """Against the complex-number definition (Su et al.): pair t of a half, (x_t, x_{t+d/4}), is
    multiplied by e^{i·pos·θ_t} with θ_t = 100^(−t/(d/4))."""
    d, quarter = 16, 4
    rot = P.Rotary2d.for_grid(3, 4, d, num_prefix_tokens=0)
    x = torch.randn(1, 1, 12, d)
    got = rot.rotate(x).reshape(3, 4, d)
    theta = torch.tensor([100.0 ** (-t / quarter) for t in range(quarter)])
    r, c = 2, 3
    xs = x.reshape(3, 4, d)[r, c]
    for half, pos in ((0, r), (1, c)):
        part = xs[half * 2 * quarter:(half + 1) * 2 * quarter]
        z = torch.complex(part[:quarter], part[quarter:]) * torch.polar(torch.ones(quarter), pos * theta)
        torch.testing.assert_close(got[r, c, half * 2 * quarter:(half + 1) * 2 * quarter],
                                   torch.cat([z.real, z.imag]))


def test_relative_logits_are_the_query_against_the_offsets_embedding():
    """App. D.4: bias[i, j] = q_i · r_{p_i − p_j} / √d for patch pairs, 0 on the class token's row and column."""
    Gh, Gw, d = 3, 4, 8
    table = P.RelativePositionTable((Gh, Gw), d)

    class Attn(torch.nn.Module):
        rel_pos = table

    rel = P.attention_position("relative", Gh, Gw, d, 1, torch.device("cpu"))
    q = torch.randn(2, 1, 1 + Gh * Gw, d)
    _, _, bias = rel(Attn(), q, q, None)
    assert bias.shape == (2, 1, 13, 13)
    assert torch.equal(bias[:, :, 0], torch.zeros_like(bias[:, :, 0])) and not bias[:, :, :, 0].any()
    w = table.weight.detach()
    pairs = [((5, (1, 1)), (2, (0, 2))), ((0, (0, 0)), (11, (2, 3))), ((7, (1, 3)), (7, (1, 3)))]
    for (i, (yi, xi)), (j, (yj, xj)) in pairs:  # (token index, (row, column)) of query and key
        want = q[1, 0, 1 + i] @ w[yi - yj + Gh - 1, xi - xj + Gw - 1] / math.sqrt(d)
        torch.testing.assert_close(bias[1, 0, 1 + i, 1 + j], want)


@torch.no_grad()
def test_position_inside_attention_agrees_with_the_explicit_softmax_path():
    """rope_2d and relative through the fused kernel and through the capture path (analysis) give the
    same logits; the attention maps of the capture path are probability rows."""
    for kind in ("relative", "rope_2d"):
        model = tiny(kind).eval()
        x = images()
        fused = model(x)
        for blk in model.blocks:
            blk.attn.capture = True
        torch.testing.assert_close(model(x), fused, rtol=1e-5, atol=1e-5)
        probs = model.blocks[0].attn.attn_map
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))


def test_relative_and_rope_give_the_class_token_no_position():
    """The class token's row has no relative term, so with a class-token head the last block's table
    cannot reach the loss (only its queries are read): it gets no gradient, the others do."""
    model = tiny("relative")
    model(images()).sum().backward()
    assert model.blocks[0].attn.rel_pos.weight.grad.abs().sum() > 0
    assert not model.blocks[-1].attn.rel_pos.weight.grad.any()


@pytest.mark.parametrize("kind", ["relative", "rope_2d"])
def test_position_inside_attention_survives_checkpointing_and_autocast(kind):
    """Gradient checkpointing passes the per-input record through to the recomputed blocks (same
    gradients), and bf16 autocast runs (the record's tables follow q's dtype)."""
    model = tiny(kind, global_pool="avg")
    x = images()
    model(x).sum().backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for g, p in zip(want, model.parameters()):
        torch.testing.assert_close(p.grad, g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    feats = model.forward_intermediates(x, indices=1, output_fmt="NCHW")[0]
    assert feats.shape == (2, 32, 8, 8)
