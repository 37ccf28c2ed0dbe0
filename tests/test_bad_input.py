"""Bad input gets a clear error naming the problem and the fix (issue 13, items 10, 12, 14, 16):
damaged checkpoint files, class counts that do not match the data, Swin window sizes, config
values that cannot work, weights that would load wrong silently, and overrides among the options."""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit import create_model, load_weights
from vitkit.cli import build_parser, main
from vitkit.data import EmbeddedMNIST
from vitkit.train import Trainer, apply_overrides, get_recipe
from vitkit.train.checkpoint import load_checkpoint, save_atomic
from vitkit.weights import read_checkpoint, save_vitkit


def _cfg(**kw):
    base = dict(epochs=1, batch_size=8, num_workers=0, progress=False, warmup_steps=0)
    base.update(kw)
    return apply_overrides(get_recipe("mnist_demo"), base)


def _digit_folder(root: Path, classes: int = 3, per_class: int = 4) -> Path:
    digits = EmbeddedMNIST("train", mode="L")
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            Image.fromarray(digits.load(c * per_class + j)[0].numpy()).save(root / f"class{c}" / f"{j}.png")
    return root


# ------------------------------------------------------------------ item 10: damaged checkpoint files
def _damaged(tmp_path: Path, kind: str) -> Path:
    """A weights file cut in half, emptied or replaced by text."""
    model = create_model("vit_micro_patch4_28")
    suffix, how = kind.split("-")
    good = tmp_path / f"good.{suffix}"
    if suffix in ("pt", "pth"):
        torch.save(model.state_dict(), good)
    elif suffix == "npz":
        np.savez(good, **{k: v.numpy() for k, v in model.state_dict().items()})
    else:
        save_vitkit(model.state_dict(), good, {"model": "vit_micro_patch4_28"})
    data = good.read_bytes()
    bad = tmp_path / f"weights.{suffix}"
    bad.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"not a checkpoint\n" * 20}[how])
    return bad


KINDS = [f"{s}-{h}" for s in ("pth", "npz", "safetensors") for h in ("truncated", "empty", "garbage")] + ["pt-empty"]


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_weights_file_is_named_and_called_damaged(tmp_path: Path, kind: str) -> None:
    bad = _damaged(tmp_path, kind)
    with pytest.raises(ValueError) as e:
        read_checkpoint(bad)
    msg = str(e.value)
    assert str(bad) in msg and "damaged" in msg.replace(str(tmp_path), ""), msg
    if kind.endswith("empty"):
        assert "0 bytes" in msg
    with pytest.raises(ValueError, match=r"weights\.\w+ is damaged"):  # the fine-tuning path: weights=FILE
        load_weights(create_model("vit_micro_patch4_28"), bad)


