"""load_weights: strictness, the report, deliberate head replacement, clear errors."""
from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.weights import read_checkpoint, save_vitkit
from _weights_util import randomize_


def micro(**kw):
    return vitkit.create_model("vit_micro_patch4_32", **kw).eval()


def test_round_trip_reports_every_tensor():
    src = randomize_(micro())
    dst = micro()
    report = vitkit.load_weights(dst, src.state_dict())
    assert report.ok and report.loaded == sorted(src.state_dict())
    assert not (report.resampled or report.dropped or report.head_replaced)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(dst(x), src(x))
    assert f"loaded {len(src.state_dict())}," in str(report)


def test_other_class_count_replaces_the_head_with_zeros():
    src = randomize_(micro(num_classes=10))
    dst = micro(num_classes=3)
    report = vitkit.load_weights(dst, src.state_dict())
    assert report.head_replaced and report.ok
    assert sorted(d.split(" ")[0] for d in report.dropped) == ["head.bias", "head.weight"]
    assert "10 classes in the file, 3 in the model" in report.notes[0]
    assert dst.head.weight.shape == (3, 64) and torch.count_nonzero(dst.head.weight) == 0
    assert torch.equal(dst.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)


def test_headless_checkpoint_and_headless_model():
    sd = randomize_(micro()).state_dict()
    headless = {k: v for k, v in sd.items() if not k.startswith("head.")}
    report = vitkit.load_weights(micro(), headless)
    assert report.head_replaced and report.ok and "no classifier" in report.notes[0]
    report = vitkit.load_weights(micro(num_classes=0), sd)
    assert report.ok and not report.head_replaced
    assert all("model has no classifier" in d for d in report.dropped) and len(report.dropped) == 2


def test_strict_failure_lists_missing_keys_and_the_format():
    sd = randomize_(micro()).state_dict()
    sd.pop("blocks.3.mlp.fc1.weight")
    sd.pop("norm.bias")
    with pytest.raises(ValueError) as e:
        vitkit.load_weights(micro(), sd)
    msg = str(e.value)
    assert "detected format: timm" in msg and "2 model tensors are missing" in msg
    assert "blocks.3.mlp.fc1.weight" in msg and "norm.bias" in msg and "strict=False" in msg
    dst = micro()
    report = vitkit.load_weights(dst, sd, strict=False)
    assert sorted(report.missing) == ["blocks.3.mlp.fc1.weight", "norm.bias"] and not report.ok


def test_unexpected_tensor_is_named():
    sd = randomize_(micro()).state_dict()
    sd["blocks.9.attn.qkv.weight"] = torch.zeros(192, 64)  # a 10th block the model lacks
    with pytest.raises(ValueError, match=r"1 file tensors have no place in the model: blocks\.9\.attn\.qkv\.weight"):
        vitkit.load_weights(micro(), sd)


def test_half_matching_checkpoint_gets_a_clear_error():
    """A ViT-S file into a ViT-B model: the names all match, the shapes do not."""
    with torch.device("meta"):
        small = vitkit.create_model("vit_small_patch16_224").state_dict()
    base = vitkit.create_model("vit_base_patch16_224", depth=1)  # the error comes before any copy
    with pytest.raises(ValueError) as e:
        vitkit.load_weights(base, {k: torch.empty(v.shape) for k, v in small.items()})
    msg = str(e.value)
    assert "does not fit vit_base_patch16_224" in msg
    assert "(384,) in the file, (768,) in the model" in msg or "384" in msg
    assert "embed_dim=384, depth=12, patch 16, 1000 classes" in msg and "vit_small_patch16_224" in msg


def test_wrappers_and_data_parallel_prefix_are_unwrapped(tmp_path):
    src = randomize_(micro())
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, path)
    dst = micro()
    assert vitkit.load_weights(dst, path).ok
    assert torch.equal(dst.pos_embed, src.pos_embed)


def test_pickled_objects_are_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": micro().state_dict(), "config": object()}, path)
    with pytest.raises(ValueError, match="weights_only=False"):
        vitkit.load_weights(micro(), path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vitkit.load_weights(micro(), tmp_path / "nothing.pth")


def test_vitkit_safetensors_carries_metadata(tmp_path):
    src = randomize_(vitkit.create_model("swin_micro_patch2_window4_32"))
    path = save_vitkit(src.state_dict(), tmp_path / "m.safetensors", {"model": "swin_micro_patch2_window4_32",
                                                                       "labels": ["a", "b"]})
    state, meta = read_checkpoint(path)
    assert meta["format"] == "vitkit" and meta["labels"] == '["a", "b"]'
    dst = vitkit.create_model("swin_micro_patch2_window4_32").eval()
    report = vitkit.load_weights(dst, path)
    assert report.format == "vitkit" and report.ok and report.metadata["model"] == "swin_micro_patch2_window4_32"
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(dst(x), src(x))
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, nothing left behind


def test_forced_format_and_interpolation_are_validated():
    sd = micro().state_dict()
    with pytest.raises(ValueError, match="choose one of"):
        vitkit.load_weights(micro(), sd, fmt="onnx")
    with pytest.raises(ValueError, match="interpolation='nearest'"):
        vitkit.load_weights(vitkit.create_model("vit_micro_patch4_32", img_size=48), sd, interpolation="nearest")
