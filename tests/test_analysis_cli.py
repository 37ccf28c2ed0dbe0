"""``vitkit fewshot`` and ``vitkit analyze`` end to end on a tiny image folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vitkit.cli import main


@pytest.fixture
def image_folder(tmp_path):
    """Two classes of 28×28 grayscale images: dark and bright noise (separable)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "digits"
    for c, level in (("dark", 40), ("bright", 200)):
        (root / c).mkdir(parents=True)
        for i in range(6):
            img = np.clip(rng.normal(level, 30, (28, 28)), 0, 255).astype(np.uint8)
            Image.fromarray(img, "L").save(root / c / f"{i}.png")
    return root


def test_fewshot_command_writes_results(image_folder, tmp_path, capsys):
    out = tmp_path / "fewshot.json"
    rc = main(["fewshot", "--model", "vit_micro_patch4_28", "--data", str(image_folder), "--shots", "1", "3",
               "--seeds", "2", "--val-fraction", "0.34", "--json", str(out), "--device", "cpu"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["num_train"] + res["num_test"] == 12 and res["num_test"] == 4
    ridge, logreg = res["results"]
    assert ridge["method"] == "ridge" and ridge["l2"] == 1024
    assert set(ridge["shots"]) == {"1", "3"} and len(ridge["shots"]["3"]["per_seed"]) == 2
    assert logreg["method"] == "logreg" and 0 <= res["linear_probe"] <= 1
    assert "shots | ridge" in capsys.readouterr().out


@pytest.mark.parametrize("model", ["vit_micro_patch4_28", "swin_micro_patch2_window4_32"])
def test_analyze_command_writes_pngs(model, image_folder, tmp_path):
    out = tmp_path / "figs"
    rc = main(["analyze", "--model", model, "--images", str(image_folder / "dark"), "--out", str(out),
               "--num-overlays", "2", "--distance-images", "3", "--components", "8", "--device", "cpu"])
    assert rc == 0
    expected = {"attention_rollout.png", "attention_distance.png", "embedding_filters.png"}
    if model.startswith("vit"):
        expected.add("position_embedding_similarity.png")
    pngs = {p.name for p in out.glob("*.png")}
    assert pngs == expected
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["images"] == 3 and len(summary["mean_attention_distance_px"]) in (6, 8)
    if model.startswith("vit"):  # 7×7 patches of 4 px: mean pairwise distance, by loops
        pts = [(4 * r, 4 * c) for r in range(7) for c in range(7)]
        pairwise = sum(((a - c) ** 2 + (b - d) ** 2) ** 0.5 for a, b in pts for c, d in pts) / len(pts) ** 2
        assert summary["uniform_attention_distance_px"] == pytest.approx(pairwise, rel=1e-5)


def test_missing_weights_file_is_a_clear_error(image_folder, capsys):
    rc = main(["fewshot", "--model", "vit_micro_patch4_28", "--weights", "nope.pt", "--data", str(image_folder)])
    assert rc == 2 and "--weights 'nope.pt' does not exist" in capsys.readouterr().err


def test_training_checkpoint_alone_rebuilds_the_model(image_folder, tmp_path):
    import torch

    import vitkit

    model = vitkit.create_model("vit_micro_patch4_28")
    ckpt = tmp_path / "checkpoint-best.pt"
    torch.save({"model": model.state_dict(), "model_name": "vit_micro_patch4_28", "model_kwargs": {},
                "preprocess": {"mean": [0.5], "std": [0.5]}}, ckpt)
    common = ["--data", str(image_folder), "--shots", "2", "--seeds", "2", "--val-fraction", "0.34",
              "--no-logreg", "--no-probe", "--device", "cpu"]
    assert main(["fewshot", "--weights", str(ckpt), "--json", str(tmp_path / "a.json"), *common]) == 0
    assert main(["fewshot", "--model", "vit_micro_patch4_28", "--weights", str(ckpt),
                 "--json", str(tmp_path / "b.json"), *common]) == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["model"] == "vit_micro_patch4_28" and a["results"] == b["results"]
    from argparse import Namespace

    from vitkit.cli.analysis import _build_model

    rebuilt = _build_model(Namespace(model=None, weights=str(ckpt), img_size=None, num_classes=None, device="cpu"))
    for k, v in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v), k
