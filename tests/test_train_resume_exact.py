"""An interrupt at any instant of a run resumes bit-identical to the run that never stopped.

Each test trains the same tiny run (3 epochs × 4 steps, dropout, drop-path, Mixup/CutMix, EMA,
gradient accumulation) with a KeyboardInterrupt raised from inside one phase, resumes it, and
compares with the uninterrupted run: final weights, EMA and optimiser moments, checkpoint-best.pt,
and every metrics.jsonl row exactly once (train_loss of the interrupted epoch included). A crash
that saves nothing (kill -9, simulated by another exception) between the two checkpoint writes must
leave checkpoint-best.pt no older than what checkpoint-last.pt reports."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

import vitkit.train.loop as loop
from _train_util import assert_same_run, rows, tiny_cfg, tiny_sets, untimed
from test_dense_cli import SEG_TINY, _same_state, seg_folder  # noqa: F401  (seg_folder: a fixture)
from vitkit.train import train
from vitkit.train.checkpoint import load_checkpoint
from vitkit.train.tasks import ClassificationTask


def _run(out: Path, resume: bool = False):
    tr, va = tiny_sets()
    return train(tiny_cfg(), out, resume=resume, train_set=tr, val_set=va)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full")
    _run(out)
    assert [r["step"] for r in rows(out)] == [4, 8, 12]
    return out


def _raise_on_call(monkeypatch, owner, name: str, n: int, exc: type[BaseException] = KeyboardInterrupt) -> None:
    orig = getattr(owner, name)
    calls = [0]

    def f(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            raise exc(f"interrupted in call {n} of {name}")
        return orig(*a, **k)

    monkeypatch.setattr(owner, name, f)


# (where, which call): training_loss runs twice a step (accumulation 2); evaluate twice a row (model, EMA)
PHASES = {
    "first micro-batch of epoch 2": (ClassificationTask, "training_loss", 9),
    "mid-step, second micro-batch of step 6": (ClassificationTask, "training_loss", 12),
    "validation of epoch 1": (ClassificationTask, "evaluate", 1),
    "EMA validation of epoch 2": (ClassificationTask, "evaluate", 4),
    "validation of the last epoch": (ClassificationTask, "evaluate", 5),
    "plot after the last epoch": (loop, "plot_curves", 3),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_interrupt_in_any_phase_resumes_bit_identical(tmp_path: Path, monkeypatch, reference: Path, phase: str) -> None:
    owner, name, n = PHASES[phase]
    with monkeypatch.context() as m:
        _raise_on_call(m, owner, name, n)
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path)
    res = _run(tmp_path, resume=True)
    assert res.global_step == 12
    assert_same_run(reference, tmp_path)


def _raise_between_checkpoint_writes(monkeypatch, exc: type[BaseException]) -> None:
    """Raise in the second checkpoint write of one report (checkpoint-last.pt and checkpoint-best.pt,
    in whichever order the loop writes them)."""
    orig, seen, raised = loop.save_atomic, [], []

    def f(obj, path):
        step = obj.get("global_step")
        if not raised and seen and seen[-1][0] == step and seen[-1][1] != Path(path).name:
            raised.append(step)  # once: the save on the way out goes through
            raise exc("interrupted between the two checkpoint writes")
        seen.append((step, Path(path).name))
        return orig(obj, path)

    monkeypatch.setattr(loop, "save_atomic", f)


def test_interrupt_between_the_two_checkpoint_writes_resumes_bit_identical(tmp_path: Path, monkeypatch,
                                                                          reference: Path) -> None:
    with monkeypatch.context() as m:
        _raise_between_checkpoint_writes(m, KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path)
    _run(tmp_path, resume=True)
    assert_same_run(reference, tmp_path)


def _best_metric(best: dict) -> float:
    """The main metric of checkpoint-best.pt's weights (the EMA's when those were the better)."""
    return best["metrics"]["ema_val_acc1" if best["weights_from"] == "ema" else "val_acc1"]


class Killed(Exception):
    """What kill -9 leaves: no handler runs, nothing is saved on the way out."""


def test_crash_between_checkpoint_writes_leaves_a_consistent_pair(tmp_path: Path, monkeypatch, reference: Path,
                                                                  caplog) -> None:
    tr, va = tiny_sets()
    cfg = tiny_cfg(checkpoint_every=3)  # a checkpoint-last.pt (step 3) exists before the first report (step 4)
    with monkeypatch.context() as m:
        _raise_between_checkpoint_writes(m, Killed)
        with pytest.raises(Killed):
            train(cfg, tmp_path, train_set=tr, val_set=va)
    last = load_checkpoint(tmp_path / "checkpoint-last.pt")
    if last["best_metric"] is not None:  # last reports a best: checkpoint-best.pt must hold it (or a newer one)
        assert (tmp_path / "checkpoint-best.pt").is_file(), "checkpoint-last.pt reports a best that was never written"
        best = load_checkpoint(tmp_path / "checkpoint-best.pt")
        assert _best_metric(best) == last["best_metric"] or best["global_step"] > last["global_step"]
    tr, va = tiny_sets()
    with caplog.at_level(logging.WARNING):
        train(cfg, tmp_path, resume=True, train_set=tr, val_set=va)
    assert "checkpoint-best.pt holds step 4, after checkpoint-last.pt (step 3)" in caplog.text
    best = load_checkpoint(tmp_path / "checkpoint-best.pt")
    want = load_checkpoint(reference / "checkpoint-best.pt")
    assert best["global_step"] == want["global_step"] and _best_metric(best) == _best_metric(want)
    assert load_checkpoint(tmp_path / "checkpoint-last.pt")["best_metric"] == _best_metric(best)


def test_signal_inside_the_optimizer_step_waits_for_its_end(tmp_path: Path, monkeypatch, reference: Path) -> None:
    """A real SIGINT delivered between the weight update and the counters of step 6 (from inside the
    LR scheduler's step) is held until the step is committed: the save is step 6, whole."""
    import os
    import signal

    import torch

    orig, calls = torch.optim.lr_scheduler.LambdaLR.step, [0]

    def step(self, *a, **k):
        calls[0] += 1
        if calls[0] == 7:  # (call 1: the scheduler's construction) the weights of step 6 are updated, its counters not
            os.kill(os.getpid(), signal.SIGINT)
        return orig(self, *a, **k)

    old = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
    try:
        with monkeypatch.context() as m:
            m.setattr(torch.optim.lr_scheduler.LambdaLR, "step", step)
            with pytest.raises(KeyboardInterrupt):
                _run(tmp_path)
    finally:
        signal.signal(signal.SIGINT, old)
    assert load_checkpoint(tmp_path / "checkpoint-last.pt")["global_step"] == 6
    _run(tmp_path, resume=True)
    assert_same_run(reference, tmp_path)


def test_segmentation_interrupted_in_validation_resumes_bit_identical(seg_folder: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """The same loop runs segmentation (iteration based: a report every eval_interval steps, mid-epoch):
    Ctrl-C inside the evaluation at iteration 3 of 5 resumes to that evaluation, and the run ends
    as the uninterrupted one (weights, optimiser, every metrics row once, train_loss of each)."""
    from vitkit.cli import main
    from vitkit.dense.train_seg import SegmentationTask

    data = seg_folder
    argv = [*SEG_TINY, "model_kwargs={\"drop_path_rate\": 0.3}", "eval_interval=3"]
    argv[argv.index("--iters") + 1] = "5"
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["segment", "train", "--data", str(data), "--out", str(whole), *argv]) == 0
    with monkeypatch.context() as m:
        _raise_on_call(m, SegmentationTask, "evaluate", 1)
        with pytest.raises((SystemExit, KeyboardInterrupt)) as stop:
            main(["segment", "train", "--data", str(data), "--out", str(cut), *argv])
    phase = load_checkpoint(cut / "checkpoint-last.pt").get("phase")
    assert isinstance(stop.value, SystemExit) and stop.value.code == 130  # 128 + SIGINT, no traceback
    assert phase == "report"  # the steps are done, their report (evaluation, row, checkpoints) is not
    assert main(["segment", "train", "--data", str(data), "--out", str(cut), *argv, "--resume"]) == 0
    _same_state(whole / "checkpoint-last.pt", cut / "checkpoint-last.pt")
    assert untimed(rows(cut)) == untimed(rows(whole)) and [r["iter"] for r in rows(cut)] == [3, 5]
