"""The training loop end to end on a tiny model: exact resume, NaN stop, OOM message, corrupt files,
run-folder contract, and a 2-process gloo run equal to a 1-process run."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from vitkit import create_model
from vitkit.data import EmbeddedMNIST, ImageFolder, SubsetView, eval_transform, train_transform
from vitkit.train import NonFiniteLossError, Trainer, TrainingError, apply_overrides, get_recipe, train
from vitkit.train.checkpoint import load_checkpoint

MEAN, STD = (0.5,), (0.5,)


def tiny_sets(n_train: int = 192, n_val: int = 64) -> tuple[SubsetView, SubsetView]:
    """Real MNIST digits from the embedded sample, a few hundred of them."""
    tr = EmbeddedMNIST("train", mode="L")
    va = EmbeddedMNIST("val", mode="L")
    train_set = SubsetView(tr, range(n_train), train_transform(28, mean=MEAN, std=STD, preset="digits"))
    val_set = SubsetView(va, range(n_val), eval_transform(28, mean=MEAN, std=STD))
    return train_set, val_set


def tiny_cfg(**kw):
    base = dict(epochs=2, batch_size=32, lr=3e-3, warmup_steps=2, num_workers=0, progress=False,
                drop_path=0.1, dropout=0.1, mixup=0.2, cutmix=1.0, mixup_prob=0.5, label_smoothing=0.1,
                ema_decay=0.9, accum_steps=2, clip_grad=1.0)
    base.update(kw)
    return apply_overrides(get_recipe("mnist_demo"), base)


class Crash(Exception):
    pass


def crash_at(step: int):
    def cb(trainer: Trainer) -> None:
        if trainer.global_step == step:
            raise Crash(f"simulated kill at step {step}")
    return cb


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_resume_after_crash_is_bit_identical(tmp_path: Path) -> None:
    """Kill a run mid-epoch (after its periodic checkpoint), resume it, and compare with a run that
    never stopped: every weight, the EMA, the optimiser moments and the metrics must be equal.
    The run uses augmentation, dropout, drop-path, Mixup/CutMix, EMA and accumulation, so any RNG
    state or data position that is not restored shows up as a difference."""
    cfg = tiny_cfg(checkpoint_every=2)  # 192 images / 32 = 6 steps an epoch, 12 in all
    full = train(cfg, tmp_path / "full", model=None, **dict(zip(("train_set", "val_set"), tiny_sets())))

    with pytest.raises(Crash):
        train(cfg, tmp_path / "cut", callbacks=[crash_at(9)], **dict(zip(("train_set", "val_set"), tiny_sets())))
    saved = load_checkpoint(tmp_path / "cut" / "checkpoint-last.pt")
    assert (saved["global_step"], saved["epoch"], saved["step_in_epoch"]) == (8, 1, 2)  # mid-epoch 2
    resumed = train(cfg, tmp_path / "cut", resume=True, **dict(zip(("train_set", "val_set"), tiny_sets())))

    assert resumed.global_step == full.global_step == 12
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la, lb = load_checkpoint(tmp_path / "full" / "checkpoint-last.pt"), load_checkpoint(tmp_path / "cut" / "checkpoint-last.pt")
    for k, v in la["model_ema"]["module"].items():
        assert torch.equal(v, lb["model_ema"]["module"][k]), k
    for k, st in la["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg_sq"], lb["optimizer"]["state"][k]["exp_avg_sq"])
    ma, mb = _metrics(tmp_path / "full"), _metrics(tmp_path / "cut")
    drop = ("seconds", "images_per_second")
    assert [{k: v for k, v in r.items() if k not in drop} for r in ma] == \
           [{k: v for k, v in r.items() if k not in drop} for r in mb]


def test_run_folder_contract(tmp_path: Path) -> None:
    train_set, val_set = tiny_sets(96, 48)
    res = train(tiny_cfg(epochs=2, ema_decay=0.0, mixup=0.0, cutmix=0.0), tmp_path, train_set=train_set,
                val_set=val_set, recipe="mnist_demo")
    for f in ("config.json", "metrics.jsonl", "checkpoint-last.pt", "checkpoint-best.pt", "curves.png"):
        assert (tmp_path / f).is_file(), f
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["recipe"] == "mnist_demo" and cfg["lr"] == 3e-3 and cfg["resolved"]["steps_per_epoch"] == 3
    rows = _metrics(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [3, 6]
    for r in rows:
        assert {"epoch", "step", "train_loss", "val_loss", "val_acc1", "val_acc5", "lr", "seconds"} <= r.keys()
        assert 0.0 <= r["val_acc1"] <= r["val_acc5"] <= 1.0
    best = load_checkpoint(tmp_path / "checkpoint-best.pt")
    assert best["metrics"]["val_acc1"] == max(r["val_acc1"] for r in rows) == res.best_metric
    with Image.open(tmp_path / "curves.png") as im:
        assert im.size[0] > 500


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    """A learning rate of 1e6 blows the weights up; the run must stop naming the step, before the
    non-finite loss reaches the weights, and checkpoint-last.pt must hold finite weights."""
    train_set, val_set = tiny_sets(96, 32)
    cfg = tiny_cfg(optimizer="sgd", lr=1e6, warmup_steps=0, clip_grad=0.0, checkpoint_every=1, accum_steps=1,
                   mixup=0.0, cutmix=0.0, epochs=3)
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg, tmp_path, train_set=train_set, val_set=val_set)
    msg = str(err.value)
    step = int(msg.split(" at step ")[1].split()[0])
    assert step >= 2 and "last good checkpoint" in msg and "lr" in msg
    ck = load_checkpoint(tmp_path / "checkpoint-last.pt")
    assert ck["global_step"] == step - 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_corrupt_and_odd_mode_images_are_skipped_and_counted(tmp_path: Path) -> None:
    """An image folder with a file that is not an image and a truncated JPEG among real digits in
    several colour modes trains without crashing and reports two skipped files per epoch."""
    digits = EmbeddedMNIST("train", mode="L")
    root = tmp_path / "data"
    modes = ("L", "RGB", "P", "RGBA", "CMYK")
    for i in range(40):
        img = Image.fromarray(digits.load(i)[0].numpy())
        d = root / str(digits.targets[i] % 2)
        d.mkdir(parents=True, exist_ok=True)
        mode = modes[i % len(modes)]
        img.convert(mode).save(d / f"{i}.{'jpg' if mode == 'CMYK' else 'png'}")
    (root / "0" / "bad.png").write_bytes(b"this is not an image")
    some = sorted((root / "1").glob("*.png"))[0]
    Image.open(some).convert("RGB").save(root / "1" / "trunc.jpg")
    data = (root / "1" / "trunc.jpg").read_bytes()
    (root / "1" / "trunc.jpg").write_bytes(data[: len(data) // 2])  # a JPEG cut in the middle
    tf = train_transform(28, mean=(0.5,) * 3, std=(0.5,) * 3, preset="resize")
    train_set = ImageFolder(root, tf, "RGB")
    val_set = ImageFolder(root, eval_transform(28, mean=(0.5,) * 3, std=(0.5,) * 3), "RGB")
    assert len(train_set) == 42
    cfg = tiny_cfg(model="vit_micro_patch4_32", img_size=28, batch_size=42, accum_steps=1, epochs=2, mixup=0.0,
                   cutmix=0.0, ema_decay=0.0)
    train(cfg, tmp_path / "run", train_set=train_set, val_set=val_set)
    rows = _metrics(tmp_path / "run")
    assert [r["skipped"] for r in rows] == [2, 2]


def test_oom_message_names_the_settings_to_lower(tmp_path: Path) -> None:
    class Oom(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    train_set, val_set = tiny_sets(64, 32)
    with pytest.raises(TrainingError, match="accum_steps.*grad_checkpointing=true.*precision=bf16"):
        Trainer(tiny_cfg(mixup=0.0, cutmix=0.0, ema_decay=0.0), tmp_path, model=Oom(), train_set=train_set,
                val_set=val_set).fit()


def _torchrun_available() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_gloo_available()


@pytest.mark.skipif(not _torchrun_available(), reason="torch.distributed with gloo is not available")
def test_two_process_gloo_equals_one_process(tmp_path: Path) -> None:
    """``torchrun --nproc_per_node=2`` (gloo, CPU) with the same global batch ends with the same
    weights as one process: same samples per step, same augmentation per sample, gradients averaged
    (with accumulation and DDP's no_sync). Only the order of floating-point sums differs, hence a
    tolerance of float32 rounding. (With Adam the same rounding is amplified where a gradient is
    near zero, since Adam normalises its size away; SGD shows the equality without that effect.)"""
    args = ["train", "max_steps=4", "batch_size=32", "accum_steps=2", "num_workers=0", "progress=false", "threads=1",
            "dropout=0", "drop_path=0", "val_fraction=0.02", "checkpoint_every=0", "warmup_epochs=0",
            "optimizer=sgd", "lr=0.1"]  # SGD: the update is linear in the gradient, so rounding stays rounding
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    one = subprocess.run([sys.executable, "-m", "vitkit.cli", *args, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=240)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "vitkit.cli", *args, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=240)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoint-last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint-last.pt")
    assert b["world_size"] == 2 and a["world_size"] == 1 and a["global_step"] == b["global_step"] == 4
    torch.manual_seed(0)  # the loop's initialisation: seed, then build
    init = create_model(get_recipe("mnist_demo").model, num_classes=10).state_dict()
    moved = max((v - init[k]).abs().max().item() for k, v in a["model"].items())
    assert moved > 1e-3  # the weights did train
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    ra, rb = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert math.isclose(ra[-1]["train_loss"], rb[-1]["train_loss"], rel_tol=1e-5)
    assert ra[-1]["val_acc1"] == rb[-1]["val_acc1"]  # every val image counted once across the 2 ranks


FSDP_RUN = """
import sys
from vitkit.train import Trainer, apply_overrides, get_recipe

out, crash, stochastic = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
cfg = apply_overrides(get_recipe("mnist_demo"), dict(
    max_steps=4, batch_size=32, accum_steps=2, num_workers=0, progress=False, threads=1, val_fraction=0.02,
    checkpoint_every=2, warmup_epochs=0, ema_decay=0.5, clip_grad=1.0, parallel="fsdp",
    # stochastic: AdamW and drop-path (the RNG and optimiser state a resume must restore); else SGD and
    # no randomness, so that 2 processes compute what one does (see test_two_process_gloo_equals_one_process)
    **(dict(drop_path=0.1) if stochastic else dict(drop_path=0.0, dropout=0.0, optimizer="sgd", lr=0.1))))

def stop(trainer):
    if trainer.global_step == crash:
        raise SystemExit(3)

Trainer(cfg, out, resume=crash < 0, callbacks=[stop]).fit()
"""


@pytest.mark.skipif(not _torchrun_available(), reason="torch.distributed with gloo is not available")
def test_fsdp_two_processes_train_like_one_and_resume_exactly(tmp_path: Path) -> None:
    """``parallel=fsdp`` under torchrun (2 gloo processes): the run ends with one process's weights
    and EMA (float32 rounding of the sharded sums), writes whole checkpoints that load anywhere, and a
    run stopped after step 2 and resumed ends bit-identical to the uninterrupted one (optimiser state
    restored into the shards, every rank's RNG: drop-path on)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    script = tmp_path / "run.py"
    script.write_text(FSDP_RUN)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]

    def launch(out: str, crash: int, stochastic: bool, procs: list[str] = torchrun) -> None:
        run = subprocess.run([*procs, str(tmp_path / out), str(crash), str(int(stochastic))], env=env,
                             capture_output=True, text=True, timeout=240)
        assert (run.returncode != 0) if crash > 0 else (run.returncode == 0), run.stderr[-3000:]

    launch("sharded", 0, False)
    launch("one", 0, False, [sys.executable, str(script)])  # parallel=fsdp in one process: plain training
    a, b = load_checkpoint(tmp_path / "one" / "checkpoint-last.pt"), load_checkpoint(tmp_path / "sharded" / "checkpoint-last.pt")
    assert (a["parallel"], b["parallel"], b["world_size"], b["global_step"]) == ("ddp", "fsdp", 2, 4)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
        torch.testing.assert_close(b["model_ema"]["module"][k], a["model_ema"]["module"][k], rtol=1e-5, atol=1e-6)
    assert _metrics(tmp_path / "one")[-1]["val_acc1"] == _metrics(tmp_path / "sharded")[-1]["val_acc1"]
    model = create_model(b["model_name"], **b["model_kwargs"])
    model.load_state_dict(load_checkpoint(tmp_path / "sharded" / "checkpoint-best.pt")["model"])  # whole weights

    launch("whole", 0, True)
    launch("cut", 2, True)  # stops (exit 3) after the checkpoint at step 2
    assert load_checkpoint(tmp_path / "cut" / "checkpoint-last.pt")["global_step"] == 2
    launch("cut", -1, True)  # resumes
    w, c = load_checkpoint(tmp_path / "whole" / "checkpoint-last.pt"), load_checkpoint(tmp_path / "cut" / "checkpoint-last.pt")
    assert c["global_step"] == 4
    for k, v in w["model"].items():
        assert torch.equal(c["model"][k], v), k
    assert _metrics(tmp_path / "cut")[-1]["train_loss"] == _metrics(tmp_path / "whole")[-1]["train_loss"]


@pytest.mark.parametrize("model, extra", [
    ("vit_micro_patch4_32", dict(precision="bf16", channels_last=True, layer_decay=0.75, optimizer="sgd")),
    ("swin_micro_patch2_window4_32", dict(grad_checkpointing=True, layer_decay=0.75, lr_base_batch=64,
                                          schedule="linear", randaugment=5, random_erasing=0.25)),
])
def test_options_run_on_vit_and_swin(tmp_path: Path, model: str, extra: dict) -> None:
    """bf16 autocast on the CPU, channels-last, gradient checkpointing, layer decay, LR scaling and the
    heavier augmentations work together for both families (three steps, finite and moving loss)."""
    tr, va = EmbeddedMNIST("train", mode="RGB"), EmbeddedMNIST("val", mode="RGB")
    tf = train_transform(32, mean=(0.5,) * 3, std=(0.5,) * 3, preset="cifar", randaugment=extra.get("randaugment", 0),
                         random_erasing=extra.get("random_erasing", 0.0))
    cfg = tiny_cfg(model=model, max_steps=3, accum_steps=1, ema_decay=0.0, **extra)
    res = train(cfg, tmp_path, train_set=SubsetView(tr, range(96), tf),
                val_set=SubsetView(va, range(32), eval_transform(32, mean=(0.5,) * 3, std=(0.5,) * 3)))
    row = res.metrics[-1]
    assert res.global_step == 3 and math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
    resolved = json.loads((tmp_path / "config.json").read_text())["resolved"]
    assert resolved["lr"] == pytest.approx(cfg.lr * (32 / 64 if cfg.lr_base_batch else 1))
    assert resolved["precision"] == ("bf16 autocast" if extra.get("precision") == "bf16" else "fp32")


def test_ctrl_c_saves_where_the_run_stands(tmp_path: Path) -> None:
    seen = {}

    def interrupt(trainer: Trainer) -> None:
        if trainer.global_step == 3:
            seen["model"] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            raise KeyboardInterrupt

    train_set, val_set = tiny_sets(128, 32)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(accum_steps=1, ema_decay=0.0), tmp_path, train_set=train_set, val_set=val_set,
              callbacks=[interrupt])
    ck = load_checkpoint(tmp_path / "checkpoint-last.pt")
    assert (ck["global_step"], ck["step_in_epoch"], ck["epoch"]) == (3, 3, 0)
    assert all(torch.equal(v, seen["model"][k]) for k, v in ck["model"].items())
