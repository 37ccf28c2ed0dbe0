"""What a run folder protects: one writer at a time (a lock naming its holder; stale locks taken
over), no overwriting a folder that is not a vitkit run, no leftover checkpoint temp files, resume
only on the data it started with, resume past a damaged metrics.jsonl or config.json, lr/clip_grad
changeable on resume (what the NaN-stop advice says), and a full disk named in one line."""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _train_util import CLI_ARGS, finish, rows, start_paused, tiny_cfg, tiny_sets
from vitkit.cli import main
from vitkit.train import Trainer, train
from vitkit.train.checkpoint import load_checkpoint
from vitkit.train.tasks import ClassificationTask


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _interrupt_at_call(monkeypatch, n: int, name: str = "training_loss") -> None:
    orig, calls = getattr(ClassificationTask, name), [0]

    def f(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return orig(*a, **k)

    monkeypatch.setattr(ClassificationTask, name, f)


def _interrupted_run(out: Path, monkeypatch, n: int = 6, **cfg) -> None:
    tr, va = tiny_sets()
    with monkeypatch.context() as m:
        _interrupt_at_call(m, n)
        with pytest.raises(KeyboardInterrupt):
            train(tiny_cfg(**cfg), out, train_set=tr, val_set=va)


# ------------------------------------------------------------------------------ item 5: the lock
def test_second_writer_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path: Path, caplog) -> None:
    out = tmp_path / "run"
    p, _, lines = start_paused(tmp_path, "training_loss", 3, [*CLI_ARGS, "--out", str(out)])
    try:
        tr, va = tiny_sets()
        with pytest.raises(RuntimeError) as err:
            Trainer(tiny_cfg(), out, train_set=tr, val_set=va)
        msg = str(err.value)
        assert f"pid {p.pid}" in msg and socket.gethostname() in msg and "another --out" in msg, msg
        assert not any(out.glob("*.tmp*"))
    finally:
        p.kill()  # kill -9: the lock file stays behind, its holder dead
        finish(p, lines)
    assert any(out.glob("*lock*")), "the killed run left no lock file"
    tr, va = tiny_sets()
    with caplog.at_level(logging.WARNING):
        train(tiny_cfg(epochs=1), out, resume=(out / "checkpoint-last.pt").exists(), train_set=tr, val_set=va,
              recipe="mnist_demo")
    assert "stale" in caplog.text and str(p.pid) in caplog.text
    assert not any(out.glob("*lock*")), "the lock outlived the run"


def test_lock_of_another_host_is_refused_while_refreshed_and_taken_over_when_stale(tmp_path: Path, caplog) -> None:
    from vitkit.train.errors import RunFolderBusy
    from vitkit.train.runfolder import STALE_AFTER_S, RunLock

    lock = tmp_path / "run.lock"
    lock.write_text(json.dumps({"pid": 4242, "host": "node-7", "started": "yesterday", "command": "vitkit train"}))
    with pytest.raises(RunFolderBusy, match="pid 4242 on host node-7.*another --out"):
        RunLock(tmp_path).acquire()
    old = lock.stat().st_mtime - STALE_AFTER_S - 60  # its holder stopped refreshing it
    os.utime(lock, (old, old))
    with caplog.at_level(logging.WARNING):
        mine = RunLock(tmp_path).acquire()
    assert "stale" in caplog.text and "node-7" in caplog.text
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    mine.release()
    assert not lock.exists()


# ----------------------------------------------------------------- item 6: not a vitkit run folder
def test_out_folder_that_is_not_a_vitkit_run_of_this_recipe_is_refused(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "own settings"}\n')
    (mine / "metrics.jsonl").write_text('{"mine": 1}\n')
    tr, va = tiny_sets()
    with pytest.raises(ValueError, match="not a vitkit run.*another --out"):
        train(tiny_cfg(epochs=1), mine, train_set=tr, val_set=va, recipe="mnist_demo")
    assert (mine / "config.json").read_text() == '{"my": "own settings"}\n'
    assert (mine / "metrics.jsonl").read_text() == '{"mine": 1}\n'

    run = tmp_path / "run"  # a vitkit run of another recipe
    train(tiny_cfg(epochs=1), run, train_set=tr, val_set=va, recipe="mnist_demo")
    with pytest.raises(ValueError, match="cifar10_vit.*mnist_demo|mnist_demo.*cifar10_vit"):
        train(tiny_cfg(epochs=1), run, train_set=tr, val_set=va, recipe="cifar10_vit")
    train(tiny_cfg(epochs=1), run, train_set=tr, val_set=va, recipe="mnist_demo")  # the same recipe: a new start


