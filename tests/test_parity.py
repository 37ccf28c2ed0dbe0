"""Numerical parity with the reference implementations (issue 2): the same random weights (not the
init defaults) in the peer's model and in vitkit's, loaded through ``vitkit.load_weights`` from the
peer's own state dict; fp32 logits agree to max |diff| ≤ 1e-4 × max |reference logit|.

Large models run with batch 1 on one thread; the vitkit side is built on the meta device and
materialised empty (every tensor then comes from the checkpoint: a strict load proves it)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import vitkit
from _weights_util import assert_parity, randomize_

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
transformers = pytest.importorskip("transformers")


def empty_vitkit(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        model = vitkit.create_model(name, **kw)
    return model.to_empty(device="cpu").eval()


def image(size: int, batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(size + batch))


@torch.no_grad()
def check(ref: nn.Module, state: dict, name: str, fmt: str, size: int, batch: int,
          ref_forward=None, **kw) -> float:
    randomize_(ref)
    model = empty_vitkit(name, **kw)
    report = vitkit.load_weights(model, state() if callable(state) else state)
    assert report.format == fmt and report.ok and len(report.loaded) == len(model.state_dict())
    x = image(size, batch)
    expected = ref_forward(x) if ref_forward else ref(x)
    return assert_parity(model(x), expected)


TIMM = [
    ("vit_small_patch16_224", 224, 2),
    ("vit_base_patch16_224", 224, 1),
    ("vit_base_patch16_384", 384, 1),
    ("vit_base_r50_s16_224", 224, 1),
    ("swin_tiny_patch4_window7_224", 224, 2),
    ("swin_base_patch4_window12_384", 384, 1),
]


@pytest.mark.parametrize("name,size,batch", TIMM, ids=[t[0] for t in TIMM])
def test_timm(name, size, batch):
    ref = timm.create_model(name, num_classes=1000)
    check(ref, ref.state_dict, name, "timm", size, batch)


def test_torchvision_vit_b_16():
    ref = torchvision.models.vit_b_16()
    check(ref, ref.state_dict, "vit_base_patch16_224", "torchvision", 224, 1)


def test_torchvision_swin_t():
    ref = torchvision.models.swin_t()
    check(ref, ref.state_dict, "swin_tiny_patch4_window7_224", "torchvision", 224, 2)


def test_transformers_vit():
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(num_labels=1000, layer_norm_eps=1e-6, hidden_act="gelu")  # ViT-B/16 at 224
    ref = ViTForImageClassification(cfg).eval()
    check(ref, ref.state_dict, "vit_base_patch16_224", "transformers", 224, 1, lambda x: ref(pixel_values=x).logits)


def test_transformers_swin():
    from transformers import SwinConfig, SwinForImageClassification

    ref = SwinForImageClassification(SwinConfig(num_labels=1000)).eval()  # Swin-T at 224
    check(ref, ref.state_dict, "swin_tiny_patch4_window7_224", "transformers", 224, 2,
          lambda x: ref(pixel_values=x).logits)


def test_small_configs_match_at_other_sizes():
    """Small peer configurations at other sizes: a 2-block ViT at 160 px, and a micro Swin at 64 px
    whose last stage (2×2) is smaller than its window (4): timm stores a 3×3-offset table for that
    stage, which vitkit places at the centre of its 7×7 table (exact, not interpolated)."""
    ref = timm.create_model("vit_small_patch16_224", depth=2, img_size=160)
    check(ref, ref.state_dict, "vit_small_patch16_224", "timm", 160, 2, depth=2, img_size=160)
    ref = timm.create_model("swin_tiny_patch4_window7_224", img_size=64, window_size=4, embed_dim=32,
                            depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), num_classes=10)
    check(ref, ref.state_dict, "swin_tiny_patch4_window7_224", "timm", 64, 2, img_size=64, window_size=4,
          embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), num_classes=10)
