"""Backbone mode: feature shapes and strides at non-square sizes, parity with the classifier's own
intermediates, classification weights loaded into the backbone, gradients everywhere."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.dense import SwinBackbone, ViTBackbone, create_backbone

# tiny overrides of registered variants: the real code paths at toy widths
SWIN_P4 = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), window_size=7)
VIT_P16 = dict(embed_dim=32, depth=3, num_heads=2, mlp_dim=64)


def _check_maps(backbone, feats, H, W):
    assert len(feats) == len(backbone.feature_info)
    for f, info in zip(feats, backbone.feature_info):
        red = info["reduction"]
        assert f.shape == (2, info["num_chs"], math.ceil(H / red), math.ceil(W / red)), (f.shape, info, H, W)
        assert torch.isfinite(f).all()


@pytest.mark.parametrize("size", [(32, 48), (37, 61), (64, 40)])
def test_swin_micro_maps_at_any_size(size):
    b = create_backbone("swin_micro_patch2_window4_32")
    assert isinstance(b, SwinBackbone)
    assert b.out_channels == [32, 64, 128, 256] and b.strides == [2, 4, 8, 16]
    _check_maps(b, b(torch.randn(2, 3, *size)), *size)


@pytest.mark.parametrize("size", [(64, 96), (70, 50), (100, 133)])
def test_swin_patch4_strides_4_8_16_32(size):
    b = create_backbone("swin_tiny_patch4_window7_224", **SWIN_P4)
    assert b.strides == [4, 8, 16, 32] and b.out_channels == [16, 32, 64, 128]
    _check_maps(b, b(torch.randn(2, 3, *size)), *size)


@pytest.mark.parametrize("size", [(64, 96), (96, 160), (80, 48)])
def test_vit_simple_pyramid_strides(size):
    b = create_backbone("vit_tiny_patch16_224", vit_out_channels=24, **VIT_P16)
    assert isinstance(b, ViTBackbone)
    assert b.strides == [4, 8, 16, 32] and b.out_channels == [24] * 4
    _check_maps(b, b(torch.randn(2, 3, *size)), *size)


def test_vit_one_block_per_scale_and_truncation():
    b = create_backbone("vit_micro_patch4_32", vit_indices=(1, 2, 3, 4), vit_out_channels=8)
    assert len(b.body.blocks) == 5  # block 5 would get no gradient: dropped
    assert b.strides == [1, 2, 4, 8]
    _check_maps(b, b(torch.randn(2, 3, 40, 24)), 40, 24)
    with pytest.raises(ValueError, match="one block index or one per scale"):
        create_backbone("vit_micro_patch4_32", vit_indices=(1, 2))
    with pytest.raises(ValueError, match="powers of two"):
        create_backbone("vit_micro_patch4_32", vit_scales=(3.0,))


def test_vit_rejects_sizes_off_the_patch_grid():
    b = create_backbone("vit_micro_patch4_32", vit_out_channels=8)
    with pytest.raises(ValueError, match="patch stride 4"):
        b(torch.randn(1, 3, 30, 32))


def test_swin_backbone_equals_classifier_stages_through_new_norms():
    clf = vitkit.create_model("swin_micro_patch2_window4_32").eval()
    b = create_backbone("swin_micro_patch2_window4_32", weights=clf.state_dict()).eval()
    x = torch.randn(1, 3, 36, 52)
    ref = clf.forward_intermediates(x, output_fmt="NHWC")
    for i, (f, r) in enumerate(zip(b(x), ref)):
        with torch.no_grad():  # the new norms start as identity affine maps: plain LayerNorm
            b.norms[i].weight.normal_()
            b.norms[i].bias.normal_()
        want = F.layer_norm(r, r.shape[-1:], b.norms[i].weight, b.norms[i].bias).permute(0, 3, 1, 2)
        torch.testing.assert_close(b(x)[i], want)
        assert f.shape == want.shape


def test_vit_backbone_reads_the_classifiers_blocks():
    clf = vitkit.create_model("vit_micro_patch4_32").eval()
    b = create_backbone("vit_micro_patch4_32", weights=clf.state_dict(), vit_indices=(2,), vit_scales=(1.0,),
                        vit_out_channels=8).eval()
    x = torch.randn(1, 3, 32, 44)
    want = clf.forward_intermediates(x, indices=[2], output_fmt="NCHW")[0]  # (1, D, 8, 11), no norm
    got = F.layer_norm(want.permute(0, 2, 3, 1), want.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)
    with torch.no_grad():
        torch.testing.assert_close(b(x)[0], b.pyramid[0](got))


def test_classification_weights_roundtrip_from_file_and_mismatch_is_named(tmp_path):
    clf = vitkit.create_model("swin_micro_patch2_window4_32", num_classes=7)
    path = tmp_path / "clf.pt"
    torch.save({"model": clf.state_dict()}, path)  # a training checkpoint's layout
    b = create_backbone("swin_micro_patch2_window4_32", out_indices=(0, 1))
    report = b.load_classification_weights(path)
    assert not report.missing and not report.unexpected
    torch.testing.assert_close(b.body.stages[1].blocks[0].attn.qkv.weight, clf.stages[1].blocks[0].attn.qkv.weight)
    with pytest.raises(ValueError, match="do not fit the backbone"):
        create_backbone("swin_micro_patch2_window4_32", weights=path, embed_dim=16, num_heads=(1, 1, 1, 1))


@pytest.mark.parametrize("name,kw", [("swin_micro_patch2_window4_32", {}),
                                     ("vit_micro_patch4_32", dict(vit_indices=(3,), vit_out_channels=8))])
def test_every_backbone_parameter_gets_a_gradient(name, kw):
    b = create_backbone(name, **kw)
    sum(f.square().mean() for f in b(torch.randn(2, 3, 32, 40))).backward()
    missing = [n for n, p in b.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize("name,writer,ext", [
    ("swin_micro_patch2_window4_32", "save_official_swin_pth", "pth"),
    ("vit_micro_patch4_32", "save_official_vit_npz", "npz"),
])
def test_official_format_checkpoints_load_into_the_backbone(tmp_path, name, writer, ext):
    """A classifier written in the official layout (Microsoft .pth / Google .npz) loads into the
    backbone through vitkit.load_weights: every kept tensor arrives, head and final norm are skipped."""
    from vitkit import weights

    clf = vitkit.create_model(name)
    path = getattr(weights, writer)(clf, tmp_path / f"clf.{ext}")
    b = create_backbone(name, weights=path)
    ref, got = clf.state_dict(), b.body.state_dict()
    assert set(got) <= set(ref) and len(got) > 20
    for k, v in got.items():
        torch.testing.assert_close(v, ref[k], msg=k)