# -------------------------------------------------------------------------- item 9: temp files
def test_stale_checkpoint_temp_files_are_removed_at_start(tmp_path: Path, monkeypatch, caplog) -> None:
    _interrupted_run(tmp_path, monkeypatch)
    dead = tmp_path / f".checkpoint-last.pt.tmp{_dead_pid()}"
    dead.write_bytes(b"\0" * 1000)  # what kill -9 during a save leaves
    live = tmp_path / f".checkpoint-best.pt.tmp{os.getppid()}"  # a writer that is still alive: left alone
    live.write_bytes(b"\0" * 10)
    tr, va = tiny_sets()
    with caplog.at_level(logging.INFO):
        Trainer(tiny_cfg(), tmp_path, resume=True, train_set=tr, val_set=va)
    assert not dead.exists() and live.exists()
    assert dead.name in caplog.text


# ---------------------------------------------------------------------- item 7: the data changed
def _digits_folder(root: Path, n: int, classes=("0", "1", "2")) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n if split == "train" else 4):
                if not (d / f"{i}.png").exists():
                    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def test_resume_refuses_data_that_changed_since_the_start(tmp_path: Path, monkeypatch) -> None:
    data = _digits_folder(tmp_path / "data", 16)  # 48 training images: 3 steps an epoch
    cfg = dict(data=str(data), mixup=0.0, cutmix=0.0, checkpoint_every=1)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_at_call(m, 4)
        with pytest.raises(KeyboardInterrupt):
            train(tiny_cfg(**cfg), out)
    _digits_folder(data, 20)  # 12 images more
    with pytest.raises(ValueError) as err:
        train(tiny_cfg(**cfg), out, resume=True)
    msg = str(err.value)
    assert "train" in msg and "48" in msg and "60" in msg and "another --out" in msg, msg
    for c in ("0", "1", "2"):
        for i in range(16, 20):
            (data / "train" / c / f"{i}.png").unlink()
    _digits_folder(data, 16, classes=("0", "1", "2", "3"))  # a class more
    with pytest.raises(ValueError, match="class.*'3'"):
        train(tiny_cfg(**cfg), out, resume=True)
    import shutil

    shutil.rmtree(data / "train" / "3")
    shutil.rmtree(data / "val" / "3")
    (data / "train" / "0" / "0.png").rename(data / "train" / "0" / "renamed.png")  # same count, other files
    with pytest.raises(ValueError, match="files"):
        train(tiny_cfg(**cfg), out, resume=True)
    (data / "train" / "0" / "renamed.png").rename(data / "train" / "0" / "0.png")
    assert train(tiny_cfg(**cfg), out, resume=True).global_step == 9  # the data as it was: resumes


# ------------------------------------------------------- item 12: damaged metrics.jsonl / config.json
def test_resume_past_a_truncated_last_metrics_line(tmp_path: Path, monkeypatch) -> None:
    _interrupted_run(tmp_path, monkeypatch, n=12)  # in epoch 2: one row written
    path = tmp_path / "metrics.jsonl"
    path.write_text(path.read_text() + '{"epoch": 2, "step": 8, "train_lo')  # a write cut by a crash
    tr, va = tiny_sets()
    res = train(tiny_cfg(), tmp_path, resume=True, train_set=tr, val_set=va)
    assert [r["step"] for r in rows(tmp_path)] == [4, 8, 12] == [r["step"] for r in res.metrics]


def _cli_run_interrupted(out: Path, monkeypatch, *extra: str) -> None:
    with monkeypatch.context() as m:
        _interrupt_at_call(m, 6)
        assert main(["train", *CLI_ARGS, *extra, "--out", str(out)]) == 130


