"""Official checkpoint layouts, without network: files written here from timm models with random
weights (following REFERENCE.md's tables) load into vitkit with timm's outputs, and the files vitkit
writes are read by timm's own loaders with vitkit's outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vitkit
from vitkit.weights import save_official_swin_pth, save_official_vit_npz
from _weights_util import (assert_parity, official_swin_pth_from_timm, official_vit_npz_from_timm, randomize_)

timm = pytest.importorskip("timm")


def image(size=224, batch=2):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(size))


@torch.no_grad()
def test_augreg_npz_loads_with_timms_outputs(tmp_path):
    ref = randomize_(timm.create_model("vit_small_patch16_224", depth=2))
    path = official_vit_npz_from_timm(ref, tmp_path / "S_16.npz")
    model = vitkit.create_model("vit_small_patch16_224", depth=2).eval()
    report = vitkit.load_weights(model, path)
    assert report.format == "official_vit_npz" and report.ok and not report.head_replaced
    assert len(report.loaded) == len(model.state_dict())
    assert any("gelu_tanh" in n for n in report.notes)  # timm (the reference here) uses exact GELU
    x = image()
    assert_parity(model(x), ref(x))


@torch.no_grad()
def test_original_in21k_npz_with_pre_logits(tmp_path):
    """The original ImageNet-21k files: tanh pre-logits layer (D → D) and a 21,843-class head."""
    ref = randomize_(timm.create_model("vit_small_patch16_224", depth=2, num_classes=0))
    g = torch.Generator().manual_seed(5)
    pre = (torch.randn(384, 384, generator=g) / 384 ** 0.5, 0.05 * torch.randn(384, generator=g))
    head = (torch.randn(21843, 384, generator=g) / 384 ** 0.5, 0.05 * torch.randn(21843, generator=g))
    path = official_vit_npz_from_timm(ref, tmp_path / "ViT-S_16.npz", pre_logits=pre, head=head)

    model = vitkit.create_model("vit_small_patch16_224", depth=2, representation_size=384, num_classes=21843).eval()
    report = vitkit.load_weights(model, path)
    assert report.ok and "pre_logits.fc.weight" in report.loaded and not report.head_replaced
    x = image(batch=1)
    feats = ref.forward_head(ref.forward_features(x), pre_logits=True)  # class token after the final norm
    expected = torch.tanh(feats @ pre[0].T + pre[1]) @ head[0].T + head[1]
    assert_parity(model(x), expected)

    # fine-tuning (ViT §3.2): the whole pre-training head goes, a zero-initialised linear head comes
    ft = vitkit.create_model("vit_small_patch16_224", depth=2, num_classes=10).eval()
    report = vitkit.load_weights(ft, path)
    assert report.head_replaced and not report.missing
    assert any(d.startswith("pre_logits.fc.weight") for d in report.dropped)
    assert torch.count_nonzero(ft.head.weight) == 0
    assert_parity(ft.forward_head(ft.forward_features(x), pre_logits=True), feats)

    # same class count but no pre-logits layer: the head would read the wrong features → refuse
    with pytest.raises(ValueError, match="representation_size=384"):
        vitkit.load_weights(vitkit.create_model("vit_small_patch16_224", depth=2, num_classes=21843), path)


@torch.no_grad()
def test_hybrid_r50_npz_loads_with_timms_outputs(tmp_path):
    ref = randomize_(timm.create_model("vit_base_r50_s16_224", depth=1, num_classes=10))
    path = official_vit_npz_from_timm(ref, tmp_path / "R50+ViT-B_16.npz")
    assert "block3/unit9/gn3/scale" in np.load(path).files
    model = vitkit.create_model("vit_base_r50_s16_224", depth=1, num_classes=10).eval()
    report = vitkit.load_weights(model, path)
    assert report.ok and len(report.loaded) == len(model.state_dict())
    x = image(batch=1)
    assert_parity(model(x), ref(x))


@torch.no_grad()
def test_jax_stem_numerics_standardise_like_the_official_code():
    """stem_numerics='jax': kernels (w - mean) / (std + 1e-5) with the population std over
    (in, kh, kw), as the official JAX StdConv does, and GroupNorm eps 1e-6 (Flax's default)."""
    from vitkit.models.resnet_stem import ResNetStem, StdConv2d

    stem = ResNetStem(depths=(1, 1), numerics="jax")
    assert {m.eps for m in stem.modules() if isinstance(m, torch.nn.GroupNorm)} == {1e-6}
    conv = stem.conv
    assert isinstance(conv, StdConv2d)
    torch.nn.init.normal_(conv.weight, mean=0.3, std=0.02)
    w = conv.weight.double().numpy().transpose(2, 3, 1, 0)  # HWIO, the .npz layout
    w_std = (w - w.mean(axis=(0, 1, 2))) / (w.std(axis=(0, 1, 2)) + 1e-5)  # numpy: the JAX formula
    x = torch.randn(1, 3, 17, 17, dtype=torch.float64)
    from vitkit.models.resnet_stem import same_pad

    ref = torch.nn.functional.conv2d(same_pad(x, 7, 2), torch.from_numpy(w_std.transpose(3, 2, 0, 1)), stride=2)
    torch.testing.assert_close(conv.double()(x), ref, rtol=1e-10, atol=1e-10)
    timm_style = StdConv2d(3, 64, 7, 2).double()
    timm_style.weight.copy_(conv.weight)
    assert (timm_style(x) - ref).abs().max() > 1e-6  # the two numerics really differ
    with pytest.raises(ValueError, match="choose one of"):
        ResNetStem(numerics="flax")


@torch.no_grad()
def test_official_hybrid_file_builds_with_jax_numerics(tmp_path):
    from vitkit.build import build_from_file
    from vitkit.weights.pretrained import get_pretrained

    ref = randomize_(timm.create_model("vit_base_r50_s16_224", depth=1, num_classes=10))
    path = official_vit_npz_from_timm(ref, tmp_path / "R50+ViT-B_16.npz")
    model = build_from_file(path, "vit_base_r50_s16_224", depth=1).eval()
    assert model.stem.numerics == "jax" and model.load_report.ok
    assert model.init_kwargs["stem_numerics"] == "jax" and model.init_kwargs["act"] == "gelu_tanh"
    assert not any("stem_numerics" in n for n in model.load_report.notes)
    plain = vitkit.create_model("vit_base_r50_s16_224", depth=1, num_classes=10).eval()
    report = vitkit.load_weights(plain, path)
    assert any("stem_numerics='jax'" in n for n in report.notes)
    assert get_pretrained("vit_base_r50_s16_384").model_kwargs["stem_numerics"] == "jax"
    x = image(batch=1)
    a, b = model(x), ref(x)  # timm numerics differ from the official ones, slightly
    assert 0 < float((a - b).norm() / b.norm()) < 1e-2


@torch.no_grad()
def test_official_swin_pth_with_stale_buffers(tmp_path):
    ref = randomize_(timm.create_model("swin_tiny_patch4_window7_224", depths=(2, 2, 2, 2)))
    path = official_swin_pth_from_timm(ref, tmp_path / "swin_tiny_patch4_window7_224.pth", stale_buffers=True)
    raw = torch.load(path, weights_only=True)["model"]
    assert "layers.0.downsample.reduction.weight" in raw and "layers.0.blocks.1.attn_mask" in raw
    model = vitkit.create_model("swin_tiny_patch4_window7_224", depths=(2, 2, 2, 2)).eval()
    report = vitkit.load_weights(model, path)
    assert report.format == "official_swin_pth" and report.ok
    n_buffers = sum(k.endswith(("relative_position_index", "attn_mask")) for k in raw)
    assert len(report.dropped) == n_buffers and all("recomputed" in d for d in report.dropped)
    x = image()
    assert_parity(model(x), ref(x))


@torch.no_grad()
def test_timm_npz_loader_reads_what_vitkit_writes(tmp_path):
    from timm.models.vision_transformer import _load_weights

    model = randomize_(vitkit.create_model("vit_small_patch16_224", depth=2, num_classes=7))
    path = save_official_vit_npz(model, tmp_path / "vitkit.npz")
    ref = timm.create_model("vit_small_patch16_224", depth=2, num_classes=7).eval()
    _load_weights(ref, str(path))
    x = image()
    assert_parity(ref(x), model(x))


@torch.no_grad()
def test_timm_npz_loader_reads_a_vitkit_hybrid(tmp_path):
    from timm.models.vision_transformer import _load_weights

    model = randomize_(vitkit.create_model("vit_base_r50_s16_224", depth=1, num_classes=5))
    path = save_official_vit_npz(model, tmp_path / "hybrid.npz")
    ref = timm.create_model("vit_base_r50_s16_224", depth=1, num_classes=5).eval()
    _load_weights(ref, str(path))
    x = image(batch=1)
    assert_parity(ref(x), model(x))


@torch.no_grad()
def test_timm_reads_a_vitkit_swin_in_the_official_layout(tmp_path):
    from timm.models.swin_transformer import checkpoint_filter_fn

    model = randomize_(vitkit.create_model("swin_tiny_patch4_window7_224", depths=(2, 2, 2, 2)))
    path = save_official_swin_pth(model, tmp_path / "swin.pth")
    ref = timm.create_model("swin_tiny_patch4_window7_224", depths=(2, 2, 2, 2)).eval()
    state = checkpoint_filter_fn(torch.load(path, weights_only=True), ref)
    ref.load_state_dict(state)
    x = image()
    assert_parity(ref(x), model(x))
    # and vitkit reads its own official-layout file back
    again = vitkit.create_model("swin_tiny_patch4_window7_224", depths=(2, 2, 2, 2)).eval()
    assert vitkit.load_weights(again, path).format == "official_swin_pth"
    assert torch.equal(again(x), model(x))
