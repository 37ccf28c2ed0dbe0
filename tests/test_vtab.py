"""VTAB-1k style runs (vitkit.evaluate.vtab): per-task fine-tuning on a seeded subset of train/,
scored on test/, grouped as VTAB groups its tasks; an interrupted sweep picks up where it stopped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitkit.cli import main
from vitkit.evaluate.vtab import VTAB_GROUPS, run_vtab, summarize
from vitkit.train import get_recipe


def _task(root: Path, name: str, n_train: int = 16, n_test: int = 6) -> None:
    rng = np.random.default_rng(len(name))
    for split, n in (("train", n_train), ("test", n_test)):
        for c, level in enumerate((40, 200)):
            d = root / name / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(level + rng.normal(0, 20, (28, 28, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")


def test_vtab_groups_are_the_19_tasks():
    assert len(VTAB_GROUPS) == 19
    assert sorted(set(VTAB_GROUPS.values())) == ["natural", "specialized", "structured"]
    s = summarize({"dtd": 0.5, "eurosat": 0.9, "clevr_count": 0.7, "mine": 0.1})
    assert s["groups"] == {"natural": 0.5, "other": 0.1, "specialized": 0.9, "structured": 0.7}
    assert s["mean"] == pytest.approx(0.55) and not s["complete"]


def test_vtab_runs_each_task_on_a_subset_and_scores_test(tmp_path: Path) -> None:
    _task(tmp_path / "tasks", "dtd")
    _task(tmp_path / "tasks", "mytask")
    (tmp_path / "tasks" / "notes").mkdir()  # no train/ + test/: not a task
    cfg = get_recipe("mnist_demo")
    out = tmp_path / "vtab"
    summary = run_vtab(tmp_path / "tasks", out, cfg, examples=20, steps=7, lr=0.01, batch_size=4,
                       num_workers=0, progress=False, warmup_epochs=0)
    assert set(summary["tasks"]) == {"dtd", "mytask"}
    assert summary["groups"].keys() == {"natural", "other"}
    assert summary["mean"] == pytest.approx(sum(summary["tasks"].values()) / 2)
    for task in ("dtd", "mytask"):
        doc = json.loads((out / task / "config.json").read_text())
        assert doc["train_examples"] == 20 and doc["eval_split"] == "test" and doc["max_steps"] == 7
        assert doc["resolved"]["train_images"] == 20 and doc["resolved"]["val_images"] == 12  # test/: 2 × 6
        rows = [json.loads(r) for r in (out / task / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["val_acc1"] == summary["tasks"][task]
        assert len(rows) > 1 and all("val_acc1" not in r for r in rows[:-1])  # test scored once, at the end
    saved = json.loads((out / "vtab.json").read_text())
    assert saved["tasks"] == summary["tasks"] and "| **mean over 2 tasks** |" in (out / "vtab.md").read_text()

    stamp = (out / "dtd" / "checkpoint-last.pt").stat().st_mtime_ns
    again = run_vtab(tmp_path / "tasks", out, cfg, examples=20, steps=7, lr=0.01, batch_size=4, num_workers=0,
                     progress=False, warmup_epochs=0)
    assert again["tasks"] == summary["tasks"]
    assert (out / "dtd" / "checkpoint-last.pt").stat().st_mtime_ns == stamp  # read back, not retrained

    with pytest.raises(ValueError, match="train_examples=999 but the training split has only 32 images"):
        run_vtab(tmp_path / "tasks", tmp_path / "big", cfg, tasks=["dtd"], examples=999, steps=3, batch_size=4,
                 num_workers=0, progress=False)
    assert main(["vtab", "--tasks", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
