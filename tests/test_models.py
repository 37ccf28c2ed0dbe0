"""Every registered model: shapes, gradients, determinism, checkpointing, intermediates, sizes.

Large variants are built with fewer blocks and small inputs (the structure per block is the same);
parameter counts are checked at full size on the meta device.
"""
from __future__ import annotations

import math

import pytest
import torch

import vitkit
from vitkit.registry import get_entry

ALL = vitkit.list_models()


def small_build(name: str, **extra) -> torch.nn.Module:
    """The variant with few blocks and a small input: same widths, heads, patching and stem."""
    entry = get_entry(name)
    kw = dict(extra)
    if entry.family == "vit":
        stride = entry.kwargs["patch_size"] * (16 if entry.kwargs.get("stem_depths") else 1)
        kw.setdefault("depth", 2)
        kw.setdefault("img_size", 2 * stride if stride > 8 else 4 * stride)
        if entry.kwargs.get("stem_depths"):
            kw.setdefault("stem_depths", (1, 1, 1))
    else:
        kw.setdefault("depths", (1, 1, 2, 1))
        kw.setdefault("img_size", 64 if entry.kwargs["patch_size"] == 4 else 32)
    return vitkit.create_model(name, **kw)


def input_for(model: torch.nn.Module, batch: int = 2) -> torch.Tensor:
    c = model.patch_embed.proj.in_channels if getattr(model, "stem", None) is None else model.stem.conv.in_channels
    return torch.randn(batch, c, *model.img_size)


