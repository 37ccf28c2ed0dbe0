"""Data quality is reported, not hidden (issue 13, item 15): a split with no readable image stops the
run naming the folder and the likely cause; more than 1% unreadable images is a warning with the
share; unreadable validation images are counted like training ones; an empty class folder and a
one-class data set are said out loud."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from vitkit.data import EmbeddedMNIST, ImageFolder, build_dataset
from vitkit.train import Trainer, apply_overrides, get_recipe, train

LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 1234\n")


def _cfg(**kw):
    base = dict(epochs=1, batch_size=8, num_workers=0, progress=False, warmup_steps=0)
    base.update(kw)
    return apply_overrides(get_recipe("mnist_demo"), base)


def _digits(root: Path, classes: int = 2, per_class: int = 8, start: int = 0) -> Path:
    digits = EmbeddedMNIST("train", mode="L")
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            k = start + c * per_class + j
            Image.fromarray(digits.load(k)[0].numpy()).save(root / f"class{c}" / f"{j:03d}.png")
    return root


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_split_of_git_lfs_pointers_stops_naming_the_folder_and_the_cause(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _digits(data / "val", per_class=2)
    for c in range(2):  # train/ as a clone without `git lfs pull` leaves it: text files named *.png
        (data / "train" / f"class{c}").mkdir(parents=True)
        for j in range(8):
            (data / "train" / f"class{c}" / f"{j}.png").write_text(LFS_POINTER)
    with pytest.raises(ValueError) as e:
        train(_cfg(data=str(data)), tmp_path / "run")
    msg = str(e.value)
    assert str(data / "train") in msg and "Git LFS" in msg and "git lfs pull" in msg, msg
    assert not (tmp_path / "run" / "checkpoint-last.pt").exists()


def test_vitkit_eval_on_a_split_of_lfs_pointers_stops_naming_the_cause(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    import torch

    from vitkit import create_model
    from vitkit.cli import main
    from vitkit.train.loop import model_record

    model = create_model("vit_micro_patch4_28", num_classes=2)
    torch.save({**model_record(model), "model": model.state_dict(), "classes": ["class0", "class1"],
                "preprocess": model.pretrained_cfg.to_dict(), "config": {}}, tmp_path / "ckpt.pt")
    for split in ("train", "test"):
        for c in range(2):
            (tmp_path / "data" / split / f"class{c}").mkdir(parents=True)
            (tmp_path / "data" / split / f"class{c}" / "0.jpg").write_text(LFS_POINTER)
    rc = main(["eval", "--checkpoint", str(tmp_path / "ckpt.pt"), "--data", str(tmp_path / "data"), "--split", "test",
               "--num-workers", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "test split" in err and str(tmp_path / "data" / "test") in err and "git lfs pull" in err, err


def test_split_with_no_readable_image_stops_naming_the_split(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _digits(data / "train")
    for c in range(2):
        (data / "val" / f"class{c}").mkdir(parents=True)
        (data / "val" / f"class{c}" / "x.jpg").write_bytes(b"")  # zero-byte files: an interrupted copy
    with pytest.raises(ValueError, match=r"validation split \(.*val\) has no readable image.*2 images tried.*0 bytes"):
        Trainer(_cfg(data=str(data)), tmp_path / "run")


def test_more_than_one_percent_skipped_is_a_warning_with_the_share(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    _digits(data / "train", per_class=19)  # 38 readable + 2 broken = 5% unreadable
    _digits(data / "val", per_class=4, start=40)
    (data / "train" / "class0" / "broken.png").write_bytes(b"not an image")
    (data / "val" / "class1" / "broken.png").write_bytes(b"not an image")  # 1 of 9 validation images
    (data / "train" / "class1" / "broken.png").write_text(LFS_POINTER)
    with caplog.at_level(logging.INFO, logger="vitkit"):
        train(_cfg(data=str(data), batch_size=40), tmp_path / "run")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("2 of 40 training images (5.0%)" in w and "1%" in w for w in warnings), warnings
    assert any("1 of 9 validation images" in w for w in warnings), warnings
    row = _metrics(tmp_path / "run")[-1]
    assert row["skipped"] == 2 and row["val_skipped"] == 1


def test_a_few_skipped_below_the_threshold_is_not_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from vitkit.data.images import report_unreadable

    with caplog.at_level(logging.INFO, logger="vitkit"):
        report_unreadable("training", 1, 200)  # 0.5%
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    with pytest.raises(ValueError, match="all 16 training images.*unreadable"):
        report_unreadable("training", 16, 16)


def test_empty_class_folder_is_a_warning_naming_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _digits(tmp_path / "data", classes=2, per_class=2)
    (tmp_path / "data" / "zebra").mkdir()
    (tmp_path / "data" / "zebra" / "README.txt").write_text("no images here")
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        ds = ImageFolder(tmp_path / "data")
    assert ds.classes == ["class0", "class1", "zebra"]
    msgs = [r.getMessage() for r in caplog.records]
    assert any("zebra" in m and "no image" in m and "remove" in m for m in msgs), msgs


def test_val_split_missing_a_class_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _digits(tmp_path / "data" / "train", classes=3, per_class=2)
    _digits(tmp_path / "data" / "val", classes=2, per_class=1)
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        va = build_dataset(tmp_path / "data", "val")
    assert va.classes == ["class0", "class1", "class2"]
    assert any("class2" in r.getMessage() for r in caplog.records)


def test_one_class_data_set_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = _digits(tmp_path / "data", classes=1, per_class=8)
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        Trainer(_cfg(data=str(data), val_fraction=0.25, batch_size=4), tmp_path / "run")
    msgs = [r.getMessage() for r in caplog.records]
    assert any("only one class" in m and "class0" in m for m in msgs), msgs
