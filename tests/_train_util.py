"""Helpers shared by the training-loop tests that interrupt, signal and resume runs: a few dozen
real MNIST digits, a tiny config with every random feature on, a CLI runner in a subprocess that
can be paused at a chosen phase, and comparisons of two run folders."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from vitkit.data import EmbeddedMNIST, SubsetView, eval_transform, train_transform
from vitkit.train import apply_overrides, get_recipe
from vitkit.train.checkpoint import load_checkpoint

MEAN, STD = (0.5,), (0.5,)
TIMING = ("seconds", "images_per_second")


def tiny_sets(n_train: int = 64, n_val: int = 32) -> tuple[SubsetView, SubsetView]:
    tr, va = EmbeddedMNIST("train", mode="L"), EmbeddedMNIST("val", mode="L")
    return (SubsetView(tr, range(n_train), train_transform(28, mean=MEAN, std=STD, preset="digits")),
            SubsetView(va, range(n_val), eval_transform(28, mean=MEAN, std=STD)))


def tiny_cfg(**kw):
    """64 images / batch 16 = 4 steps an epoch, 3 epochs; dropout, drop-path, Mixup/CutMix, EMA and
    accumulation on, so that any RNG state, data position or running sum a resume misses shows."""
    base = dict(epochs=3, batch_size=16, lr=3e-3, warmup_steps=2, num_workers=0, progress=False,
                drop_path=0.1, dropout=0.1, mixup=0.2, cutmix=1.0, mixup_prob=0.5, label_smoothing=0.1,
                ema_decay=0.9, accum_steps=2, clip_grad=1.0)
    base.update(kw)
    return apply_overrides(get_recipe("mnist_demo"), base)


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def untimed(rs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rs]


def assert_same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same run: every weight, EMA weight and optimiser moment of
    checkpoint-last.pt, checkpoint-best.pt's step and weights, and every metrics row exactly once."""
    la, lb = load_checkpoint(Path(a) / "checkpoint-last.pt"), load_checkpoint(Path(b) / "checkpoint-last.pt")
    assert la["global_step"] == lb["global_step"]
    for k, v in la["model"].items():
        assert torch.equal(v, lb["model"][k]), k
    if "model_ema" in la:
        for k, v in la["model_ema"]["module"].items():
            assert torch.equal(v, lb["model_ema"]["module"][k]), k
    for k, st in la["optimizer"]["state"].items():
        for name, t in st.items():
            assert torch.equal(torch.as_tensor(t), torch.as_tensor(lb["optimizer"]["state"][k][name])), (k, name)
    assert untimed(rows(a)) == untimed(rows(b))
    ba, bb = load_checkpoint(Path(a) / "checkpoint-best.pt"), load_checkpoint(Path(b) / "checkpoint-best.pt")
    assert ba["global_step"] == bb["global_step"] and untimed([ba["metrics"]]) == untimed([bb["metrics"]])
    for k, v in ba["model"].items():
        assert torch.equal(v, bb["model"][k]), k


# ------------------------------------------------------------------ the CLI in a subprocess, paused
PAUSE_SCRIPT = r'''
import os, signal, sys, time
from vitkit.train import tasks

# Ctrl-C reaches a run started from a terminal; a background job (pytest run with &) inherits SIGINT
# ignored, which vitkit respects, as it respects nohup's ignored SIGHUP
signal.signal(signal.SIGINT, signal.default_int_handler)

phase, at = os.environ.get("PAUSE_PHASE", ""), int(os.environ.get("PAUSE_AT", "0"))
rank_only = os.environ.get("PAUSE_RANK")
seconds = float(os.environ.get("PAUSE_SECONDS", "60"))

def pausing(name):
    orig = getattr(tasks.ClassificationTask, name)
    calls = [0]
    def f(self, *a, **k):
        calls[0] += 1
        if calls[0] == at and (rank_only is None or os.environ.get("RANK", "0") == rank_only):
            print(f"PAUSED in {name} call {at} pid={os.getpid()}", flush=True)
            end = time.time() + seconds
            while time.time() < end:  # short sleeps: a handler that only sets a flag lets it go on
                time.sleep(0.05)
        return orig(self, *a, **k)
    setattr(tasks.ClassificationTask, name, f)

if phase:
    pausing(phase)
from vitkit.cli import main
sys.exit(main(sys.argv[1:]))
'''

CLI_ARGS = ["epochs=2", "train_examples=64", "val_fraction=0.01", "batch_size=16", "progress=false", "threads=1",
            "drop_path=0.1", "mixup=0.2", "ema_decay=0.9"]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def cli(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitkit.cli", "train", *args], env=env(), capture_output=True,
                          text=True, timeout=timeout)


def start_paused(tmp: Path, phase: str, at: int, args: list[str], launcher: list[str] | None = None,
                 **extra_env: str) -> tuple[subprocess.Popen, str, list[str]]:
    """Start ``vitkit train ARGS`` (under ``launcher``, e.g. torchrun) that pauses in the ``at``-th
    call of ClassificationTask.``phase``; returns once it says so: (process, its PAUSED line, output)."""
    script = tmp / "paused_cli.py"
    script.write_text(PAUSE_SCRIPT)
    cmd = [*(launcher or [sys.executable]), str(script), "train", *args]
    p = subprocess.Popen(cmd, env={**env(), "PAUSE_PHASE": phase, "PAUSE_AT": str(at), **extra_env},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        out.append(line)
        if line.startswith("PAUSED"):
            return p, line, out
    p.kill()
    raise AssertionError("the run never paused:\n" + "".join(out)[-3000:])


def finish(p: subprocess.Popen, out: list[str], timeout: float = 120) -> str:
    rest, _ = p.communicate(timeout=timeout)
    return "".join(out) + (rest or "")