def perturb_(model: torch.nn.Module) -> None:
    """Move every parameter off its init (zero-init layers would hide missing gradients)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def test_registry_names_follow_conventions():
    assert len(ALL) > 40
    for n in ("vit_tiny_patch16_224", "vit_huge_patch14_224", "vit_base_patch32_384", "vit_base_r50_s16_384",
              "swin_tiny_patch4_window7_224", "swin_large_patch4_window12_384", "vit_micro_patch4_28"):
        assert n in ALL
    assert vitkit.list_models("swin_*") == [n for n in ALL if n.startswith("swin_")]


def test_unknown_model_error_names_alternatives():
    with pytest.raises(ValueError, match="unknown model 'vit_bsae_patch16_224'. Similar names: vit_base_patch16_224.*list_models"):
        vitkit.create_model("vit_bsae_patch16_224")
    with pytest.raises(ValueError, match="Similar names: vit_huge_patch14_224, vit_huge_patch16_224"):
        vitkit.create_model("vit_huge")  # a prefix: the variants it starts
    with pytest.raises(ValueError, match=r"has ViT \(vit_\*\), hybrid .* and Swin \(swin_\*\) models"):
        vitkit.create_model("resnet50")  # nothing close: the families


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_every_parameter_gets_gradient(name):
    model = small_build(name, num_classes=7)
    perturb_(model)
    x = input_for(model)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", ALL)
def test_intermediates_match_feature_info(name):
    model = small_build(name).eval()
    x = input_for(model, batch=1)
    with torch.no_grad():
        feats = model.forward_intermediates(x)
    assert len(feats) == len(model.feature_info)
    H, W = x.shape[-2:]
    for f, info in zip(feats, model.feature_info):
        r = info["reduction"]
        assert f.shape == (1, info["num_chs"], math.ceil(H / r), math.ceil(W / r))


@pytest.mark.parametrize("name", ["vit_micro_patch4_32", "vit_base_r50_s16_224", "swin_micro_patch2_window4_32",
                                  "swin_tiny_patch4_window7_224"])
def test_eval_is_deterministic_and_train_is_stochastic(name):
    reg = dict(drop_rate=0.2, drop_path_rate=0.3, attn_drop_rate=0.2)
    model = small_build(name, **reg)
    x = input_for(model)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", ["vit_micro_patch4_32", "vit_base_r50_s16_224", "swin_micro_patch2_window4_32"])
def test_grad_checkpointing_gives_same_output_and_gradients(name):
    model = small_build(name)
    perturb_(model)
    x = input_for(model)
    out_ref = model(x)
    out_ref.sum().backward()
    grads_ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out = model(x)
    out.sum().backward()
    torch.testing.assert_close(out, out_ref, rtol=0, atol=0)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads_ref[n], rtol=1e-5, atol=1e-7, msg=n)


def test_forward_head_pre_logits_and_reset_classifier():
    model = vitkit.create_model("vit_micro_patch4_32", representation_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, 65, 64)  # class token + 8×8 patches
    assert model.forward_head(feats, pre_logits=True).shape == (2, 32)
    model.reset_classifier(5)
    assert model.num_classes == 5
    assert torch.equal(model(x), torch.zeros(2, 5))  # zero-initialised head (ViT §3.2)
    swin = vitkit.create_model("swin_micro_patch2_window4_32").eval()
    assert swin.forward_head(swin.forward_features(x), pre_logits=True).shape == (2, 256)
    swin.reset_classifier(0)
    assert swin(x).shape == (2, 256)


def test_vit_gap_has_no_class_token():
    model = vitkit.create_model("vit_micro_patch4_32", global_pool="avg")
    assert model.cls_token is None
    assert model.pos_embed.shape == (1, 64, 64)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_vit_rejects_bad_sizes_with_clear_errors():
    model = vitkit.create_model("vit_micro_patch4_32")
    with pytest.raises(ValueError, match="not divisible by the model's patch stride 4"):
        model(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"expected a \(B, C, H, W\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="global_pool='max'"):
        vitkit.create_model("vit_micro_patch4_32", global_pool="max")


def test_vit_runs_at_other_sizes_and_set_input_size_matches_on_the_fly_resampling():
    model = vitkit.create_model("vit_micro_patch4_32").eval()
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        on_the_fly = model(x)
        model.set_input_size((48, 40))
        assert model.pos_embed.shape == (1, 1 + 12 * 10, 64)
        torch.testing.assert_close(model(x), on_the_fly)
    with pytest.raises(ValueError, match="window_size applies to Swin"):
        model.set_input_size(32, window_size=7)


def test_swin_set_input_size_window_resamples_tables():
    model = vitkit.create_model("swin_micro_patch2_window4_32")
    model.set_input_size(48, window_size=6)
    assert model.stages[0].blocks[0].attn.relative_position_bias_table.shape == (11 * 11, 1)
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 10)


# Parameter counts with a 1000-class head, from REFERENCE.md (the papers' tables and the official code).
PARAM_COUNTS = {
    "vit_tiny_patch16_224": 5_717_416,
    "vit_small_patch16_224": 22_050_664,
    "vit_base_patch16_224": 86_567_656,
    "vit_base_patch32_224": 88_224_232,
    "vit_large_patch16_224": 304_326_632,
    "vit_huge_patch14_224": 632_045_800,
    "vit_base_r50_s16_224": 98_659_112,
    "swin_tiny_patch4_window7_224": 28_288_354,
    "swin_small_patch4_window7_224": 49_606_258,
    "swin_base_patch4_window7_224": 87_768_224,
    "swin_base_patch4_window12_384": 87_903_584,
    "swin_large_patch4_window7_224": 196_532_476,
    "swin_large_patch4_window12_384": 196_735_516,
}


@pytest.mark.parametrize("name,expected", PARAM_COUNTS.items())
def test_parameter_counts_equal_the_papers(name, expected):
    with torch.device("meta"):
        model = vitkit.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_hybrid_without_head_count():
    with torch.device("meta"):
        model = vitkit.create_model("vit_base_r50_s16_224", num_classes=0)
    assert sum(p.numel() for p in model.parameters()) == 97_890_112


def test_built_model_records_its_row_and_size():
    """Without weights: the row's preprocessing as a typed record, input_size the model's own size."""
    from vitkit.models.base import PretrainedCfg

    model = vitkit.create_model("vit_micro_patch4_32", img_size=48)
    cfg = model.pretrained_cfg
    assert isinstance(cfg, PretrainedCfg) and cfg.architecture == "vit_micro_patch4_32" and cfg.source is None
    assert cfg.input_size == (3, 48, 48) and cfg.interpolation == "bilinear"
    assert model.model_name == "vit_micro_patch4_32" and model.init_kwargs["img_size"] == 48
    again = vitkit.create_model(model.model_name, **model.init_kwargs)
    assert again.init_kwargs == model.init_kwargs