def test_damaged_checkpoint_last_points_to_checkpoint_best(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    run.mkdir()
    model = create_model("vit_micro_patch4_28")
    save_atomic({"model": model.state_dict(), "model_name": "vit_micro_patch4_28", "epoch": 3},
                run / "checkpoint-best.pt")
    good = (run / "checkpoint-best.pt").read_bytes()
    (run / "checkpoint-last.pt").write_bytes(good[: len(good) // 3])
    with pytest.raises(ValueError) as e:
        load_checkpoint(run / "checkpoint-last.pt")
    msg = str(e.value).replace(str(tmp_path), "")  # (the test's folder name says "damaged" too)
    assert "checkpoint-last.pt" in msg and "damaged" in msg and "checkpoint-best.pt" in msg, msg
    # vitkit eval on it: one line, no traceback
    rc = main(["eval", "--checkpoint", str(run / "checkpoint-last.pt"), "--data", "mnist"])
    err = capsys.readouterr().err.replace(str(tmp_path), "")
    assert rc == 2 and "damaged" in err and "checkpoint-best.pt" in err and "Traceback" not in err, err
    (run / "checkpoint-best.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"checkpoint-best\.pt is damaged.*0 bytes"):
        load_checkpoint(run / "checkpoint-best.pt")


def test_resume_from_a_damaged_checkpoint_last_is_one_line_pointing_to_best(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    from vitkit.train import train

    out = tmp_path / "run"
    train(_cfg(data=str(_digit_folder(tmp_path / "data", classes=2, per_class=8)), val_fraction=0.25), out)
    last = out / "checkpoint-last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # killed while copying the run folder, say
    rc = main(["train", "--out", str(out), "--resume"])
    err = capsys.readouterr().err.replace(str(tmp_path), "")
    assert rc == 2 and "checkpoint-last.pt is damaged" in err and "checkpoint-best.pt" in err, err
    assert "Traceback" not in err


def test_untrusted_pickle_still_gets_the_weights_only_advice(tmp_path: Path) -> None:
    """Not damaged, but holding Python objects: refused with the weights_only advice, not 'damaged'."""
    path = tmp_path / "objects.pth"
    torch.save({"model": create_model("vit_micro_patch4_28").state_dict(), "extra": argparse.Namespace(a=1)}, path)
    with pytest.raises(ValueError, match="weights_only=False") as e:
        read_checkpoint(path)
    assert "damaged" not in str(e.value).replace(str(tmp_path), "")


# ----------------------------------------------------- item 12: class count, Swin window size
@pytest.mark.parametrize("num_classes", [2, 5])
def test_num_classes_other_than_the_datas_is_refused_before_training(tmp_path: Path, num_classes: int) -> None:
    data = _digit_folder(tmp_path / "data", classes=3)
    cfg = _cfg(data=str(data), val_fraction=0.25, num_classes=num_classes)
    with pytest.raises(ValueError, match=rf"num_classes={num_classes}.*3 classes.*num_classes=0"):
        Trainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_num_classes_5_on_the_10_digit_classes_is_refused(tmp_path: Path) -> None:
    """The issue's case: num_classes=5 on MNIST was an IndexError (target 6 out of bounds) inside torch."""
    with pytest.raises(ValueError, match=r"num_classes=5 but the data has 10 classes \(0, 1, 2, 3, 4, …\)"):
        Trainer(_cfg(num_classes=5, train_examples=16), tmp_path / "run")


@pytest.mark.parametrize("window", [0, -1, -7])
def test_swin_window_size_must_be_positive(window: int) -> None:
    with pytest.raises(ValueError, match=rf"window_size={window}.*positive"):
        create_model("swin_micro_patch2_window4_32", window_size=window)


# -------------------------------------------------------------------------- item 14: validation
@pytest.mark.parametrize("overrides, field", [
    (["lr=1e-3", "min_lr=0.5"], "min_lr"),
    (["lr=inf"], "lr"),
    (["lr=nan"], "lr"),
    (["min_lr=nan"], "min_lr"),
    (["weight_decay=inf"], "weight_decay"),
    (["num_classes=-1"], "num_classes"),
    (["lr=1e-3", "warmup_lr=0.1"], "warmup_lr"),
])
def test_config_values_that_cannot_work_are_refused(overrides: list[str], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}="):
        apply_overrides(get_recipe("mnist_demo"), overrides)


def test_min_lr_is_compared_with_the_scaled_lr() -> None:
    """With lr_base_batch the run's lr is lr × batch_size / lr_base_batch; min_lr below that is fine."""
    cfg = apply_overrides(get_recipe("mnist_demo"), ["lr=1e-4", "lr_base_batch=16", "batch_size=128", "min_lr=5e-4"])
    assert cfg.min_lr == 5e-4


def test_every_recipe_still_validates() -> None:
    from vitkit.train.recipes import RECIPES

    for name in RECIPES:
        get_recipe(name).validate()


def test_negative_num_classes_model_is_refused() -> None:
    with pytest.raises(ValueError, match=r"num_classes=-1.*0 \(no classifier"):
        create_model("vit_micro_patch4_28", num_classes=-1)


def test_training_a_headless_model_is_refused(tmp_path: Path) -> None:
    model = create_model("vit_micro_patch4_28", num_classes=0)
    with pytest.raises(ValueError, match="no classifier head"):
        Trainer(_cfg(train_examples=16), tmp_path / "run", model=model)


def test_non_finite_weights_are_refused_naming_the_tensors(caplog: pytest.LogCaptureFixture) -> None:
    state = {k: v.clone() for k, v in create_model("vit_micro_patch4_28").state_dict().items()}
    state["blocks.1.attn.qkv.weight"][0, 0] = float("nan")
    state["pos_embed"][0, 0, 0] = math.inf
    with pytest.raises(ValueError, match=r"non-finite.*blocks\.1\.attn\.qkv\.weight.*pos_embed|"
                                         r"non-finite.*pos_embed.*blocks\.1\.attn\.qkv\.weight"):
        load_weights(create_model("vit_micro_patch4_28"), state)
    with caplog.at_level(logging.WARNING):
        load_weights(create_model("vit_micro_patch4_28"), state, strict=False)
    assert any("non-finite" in r.message and "pos_embed" in r.message for r in caplog.records)


def test_integer_tensor_is_not_cast_into_a_float_slot() -> None:
    state = {k: v.clone() for k, v in create_model("vit_micro_patch4_28").state_dict().items()}
    state["cls_token"] = torch.full_like(state["cls_token"], 3, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"cls_token.*int64.*float32"):
        load_weights(create_model("vit_micro_patch4_28"), state)
    state["cls_token"] = state["cls_token"].half()  # another float precision converts as before
    assert load_weights(create_model("vit_micro_patch4_28"), state).ok


def test_vitkit_file_naming_swin_into_a_vit_is_refused_naming_both(tmp_path: Path) -> None:
    vit = create_model("vit_micro_patch4_28")
    path = tmp_path / "labelled-swin.safetensors"  # ViT tensors, but the metadata says Swin
    save_vitkit(vit.state_dict(), path, {"model": "swin_micro_patch2_window4_32", "model_kwargs": {}})
    with pytest.raises(ValueError, match=r"swin_micro_patch2_window4_32.*vit_micro_patch4_28"):
        load_weights(create_model("vit_micro_patch4_28"), path)
    swin = create_model("swin_micro_patch2_window4_32")
    real = tmp_path / "swin.safetensors"
    save_vitkit(swin.state_dict(), real, {"model": "swin_micro_patch2_window4_32", "model_kwargs": swin.init_kwargs})
    with pytest.raises(ValueError, match=r"swin_micro_patch2_window4_32 \(a Swin\).*vit_micro_patch4_28 \(a ViT\)"):
        load_weights(create_model("vit_micro_patch4_28"), real)
    other = tmp_path / "vit32.safetensors"  # same family, another variant: the shapes decide, as before
    save_vitkit(vit.state_dict(), other, {"model": "vit_micro_patch4_32", "model_kwargs": {}})
    assert load_weights(create_model("vit_micro_patch4_28"), other).ok


# --------------------------------------------------------------- item 16: overrides among options
def test_overrides_are_accepted_anywhere_among_the_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = build_parser().parse_args(["train", "weights=x.pt", "--out", str(tmp_path / "d"), "lr=1", "--epochs", "3",
                                      "drop_path=0.1"])
    assert args.overrides == ["weights=x.pt", "lr=1", "drop_path=0.1"] and args.epochs == 3
    rc = main(["train", "lr=0.5", "--out", str(tmp_path / "d"), "min_lr=0.01", "--show-config", "seed=7"])
    shown = json.loads(capsys.readouterr().out)
    assert rc == 0 and (shown["lr"], shown["min_lr"], shown["seed"]) == (0.5, 0.01, 7)
    args = build_parser().parse_args(["vtab", "pretrained=true", "--tasks", "t", "--out", "o", "seed=1"])
    assert args.overrides == ["pretrained=true", "seed=1"]
    args = build_parser().parse_args(["segment", "train", "lr=1e-4", "--out", "o", "crop_size=64,64"])
    assert args.overrides == ["lr=1e-4", "crop_size=64,64"]
    with pytest.raises(SystemExit):  # an unknown option is still an error, not an override
        build_parser().parse_args(["train", "lr=1", "--no-such-option"])
