"""SIGTERM / SIGINT (what cluster schedulers, torchrun's elastic agent and Ctrl-C send) save the run
at the current step, say so and exit non-zero; the resumed run equals the uninterrupted one. Real
signals to a real ``vitkit train`` process, sent while it is paused inside a chosen phase; under
torchrun a signal to one rank only stops every rank at the same step."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from _train_util import CLI_ARGS, assert_same_run, cli, finish, start_paused
from vitkit.train.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full")
    run = cli(out, *CLI_ARGS, "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    return out


@pytest.mark.parametrize("sig, phase, at, step", [
    (signal.SIGTERM, "training_loss", 6, 5),  # inside step 6 (epoch 2): saved after step 5
    (signal.SIGINT, "evaluate", 1, 4),        # inside the validation of epoch 1: saved as "epoch 1 not yet reported"
])
def test_signal_saves_says_so_exits_nonzero_and_resumes_exactly(tmp_path: Path, reference: Path, sig, phase, at,
                                                               step) -> None:
    out = tmp_path / "run"
    p, _, lines = start_paused(tmp_path, phase, at, [*CLI_ARGS, "--out", str(out)])
    p.send_signal(sig)
    text = finish(p, lines)
    assert p.returncode == 128 + sig, text[-2000:]
    assert signal.Signals(sig).name in text and "saved" in text and "--resume" in text, text[-2000:]
    assert load_checkpoint(out / "checkpoint-last.pt")["global_step"] == step
    run = cli(tmp_path, "--out", str(out), "--resume")
    assert run.returncode == 0, run.stderr[-2000:]
    assert_same_run(reference, out)


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="torch.distributed with gloo is not available")
@pytest.mark.parametrize("target", ["rank 1 only", "torchrun's agent"])
def test_sigterm_under_torchrun_stops_every_rank_at_the_same_step(tmp_path: Path, target: str) -> None:
    """torchrun, 2 gloo processes, rank 1 paused 4 s inside step 3: SIGTERM to rank 1 alone, or to
    the torchrun agent (which forwards it to both workers) → both ranks stop after step 3, rank 0
    saves it, the launch exits non-zero. A rank that did not agree would wait in the next
    collective until the timeout; a rank killed by the signal would leave no step-3 checkpoint."""
    out = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    p, line, lines = start_paused(tmp_path, "training_loss", 3, [*CLI_ARGS, "checkpoint_every=0", "--out", str(out)],
                                  launcher=torchrun, PAUSE_RANK="1", PAUSE_SECONDS="4")
    os.kill(int(line.split("pid=")[1]) if target == "rank 1 only" else p.pid, signal.SIGTERM)
    text = finish(p, lines, timeout=120)
    assert p.returncode != 0, text[-3000:]
    assert "SIGTERM" in text and "saved" in text, text[-3000:]
    ck = load_checkpoint(out / "checkpoint-last.pt")
    assert (ck["global_step"], ck["world_size"]) == (3, 2)
