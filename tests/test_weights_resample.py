"""Resolution and window changes (ViT §3.2, Swin §4.1): position embeddings and bias tables."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.weights.resample import resample_pos_embed
from _weights_util import randomize_


def pos_embed(grid=(14, 14), dim=8, prefix=1):
    return torch.randn(1, prefix + grid[0] * grid[1], dim, generator=torch.Generator().manual_seed(1))


def pil_bicubic(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Independent bicubic resampling: Pillow's own C implementation on 32-bit float images."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(grid[:, :, d].astype(np.float32), mode="F")
                                .resize((size[1], size[0]), Image.BICUBIC)) for d in range(grid.shape[-1])], -1)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "linear_spline"])
def test_identity_at_the_same_size(interpolation):
    pe = pos_embed()
    assert torch.equal(resample_pos_embed(pe, (14, 14), interpolation=interpolation), pe)


@pytest.mark.parametrize("size", [(24, 24), (24, 16), (10, 7)])
def test_bicubic_matches_an_independent_implementation_and_keeps_the_class_token(size):
    pe = pos_embed()
    new = resample_pos_embed(pe, size)
    assert new.shape == (1, 1 + size[0] * size[1], 8)
    assert torch.equal(new[:, :1], pe[:, :1])  # the class token is not a grid position
    expected = pil_bicubic(pe[0, 1:].reshape(14, 14, 8).numpy(), size)
    np.testing.assert_allclose(new[0, 1:].reshape(*size, 8).numpy(), expected, atol=2e-5)


def test_linear_spline_matches_the_official_scipy_zoom():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    pe = pos_embed()
    new = resample_pos_embed(pe, (24, 24), interpolation="linear_spline")
    expected = scipy_ndimage.zoom(pe[0, 1:].reshape(14, 14, 8).numpy().astype(np.float64), (24 / 14, 24 / 14, 1), order=1)
    np.testing.assert_allclose(new[0, 1:].reshape(24, 24, 8).numpy(), expected, atol=1e-5)
    assert torch.equal(new[:, :1], pe[:, :1])


def test_resampling_is_smooth():
    """A smooth field stays smooth: neighbouring rows of a 224→384 result differ little."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 14), torch.linspace(0, 1, 14), indexing="ij")
    field = torch.stack([torch.sin(3 * yy + 2 * xx), torch.cos(2 * yy - xx)], -1).reshape(1, 196, 2)
    pe = torch.cat([torch.full((1, 1, 2), 9.0), field], dim=1)
    grid = resample_pos_embed(pe, (24, 24))[0, 1:].reshape(24, 24, 2)
    step = max(grid.diff(dim=0).abs().max(), grid.diff(dim=1).abs().max())
    assert step < 0.35  # the source steps are up to ~0.35 on a 14-grid; 24 samples → smaller steps
    assert grid.abs().max() <= 1.05


@torch.no_grad()
def test_224_checkpoint_into_a_384_model_equals_the_model_run_at_384():
    src = randomize_(vitkit.create_model("vit_tiny_patch16_224", depth=2))
    dst = vitkit.create_model("vit_tiny_patch16_384", depth=2).eval()
    report = vitkit.load_weights(dst, src.state_dict())
    assert report.ok and report.resampled == ["pos_embed: (1, 197, 192) -> (1, 577, 192)"]
    assert torch.equal(dst.cls_token, src.cls_token) and torch.equal(dst.pos_embed[:, :1], src.pos_embed[:, :1])
    x = torch.randn(1, 3, 384, 384)
    assert torch.allclose(dst(x), src(x), atol=1e-5)  # on-the-fly resampling gives the same numbers
    live = randomize_(vitkit.create_model("vit_tiny_patch16_224", depth=2))
    live.set_input_size(384)
    assert torch.allclose(live.pos_embed, dst.pos_embed)
    spline = vitkit.create_model("vit_tiny_patch16_384", depth=2)
    vitkit.load_weights(spline, src.state_dict(), interpolation="linear_spline")
    assert not torch.allclose(spline.pos_embed, dst.pos_embed)  # the choice is honoured


@torch.no_grad()
def test_non_square_target():
    src = randomize_(vitkit.create_model("vit_micro_patch4_32"))
    dst = vitkit.create_model("vit_micro_patch4_32", img_size=(48, 32)).eval()
    report = vitkit.load_weights(dst, src.state_dict())
    assert report.resampled == ["pos_embed: (1, 65, 64) -> (1, 97, 64)"]
    assert dst(torch.randn(1, 3, 48, 32)).shape == (1, 10)


@torch.no_grad()
def test_swin_window_7_to_12_loads_and_runs_at_384():
    src = randomize_(vitkit.create_model("swin_tiny_patch4_window7_224", depths=(2, 2, 2, 2)))
    dst = vitkit.create_model("swin_tiny_patch4_window12_384", depths=(2, 2, 2, 2)).eval()
    report = vitkit.load_weights(dst, src.state_dict())
    assert report.ok and len(report.resampled) == 8
    assert report.resampled[0] == "stages.0.blocks.0.attn.relative_position_bias_table: (169, 3) -> (529, 3)"
    # the official fine-tuning code: bicubic on the (2M-1)x(2M-1) grid of offsets
    old = src.stages[1].blocks[1].attn.relative_position_bias_table
    expected = F.interpolate(old.T.reshape(1, 6, 13, 13), size=(23, 23), mode="bicubic", align_corners=False)
    assert torch.allclose(dst.stages[1].blocks[1].attn.relative_position_bias_table, expected.reshape(6, -1).T)
    out = dst(torch.randn(1, 3, 384, 384))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    # the same on a live model
    src.set_input_size(384, window_size=12)
    for a, b in zip(src.parameters(), dst.parameters()):
        assert torch.equal(a, b)


def test_small_stage_table_is_embedded_exactly():
    from vitkit.layers.window import relative_position_index
    from vitkit.weights.resample import embed_bias_table

    small = torch.randn(9, 2)  # offsets of a 2×2 window
    big = embed_bias_table(small, 4)
    assert big.shape == (49, 2) and torch.count_nonzero(big.abs().sum(1)) == 9
    assert torch.equal(big[relative_position_index(2, 2, 4).view(-1)], small[relative_position_index(2, 2, 2).view(-1)])


def test_constant_bias_table_stays_constant():
    src = vitkit.create_model("swin_micro_patch2_window4_32")
    with torch.no_grad():
        for blk in (b for s in src.stages for b in s.blocks):
            blk.attn.relative_position_bias_table.fill_(0.25)
    dst = vitkit.create_model("swin_micro_patch2_window4_32", window_size=6)
    vitkit.load_weights(dst, src.state_dict())
    table = dst.stages[0].blocks[0].attn.relative_position_bias_table
    assert table.shape == (121, 1) and torch.allclose(table, torch.full_like(table, 0.25), atol=1e-6)
