"""``vitkit segment`` / ``vitkit detect`` end to end on tiny data: train writes the run folder, eval
of the saved checkpoint reproduces the logged score, predict writes overlays; a 2-process gloo run
under torchrun scores the validation set exactly as one process does."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.cli import main

SEG_TINY = ["--recipe", "upernet_camvid_cpu", "--iters", "2", "model=swin_micro_patch2_window4_32", "model_kwargs={}",
            "data_format=folder", "num_classes=3", "crop_size=32,32", "base_size=32,40", "batch_size=2",
            "head_channels=16", "aux_channels=8", "eval_interval=2", "log_interval=1", "workers=0"]


@pytest.fixture
def seg_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "segdata"
    for split, n, (h, w) in (("train", 4, (32, 40)), ("val", 3, (28, 36))):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i in range(n):
            lab = rng.integers(0, 3, (h, w)).astype(np.uint8)
            lab[:3] = 255
            img = (np.stack([lab * 80] * 3, -1) + rng.integers(0, 30, (h, w, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / split / "images" / f"{i}.png")
            Image.fromarray(lab).save(root / split / "labels" / f"{i}.png")
    return root


def _last_metrics(run: Path) -> dict:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])


def test_segment_train_eval_predict(seg_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["segment", "train", "--data", str(seg_folder), "--out", str(run), *SEG_TINY]) == 0
    for f in ("config.json", "metrics.jsonl", "checkpoint-last.pt", "checkpoint-best.pt", "curves.png"):
        assert (run / f).exists(), f
    row = _last_metrics(run)
    assert row["iter"] == 2 and 0.0 <= row["val_mIoU"] <= 1.0 and len(row["val_iou"]) == 3
    assert json.loads((run / "config.json").read_text())["crop_size"] == [32, 32]

    scores = tmp_path / "scores.json"
    assert main(["segment", "eval", "--checkpoint", str(run / "checkpoint-last.pt"), "--json", str(scores)]) == 0
    assert json.loads(scores.read_text())["mIoU"] == pytest.approx(row["val_mIoU"], abs=1e-12)

    img, lab = seg_folder / "val" / "images" / "0.png", seg_folder / "val" / "labels" / "0.png"
    out = tmp_path / "pred"
    assert main(["segment", "predict", str(img), "--labels", str(lab), "--checkpoint",
                 str(run / "checkpoint-last.pt"), "--out", str(out)]) == 0
    pred = np.asarray(Image.open(out / "0.png"))
    assert pred.shape == (28, 36) and pred.max() < 3
    assert Image.open(out / "0_overlay.png").size[0] == 3 * 36 + 2 * 4  # image | prediction | label

    capsys.readouterr()
    assert main(["segment", "train", "--data", str(seg_folder), "lr=fast"]) == 2
    assert "bad value 'fast' for lr" in capsys.readouterr().err


def test_detect_train_eval_predict_on_coco8(shared_data, tmp_path):
    data = shared_data / "coco8" / "coco8-seg"
    run = tmp_path / "det"
    assert main(["detect", "train", "--data", str(data), "--out", str(run), "--epochs", "1", "--batch-size", "2",
                 "model=swin_micro_patch2_window4_32", "model_kwargs={}", "min_size=64", "max_size=96",
                 "fpn_channels=16", "box_head_dim=32", "mask_head_dim=8", "eval_on_train=false",
                 "score_thresh=0.0", "detections_per_img=20"]) == 0
    row = _last_metrics(run)
    assert {"val_bbox_AP", "val_segm_AP", "train_loss_mask"} <= set(row)
    scores = tmp_path / "ap.json"
    assert main(["detect", "eval", "--checkpoint", str(run / "checkpoint-last.pt"), "--json", str(scores)]) == 0
    assert json.loads(scores.read_text())["bbox"]["AP"] == pytest.approx(row["val_bbox_AP"], abs=1e-12)
    img = sorted((data / "images" / "val").iterdir())[0]
    assert main(["detect", "predict", str(img), "--checkpoint", str(run / "checkpoint-last.pt"),
                 "--score-thresh", "0.0", "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / f"{img.stem}_det.png").exists()
    assert main(["detect", "predict", "--data", str(data), "--split", "val", "--checkpoint",
                 str(run / "checkpoint-last.pt"), "--out", str(tmp_path / "q")]) == 0
    panels = Image.open(tmp_path / "q" / "val_0000_det.png")
    first = Image.open(sorted((data / "images" / "val").iterdir())[0])
    assert panels.size == (2 * first.size[0] + 4, first.size[1])  # prediction | ground truth


@pytest.mark.slow
def test_torchrun_two_gloo_processes_score_like_one(seg_folder, tmp_path):
    """DDP and FSDP on CPU: 2 processes train (global batch 2) and each scores a shard of the
    validation set; the summed confusion matrix must give exactly the single-process score of the
    saved (whole) weights. Group norm, so no per-process batch statistics differ. The FSDP run starts
    from rank 0's weights as DDP does and ends with DDP's weights (float32 rounding)."""
    from vitkit.train.checkpoint import load_checkpoint

    script = Path(sys.executable).with_name("vitkit")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for parallel in ("ddp", "fsdp"):
        run = tmp_path / parallel
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
               "segment", "train", "--data", str(seg_folder), "--out", str(run), *SEG_TINY, "norm=gn",
               f"parallel={parallel}"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "2 processes" in proc.stderr
        assert load_checkpoint(run / "checkpoint-last.pt")["parallel"] == parallel
        row = _last_metrics(run)
        scores = tmp_path / f"scores_{parallel}.json"
        assert main(["segment", "eval", "--checkpoint", str(run / "checkpoint-last.pt"), "--json", str(scores)]) == 0
        assert json.loads(scores.read_text())["mIoU"] == pytest.approx(row["val_mIoU"], abs=1e-12)
    ddp, fsdp = (load_checkpoint(tmp_path / p / "checkpoint-last.pt")["model"] for p in ("ddp", "fsdp"))
    for k, v in ddp.items():
        torch.testing.assert_close(fsdp[k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_nan_loss_stops_keeps_the_last_good_checkpoint_and_resume_finishes(seg_folder, tmp_path, monkeypatch,
                                                                               capsys):
    import torch

    import vitkit.dense.train_seg as ts

    run = tmp_path / "nan"
    real = ts.seg_loss
    calls = []

    def loss_then_nan(*a, **k):  # iterations 0–1 fine (checkpoint at 2), then NaN at iteration 2
        calls.append(1)
        return real(*a, **k) if len(calls) <= 2 else torch.full((), float("nan"), requires_grad=True)

    monkeypatch.setattr(ts, "seg_loss", loss_then_nan)
    argv = ["segment", "train", "--data", str(seg_folder), "--out", str(run), *SEG_TINY]
    argv[argv.index("--iters") + 1] = "4"
    assert main(argv) == 1
    assert "the loss is nan at step 3" in capsys.readouterr().err  # the Trainer's message: the step it stopped in
    assert torch.load(run / "checkpoint-last.pt", weights_only=True)["global_step"] == 2
    monkeypatch.setattr(ts, "seg_loss", real)
    assert main(argv + ["--resume"]) == 0  # continues from iteration 2 to the end
    assert [r["iter"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [2, 4]
    assert torch.load(run / "checkpoint-last.pt", weights_only=True)["global_step"] == 4


def _interrupt_after(monkeypatch, module, name: str, calls: int):
    """Make ``module.name`` (the loss) return NaN from call ``calls`` + 1 on: the loop stops there
    with exit code 1 and keeps its last checkpoint, as a killed run would."""
    import torch

    real = getattr(module, name)
    seen = []

    def wrapped(*a, **k):
        seen.append(1)
        out = real(*a, **k)
        if len(seen) <= calls:
            return out
        if isinstance(out, dict):  # detection: a dict of losses
            return {k2: torch.full((), float("nan"), requires_grad=True) for k2 in out}
        return torch.full((), float("nan"), requires_grad=True)

    monkeypatch.setattr(module, name, wrapped)
    return real


def _same_state(a: Path, b: Path, keys=("model", "optimizer")) -> None:
    import torch

    sa, sb = torch.load(a, weights_only=False), torch.load(b, weights_only=False)
    for key in keys:
        flat_a = torch.utils._pytree.tree_flatten(sa[key])[0]
        flat_b = torch.utils._pytree.tree_flatten(sb[key])[0]
        assert len(flat_a) == len(flat_b)
        for x, y in zip(flat_a, flat_b):
            if isinstance(x, torch.Tensor):
                assert torch.equal(x, y), key
            else:
                assert x == y, key


def test_segment_resume_mid_epoch_continues_exactly(seg_folder, tmp_path, monkeypatch):
    """Interrupted after the checkpoint at iteration 3 (mid-epoch: 2 iterations per epoch) and
    resumed, the run ends with the very weights and optimiser state of an uninterrupted one:
    same remaining samples, same augmentation of each (random scale, crop, flip, photometric; in
    a worker process), same drop-path draws."""
    import vitkit.dense.train_seg as ts

    argv = [*SEG_TINY, "model_kwargs={\"drop_path_rate\": 0.3}", "eval_interval=3", "workers=1"]
    argv[argv.index("--iters") + 1] = "5"
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["segment", "train", "--data", str(seg_folder), "--out", str(whole), *argv]) == 0
    real = _interrupt_after(monkeypatch, ts, "seg_loss", 3)
    assert main(["segment", "train", "--data", str(seg_folder), "--out", str(cut), *argv]) == 1
    monkeypatch.setattr(ts, "seg_loss", real)
    assert main(["segment", "train", "--data", str(seg_folder), "--out", str(cut), *argv, "--resume"]) == 0
    _same_state(whole / "checkpoint-last.pt", cut / "checkpoint-last.pt")
    rows = lambda run: [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["iter"] for r in rows(cut)] == [3, 5]
    assert rows(cut)[-1]["train_loss"] == rows(whole)[-1]["train_loss"]


def test_detect_resume_continues_exactly(shared_data, tmp_path, monkeypatch):
    """Detection checkpoints at evaluation epochs: stopped after epoch 1 and resumed, epoch 2 is
    the uninterrupted run's (sampled proposals, flips, data order), weights equal bit for bit."""
    data = shared_data / "coco8" / "coco8-seg"
    argv = ["--data", str(data), "--epochs", "2", "--batch-size", "2", "model=swin_micro_patch2_window4_32",
            "model_kwargs={\"drop_path_rate\": 0.2}", "min_size=64", "max_size=96", "fpn_channels=16",
            "box_head_dim=32", "mask_head_dim=8", "eval_on_train=false", "detections_per_img=20", "kind=faster_rcnn", "eval_interval=1", "workers=1"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["detect", "train", "--out", str(whole), *argv]) == 0
    n_train = len(list((data / "images" / "train").iterdir()))
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    real_forward = GeneralizedRCNN.forward
    calls = []

    def forward(self, images, targets=None):
        out = real_forward(self, images, targets)
        if self.training:
            calls.append(1)
            if len(calls) > n_train // 2:  # every batch of epoch 2
                import torch
                return {k: torch.full((), float("nan"), requires_grad=True) for k in out}
        return out

    monkeypatch.setattr(GeneralizedRCNN, "forward", forward)
    assert main(["detect", "train", "--out", str(cut), *argv]) == 1
    monkeypatch.setattr(GeneralizedRCNN, "forward", real_forward)
    assert json.loads((cut / "metrics.jsonl").read_text())["epoch"] == 1  # the checkpoint it resumes from
    assert main(["detect", "train", "--out", str(cut), *argv, "--resume"]) == 0
    _same_state(whole / "checkpoint-last.pt", cut / "checkpoint-last.pt")
