"""A new user's first hour with the command line (issue 17): predict and eval read the checkpoint,
train says which recipe it applies and warns about schedules that cannot work as meant."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

import vitkit
from vitkit.cli import main
from vitkit.weights.io import save_vitkit

CLASSES = ("cat", "dog")


def _folder(root: Path, splits=("train", "test"), size=32, mode="RGB", per_class=8) -> Path:
    g = torch.Generator().manual_seed(0)
    for split in splits:
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                base = torch.full((size, size, 3 if mode == "RGB" else 1), 60 + 120 * c, dtype=torch.float32)
                px = (base + 40 * torch.rand(base.shape, generator=g)).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(px if mode == "RGB" else px[..., 0], mode).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    """A two-step run on a cat/dog folder without val/ (the CLI, as a user would), and its log."""
    root = tmp_path_factory.mktemp("first_hour")
    data = _folder(root / "data")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("vitkit")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        rc = main(["train", "--data", str(data), "--out", str(root / "run"), "--epochs", "1",
                   "model=vit_micro_patch4_32", "batch_size=8", "num_workers=0", "progress=false"])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert rc == 0, records
    return root / "run", "\n".join(records)


def test_predict_reads_the_model_and_class_names_from_a_training_checkpoint(run, capsys):
    img = str(next((run[0].parent / "data" / "test" / "dog").iterdir()))
    assert main(["predict", img, "--checkpoint", str(run[0] / "checkpoint-best.pt"), "--topk", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == img and len(lines) == 3
    assert {ln.split(".", 1)[1].split("(")[0].strip() for ln in lines[1:]} == set(CLASSES), lines
    assert "class " not in "\n".join(lines)


def test_predict_reads_a_converted_file_without_model(run, tmp_path, capsys):
    dst = tmp_path / "m.safetensors"
    assert main(["convert", str(run[0] / "checkpoint-best.pt"), str(dst)]) == 0
    capsys.readouterr()
    img = str(next((run[0].parent / "data" / "test" / "cat").iterdir()))
    assert main(["predict", img, "--checkpoint", str(dst), "--topk", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split(". ", 1)[1].split(" (")[0] in CLASSES


def test_predict_with_the_wrong_model_names_both(run, capsys):
    img = str(next((run[0].parent / "data" / "test" / "cat").iterdir()))
    rc = main(["predict", img, "--checkpoint", str(run[0] / "checkpoint-best.pt"), "--model", "vit_micro_patch4_28"])
    err = capsys.readouterr().err
    assert rc == 2 and "vit_micro_patch4_28" in err and "vit_micro_patch4_32" in err and "does not match" in err


def test_predict_wrong_model_for_a_file_that_does_not_name_it(tmp_path, capsys):
    m = vitkit.create_model("vit_micro_patch4_32")
    path = tmp_path / "plain.pth"
    torch.save(m.state_dict(), path)  # a bare state dict in vitkit's names: no model name inside
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32), (10, 20, 30)).save(img)
    rc = main(["predict", str(img), "--checkpoint", str(path), "--model", "vit_micro_patch4_28"])
    err = capsys.readouterr().err
    assert rc == 2 and "does not match" in err and "vit_micro_patch4_28" in err and "vit_micro_patch4_32" in err


def test_eval_defaults_to_the_runs_data_and_writes_into_the_run(run, capsys):
    rc = main(["eval", "--checkpoint", str(run[0] / "checkpoint-best.pt"), "--num-workers", "0"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("32px: top-1") == 1  # printed once
    doc = json.loads((run[0] / "eval.json").read_text())
    assert doc["results"][0]["img_size"] == 32 and doc["results"][0]["num_images"] == 16
    assert f"{run[0] / 'eval.json'}" in out and f"{run[0] / 'confusion-32.png'}" in out
    assert (run[0] / "confusion-32.png").is_file() and "<size>" not in out


def test_eval_writes_each_size_as_it_completes_and_reports_failures(run, tmp_path, capsys):
    rc = main(["eval", "--checkpoint", str(run[0] / "checkpoint-best.pt"), "--num-workers", "0",
               "--img-size", "32", "30", "48", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 1  # one size failed (30 is no multiple of the 4-pixel patches)
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert [r["img_size"] for r in doc["results"]] == [32, 48]
    assert list(doc["errors"]) == ["30"] and "30px" in captured.err
    assert (tmp_path / "confusion-32.png").is_file() and (tmp_path / "confusion-48.png").is_file()


# ------------------------------------------------------------------ train: recipe, warnings, cores
def test_train_names_the_recipe_first_and_warns(run):
    _, text = run
    first = text.splitlines()[0]
    assert first.startswith("recipe cifar10_vit_cpu") and "colour 32×32" in first, first
    assert "warm-up (1 epoch) is as long as the whole run (1 epoch)" in text
    assert "no val/ split" in text and "test/" in text and "checkpoint-best.pt" in text
    cfg = json.loads((run[0] / "config.json").read_text())
    assert cfg.get("augment", cfg.get("config", {}).get("augment")) != "digits"


def _show_config(args: list[str], capsys) -> dict:
    assert main(["train", *args, "--show-config"]) == 0
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


@pytest.mark.parametrize("mode,size,recipe", [("L", 28, "mnist_demo"), ("RGB", 32, "cifar10_vit_cpu"),
                                              ("RGB", 48, "folder_vit_cpu")])
def test_train_picks_a_recipe_suited_to_the_data(tmp_path, capsys, mode, size, recipe):
    data = _folder(tmp_path / "d", splits=("train", "val"), size=size, mode=mode, per_class=1)
    cfg = _show_config(["--data", str(data)], capsys)
    assert cfg["recipe"] == recipe and (cfg["augment"] == "digits") == (recipe == "mnist_demo")
    assert _show_config(["--data", str(data), "--recipe", "mnist_demo"], capsys)["recipe"] == "mnist_demo"


def test_threads_and_workers_follow_the_free_cores(tmp_path, capsys, monkeypatch, caplog):
    import os

    data = _folder(tmp_path / "d", splits=("train", "val"), per_class=1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    with caplog.at_level(logging.INFO, logger="vitkit"):
        cfg = _show_config(["--data", str(data), "--recipe", "cifar10_vit_cpu", "device=cpu"], capsys)
    assert (cfg["threads"], cfg["num_workers"]) == (1, 0)  # one core free: no worker beside the thread
    assert "1 free core of 2" in caplog.text
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    cfg = _show_config(["--data", str(data), "--recipe", "cifar10_vit_cpu", "device=cpu"], capsys)
    assert (cfg["threads"], cfg["num_workers"]) == (1, 1)
    cfg = _show_config(["--data", str(data), "--recipe", "cifar10_vit_cpu", "device=cpu", "threads=2"], capsys)
    assert (cfg["threads"], cfg["num_workers"]) == (2, 1)  # the user's choice stands


# ------------------------------------------------------------------ logging and config files
def _tiny_run(tmp_path: Path, *extra: str) -> Path:
    data = _folder(tmp_path / "d", splits=("train", "val"), per_class=8)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), "--recipe", "cifar10_vit_cpu", "--epochs", "2",
                 "batch_size=4", "num_workers=0", "progress=false", "threads=1", *extra]) == 0
    return out


def test_tensorboard_logger_writes_events_tensorboard_reads(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = _tiny_run(tmp_path, "logger=tensorboard", "log_every=2")
    steps = [json.loads(ln) for ln in (out / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps] == [2, 4, 6, 8] and all(r["train_loss"] > 0 and r["lr"] > 0 for r in steps)
    acc = EventAccumulator(str(out / "tensorboard")).Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/train_loss", "train/lr", "epoch/val_acc1", "epoch/train_loss"} <= set(tags), tags
    assert [e.step for e in acc.Scalars("train/train_loss")] == [2, 4, 6, 8]
    assert [round(e.value, 5) for e in acc.Scalars("train/lr")] == [round(r["lr"], 5) for r in steps]
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [round(e.value, 6) for e in acc.Scalars("epoch/val_acc1")] == [round(r["val_acc1"], 6) for r in rows]


def test_logger_none_writes_only_the_files(tmp_path):
    out = _tiny_run(tmp_path, "log_every=3")
    assert not (out / "tensorboard").exists()
    assert [json.loads(ln)["step"] for ln in (out / "steps.jsonl").read_text().splitlines()] == [3, 6, 8]


def test_missing_tensorboard_stops_before_training(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    data = _folder(tmp_path / "d", splits=("train", "val"), per_class=1)
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "logger=tensorboard"])
    assert rc == 2 and "pip install 'vitkit[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["train", "--data", str(data), "logger=tensorbord", "--show-config"]) == 2


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_file_gives_fields_and_the_command_line_wins(tmp_path, capsys, suffix):
    data = _folder(tmp_path / "d", splits=("train", "val"), per_class=1)
    fields = {"recipe": "cifar10_vit_cpu", "data": str(data), "lr": 0.004, "scale": [0.5, 1.0], "epochs": 3,
              "zero_init_head": True}
    path = tmp_path / f"run{suffix}"
    if suffix == ".yaml":
        path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in fields.items()) + "warmup_epochs: 1e-1\n")
    else:
        path.write_text(json.dumps({**fields, "warmup_epochs": 0.1}))
    cfg = _show_config(["--config", str(path), "epochs=4"], capsys)
    assert cfg["recipe"] == "cifar10_vit_cpu" and cfg["data"] == str(data)
    assert (cfg["lr"], cfg["scale"], cfg["epochs"], cfg["zero_init_head"], cfg["warmup_epochs"]) == \
        (0.004, [0.5, 1.0], 4, True, 0.1)
    assert _show_config(["--config", str(path), "--epochs", "5", "--recipe", "folder_vit_cpu"], capsys)["epochs"] == 5
    path.write_text("lr: [1, 2\n" if suffix == ".yaml" else "{lr: 1")
    assert main(["train", "--config", str(path), "--show-config"]) == 2
    assert f"--config {path}" in capsys.readouterr().err
    path.write_text(json.dumps({"learning_rate": 1}) if suffix == ".json" else "learning_rate: 1\n")
    assert main(["train", "--config", str(path), "--show-config"]) == 2
    assert "learning_rate" in capsys.readouterr().err


def test_a_runs_config_json_reproduces_it(run, capsys):
    saved = json.loads((run[0] / "config.json").read_text())
    cfg = _show_config(["--config", str(run[0] / "config.json")], capsys)
    assert {k: v for k, v in cfg.items() if k not in ("threads", "num_workers")} == \
        {k: v for k, v in saved.items() if k not in ("resolved", "threads", "num_workers")}


# ------------------------------------------------------------------ cosmetics
def test_convert_writes_files_with_the_umasks_mode_and_names_the_vitkit_format(run, tmp_path, capsys):
    import os
    import stat

    old = os.umask(0o022)
    try:
        dst = tmp_path / "c.safetensors"
        assert main(["convert", str(run[0] / "checkpoint-best.pt"), str(dst)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(dst.stat().st_mode) == 0o644
    assert "format=vitkit" in capsys.readouterr().out


def test_header_plurals_and_final_summary_in_percent(run):
    from vitkit.train.progress import plural

    assert [plural(1, "epoch"), plural(20, "epoch"), plural(2, "process"), plural(0.5, "epoch")] == \
        ["1 epoch", "20 epochs", "2 processes", "0.5 epochs"]
    _, text = run
    header = next(ln for ln in text.splitlines() if ln.startswith("training "))
    assert "1 epoch × 2 steps" in header and "(1 rank × 1 accumulation" in header, header
    done = next(ln for ln in text.splitlines() if ln.startswith("done: "))
    assert "best val_acc1 " in done and "%" in done.split("best val_acc1 ")[1].split(",")[0], done


def test_progress_bar_total_is_what_the_epoch_runs_when_max_steps_ends_it(tmp_path, monkeypatch):
    import vitkit.train.loop as loop

    bars = []

    class Recording(loop.ProgressBar):
        def __init__(self, total, *a, **k):
            super().__init__(total, *a, **k)
            bars.append(self)

    monkeypatch.setattr(loop, "ProgressBar", Recording)
    _tiny_run(tmp_path, "max_steps=3", "log_every=0")  # 4 steps an epoch; the run stops after 3
    assert [(b.total, b.done) for b in bars] == [(12, 12)]


def test_curves_mark_points_the_best_row_and_draw_the_lr(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from vitkit.train.progress import plot_curves

    figs = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figs.append(self))
    one = [{"epoch": 1, "step": 8, "train_loss": 0.5, "val_loss": 0.4, "val_acc1": 0.9, "val_acc5": 1.0, "lr": 1e-3}]
    plot_curves(one, tmp_path / "c.png", steps=[{"epoch": e / 8, "step": e, "train_loss": 1 - e / 10,
                                                  "lr": 1e-3 * e / 8} for e in range(1, 9)])
    loss, acc, lr = figs[0].axes
    assert lr.get_title().startswith("learning rate") and max(len(ln.get_xdata()) for ln in lr.lines) == 8
    assert all(ln.get_marker() not in ("None", None, "") for ln in acc.lines if len(ln.get_xdata()) == 1)  # visible
    star = [line for line in acc.lines if line.get_marker() == "*"]
    assert len(star) == 1 and list(star[0].get_ydata()) == [90.0] and "best top-1 90.00%" in star[0].get_label()
    three = [dict(one[0], epoch=e, val_acc1=a) for e, a in ((1, 0.5), (2, 0.8), (3, 0.7))]
    plot_curves(three, tmp_path / "d.png", steps=[])
    star = [line for line in figs[1].axes[1].lines if line.get_marker() == "*"][0]
    assert list(star.get_xdata()) == [2]


def test_detect_header_counts_the_whole_detector_and_names_the_narrowed_backbone():
    import dataclasses
    from types import SimpleNamespace

    from vitkit.dense.recipes import DET_RECIPES, get_recipe
    from vitkit.dense.train_det import DetectionTask, build_model

    r = dataclasses.replace(get_recipe("mask_rcnn_coco8_smoke", DET_RECIPES), data="x")
    task = DetectionTask(r)
    task.num_classes = 3
    model = build_model(r, 3)
    trainer = SimpleNamespace(model=model, train_set=[0] * 4, val_set=[0] * 2, dist=SimpleNamespace(world_size=1),
                              device="cpu")
    text = task.describe(trainer)
    whole = sum(p.numel() for p in model.parameters())
    body = sum(p.numel() for p in model.backbone.body.parameters())
    assert f"{whole / 1e6:.2f} M parameters (whole detector; backbone {body / 1e6:.2f} M)" in text, text
    assert "embed_dim=48" in text and "1 process on cpu" in text


def test_wandb_logger_sends_the_same_scalars(tmp_path, monkeypatch):
    """wandb itself is not a test dependency: a stand-in module records what the logger sends."""
    import importlib.machinery
    import sys
    import types

    calls = []
    run_obj = types.SimpleNamespace(log=lambda values, step: calls.append((step, dict(values))))
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.append(("init", kw)) or run_obj
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # found by importlib.util.find_spec
    monkeypatch.setitem(sys.modules, "wandb", fake)
    out = _tiny_run(tmp_path, "logger=wandb", "log_every=4")
    assert calls[0][0] == "init" and calls[0][1]["config"]["logger"] == "wandb" and calls[0][1]["dir"] == str(out)
    steps = [c for c in calls[1:] if "train/lr" in c[1]]
    rows = [c for c in calls[1:] if "epoch/val_acc1" in c[1]]
    assert [s for s, _ in steps] == [4, 8] and [s for s, _ in rows] == [4, 8]


def test_steps_log_is_trimmed_to_the_checkpoint_on_resume(tmp_path):
    from types import SimpleNamespace

    from vitkit.train.config import TrainConfig
    from vitkit.train.loggers import RunLoggers

    (tmp_path / "steps.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (2, 4, 6, 8)))
    trainer = SimpleNamespace(cfg=TrainConfig(log_every=2), out=tmp_path, global_step=4)
    RunLoggers(trainer)
    assert [json.loads(ln)["step"] for ln in (tmp_path / "steps.jsonl").read_text().splitlines()] == [2, 4]
    RunLoggers(SimpleNamespace(cfg=TrainConfig(log_every=2), out=tmp_path, global_step=0))  # a fresh run
    assert (tmp_path / "steps.jsonl").read_text() == ""


def test_warmup_longer_than_max_steps_is_said(tmp_path, caplog):
    data = _folder(tmp_path / "d", splits=("train", "val"), per_class=8)  # 16 images: 4 steps of 4 an epoch
    base = ["train", "--data", str(data), "--recipe", "cifar10_vit_cpu", "--show-config", "batch_size=4"]
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        assert main([*base, "max_steps=3"]) == 0  # warm-up: 1 epoch = 4 steps
    assert "warm-up (1 epoch, 4 steps) is as long as the whole run (max_steps=3)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        assert main([*base, "max_steps=12"]) == 0
    assert "warm-up" not in caplog.text