@pytest.mark.parametrize("damage", ["empty", "missing", "garbage"])
def test_resume_with_a_damaged_config_json_recovers_it_from_the_checkpoint(tmp_path: Path, monkeypatch, damage,
                                                                           caplog) -> None:
    out = tmp_path / "run"
    _cli_run_interrupted(out, monkeypatch)
    want = json.loads((out / "config.json").read_text())
    {"empty": lambda p: p.write_text(""), "missing": lambda p: p.unlink(),
     "garbage": lambda p: p.write_text('{"recipe": "mnist_demo", "lr": ')}[damage](out / "config.json")
    with caplog.at_level(logging.WARNING):
        assert main(["train", "--out", str(out), "--resume"]) == 0
    assert "config.json" in caplog.text and "checkpoint-last.pt" in caplog.text
    got = json.loads((out / "config.json").read_text())
    assert {k: v for k, v in got.items() if k != "resolved"} == {k: v for k, v in want.items() if k != "resolved"}


def test_damaged_config_json_without_checkpoint_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("")
    (tmp_path / "checkpoint-last.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="config.json.*(empty|damaged)"):
        from vitkit.train import load_run_config

        load_run_config(tmp_path)


# ----------------------------------------------------- item 13: lr / clip_grad may change on resume
def test_nan_stop_advice_works_lr_and_clip_grad_change_on_resume(tmp_path: Path, monkeypatch, caplog) -> None:
    """A loss spike to NaN in step 5 (injected) stops the run; the command its message advises,
    ``--resume`` with a lower lr and clipping, is accepted, logged, kept in config.json, and trains on."""
    out = tmp_path / "run"
    orig, calls = ClassificationTask.training_loss, [0]

    def spike(self, model, batch):
        calls[0] += 1
        loss, n = orig(self, model, batch)
        return (loss * float("nan") if calls[0] == 5 else loss), n

    with monkeypatch.context() as m, caplog.at_level(logging.ERROR):
        m.setattr(ClassificationTask, "training_loss", spike)
        rc = main(["train", *CLI_ARGS, "clip_grad=0", "checkpoint_every=1", "--out", str(out)])
    assert rc == 1
    advice = caplog.text
    assert "--resume lr=" in advice and "clip_grad=" in advice, advice
    stopped = load_checkpoint(out / "checkpoint-last.pt")["global_step"]
    assert stopped == 4
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(["train", "--resume", "lr=0.0005", "clip_grad=1", "--out", str(out)]) == 0
    assert "lr 0.0005 (was 0.001)" in caplog.text and "clip_grad 1 (was 0)" in caplog.text  # the change is logged
    ck = load_checkpoint(out / "checkpoint-last.pt")
    assert ck["global_step"] == 8 and ck["config"]["lr"] == 0.0005 and ck["config"]["clip_grad"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["lr"] == 0.0005 and cfg["clip_grad"] == 1  # a later --resume keeps the new values
    assert cfg["resolved"]["resume_changes"] == [{"step": 4, "lr": [0.001, 0.0005], "clip_grad": [0.0, 1.0]}]


def test_lr_changed_on_resume_drives_the_schedule(tmp_path: Path, monkeypatch) -> None:
    _interrupted_run(tmp_path, monkeypatch, n=6, checkpoint_every=1)
    tr, va = tiny_sets()
    t = Trainer(tiny_cfg(lr=1e-3), tmp_path, resume=True, train_set=tr, val_set=va)
    step = t.global_step
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * t.schedule(step))
    assert t.scheduler.base_lrs[0] == pytest.approx(1e-3)


# --------------------------------------------------------------------------- item 11: disk full
def test_disk_full_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch,
                                                                             capsys, caplog) -> None:
    out = tmp_path / "run"
    real, calls = torch.save, [0]

    def save(obj, f, *a, **k):
        calls[0] += 1
        if calls[0] >= 3:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    with caplog.at_level(logging.ERROR):
        rc = main(["train", *CLI_ARGS, "checkpoint_every=1", "--out", str(out)])
    monkeypatch.setattr(torch, "save", real)
    assert rc == 1
    said = caplog.text + capsys.readouterr().err
    assert "ENOSPC" in said and str(out) in said and "Traceback" not in said, said
    assert load_checkpoint(out / "checkpoint-last.pt")["global_step"] == 2  # the previous save, intact
    assert not list(out.glob(".*.tmp*"))
