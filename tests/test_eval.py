"""Classification metrics and checkpoint evaluation (several resolutions, confusion matrix PNG)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vitkit.cli import main
from vitkit.data import EmbeddedMNIST, SubsetView, collate, eval_transform, train_transform
from vitkit.evaluate import ConfusionMatrix, accuracy, evaluate, evaluate_checkpoint, model_from_checkpoint, topk_correct
from vitkit.evaluate.metrics import plot_confusion_matrix
from vitkit.train import apply_overrides, get_recipe, train


def test_topk_against_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=g)
    target = torch.randint(0, 7, (50,), generator=g)
    expect = []
    for k in (1, 3, 5, 10):
        expect.append(sum(int(t in row.argsort(descending=True)[:k].tolist()) for row, t in zip(logits, target)))
    assert topk_correct(logits, target, (1, 3, 5, 10)) == expect
    assert expect[-1] == 50  # k above the number of classes counts every row
    soft = torch.nn.functional.one_hot(target, 7).float() * 0.7 + 0.1 / 7 * 3
    assert accuracy(logits, soft, (1,)) == [expect[0] / 50]


def test_confusion_matrix_counts_and_per_class(tmp_path: Path) -> None:
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1, 1, 2, 0]), torch.tensor([0, 1, 2, 2, 1]))
    cm.update(torch.tensor([2]), torch.tensor([2]))
    assert cm.counts.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 2]]
    per = cm.per_class_accuracy().tolist()
    assert per == pytest.approx([1.0, 0.5, 2 / 3]) and cm.accuracy() == pytest.approx(4 / 6)
    empty = ConfusionMatrix(2)
    empty.update(torch.tensor([0]), torch.tensor([0]))
    assert torch.isnan(empty.per_class_accuracy()[1])
    plot_confusion_matrix(cm.counts, ["a", "b", "c"], tmp_path / "cm.png")
    with Image.open(tmp_path / "cm.png") as im:
        assert im.size[0] >= 300


def test_evaluate_matches_direct_computation() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    ds = SubsetView(EmbeddedMNIST("val"), range(100), eval_transform(28, mean=(0.5,), std=(0.5,)))
    r = evaluate(model, DataLoader(ds, batch_size=32, collate_fn=collate), device=torch.device("cpu"), num_classes=10)
    x = torch.stack([ds[i][0] for i in range(100)])
    y = torch.tensor([ds[i][1] for i in range(100)])
    with torch.no_grad():
        logits = model(x)
    assert r.num_images == 100 and r.acc1 == accuracy(logits, y, (1,))[0]
    assert r.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert r.acc5 == accuracy(logits, y, (5,))[0]
    assert sum(r.confusion.counts.diag()).item() == round(r.acc1 * 100)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    tr, va = EmbeddedMNIST("train", mode="L"), EmbeddedMNIST("val", mode="L")
    cfg = apply_overrides(get_recipe("mnist_demo"), dict(max_steps=8, batch_size=32, num_workers=0, progress=False,
                                                         warmup_epochs=0.0, lr=2e-3))
    train(cfg, out, train_set=SubsetView(tr, range(256), train_transform(28, mean=(0.5,), std=(0.5,), preset="digits")),
          val_set=SubsetView(va, range(200), eval_transform(28, mean=(0.5,), std=(0.5,))))
    return out


def test_checkpoint_rebuilds_the_model(trained_run: Path) -> None:
    model, ckpt = model_from_checkpoint(trained_run / "checkpoint-best.pt")
    assert ckpt["model_name"] == get_recipe("mnist_demo").model and ckpt["classes"] == [str(d) for d in range(10)]
    assert model.num_classes == 10
    with pytest.raises(ValueError, match="no EMA weights"):
        model_from_checkpoint(trained_run / "checkpoint-last.pt", ema=True)


def test_eval_at_several_resolutions_writes_json_and_png(trained_run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    rc = main(["eval", "--checkpoint", str(trained_run / "checkpoint-best.pt"), "--data", "mnist",
               "--img-size", "28", "35", "--num-workers", "0", "--out", str(tmp_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "28px: top-1" in printed and "35px: top-1" in printed
    doc = json.loads((tmp_path / "eval.json").read_text())
    r28, r35 = doc["results"]
    assert (r28["img_size"], r35["img_size"], r28["num_images"]) == (28, 35, 2000)
    assert 0 <= r28["acc1"] <= r28["acc5"] <= 1 and len(r28["per_class"]) == 10
    for size in (28, 35):
        assert (tmp_path / f"confusion-{size}.png").is_file()
    # the same numbers through the library, and different ones at another resolution
    again = evaluate_checkpoint(trained_run / "checkpoint-best.pt", "mnist", img_sizes=[28], num_workers=0)
    assert again[0].acc1 == r28["acc1"] and r28["loss"] != r35["loss"]
