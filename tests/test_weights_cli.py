"""``vitkit convert`` and ``vitkit predict`` end to end (in-process, no network)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from vitkit.cli import main
from vitkit.weights import read_checkpoint, save_official_vit_npz, save_vitkit
from vitkit.weights.io import decode_metadata
from vitkit.weights.preprocess import eval_transform
from _weights_util import randomize_


@torch.no_grad()
def test_convert_official_npz_infers_the_model_and_writes_metadata(tmp_path, capsys):
    src = randomize_(vitkit.create_model("vit_tiny_patch16_224", act="gelu_tanh"))
    npz = save_official_vit_npz(src, tmp_path / "Ti_16.npz")
    out = tmp_path / "ti.safetensors"
    assert main(["convert", str(npz), str(out)]) == 0
    assert "as vit_tiny_patch16_224: format=official_vit_npz" in capsys.readouterr().out
    state, meta = read_checkpoint(out)
    meta = decode_metadata(meta)
    assert meta["format"] == "vitkit" and meta["model"] == "vit_tiny_patch16_224"
    assert meta["model_kwargs"] == vitkit.create_model("vit_tiny_patch16_224", act="gelu_tanh").init_kwargs
    assert meta["source_format"] == "official_vit_npz" and len(meta["labels"]) == 1000
    assert meta["pretrained_cfg"]["mean"] == [0.5, 0.5, 0.5]
    model = vitkit.create_model("vit_tiny_patch16_224", act="gelu_tanh").eval()
    assert vitkit.load_weights(model, out).format == "vitkit"
    x = torch.randn(1, 3, 224, 224)
    assert torch.allclose(model(x), src(x), atol=1e-5)


def test_convert_refuses_a_model_that_does_not_fit(tmp_path, capsys):
    src = vitkit.create_model("swin_micro_patch2_window4_32")
    path = tmp_path / "swin.pth"
    torch.save(src.state_dict(), path)
    code = main(["convert", str(path), str(tmp_path / "o.safetensors"), "--model", "vit_micro_patch4_32"])
    assert code == 2
    assert "error:" in capsys.readouterr().err
    assert main(["convert", str(path), str(tmp_path / "o.safetensors")]) == 0  # inferred: swin_micro_…


def _image(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


@torch.no_grad()
def test_predict_uses_the_files_preprocessing_and_labels(tmp_path, capsys):
    src = randomize_(vitkit.create_model("vit_micro_patch4_32"))
    labels = [f"thing{i}" for i in range(10)]
    cfg = dict(mean=[0.2, 0.3, 0.4], std=[0.5, 0.6, 0.7], input_size=[3, 32, 32], crop_pct=0.8, interpolation="bilinear")
    weights = save_vitkit(src.state_dict(), tmp_path / "m.safetensors",
                          {"model": "vit_micro_patch4_32", "model_kwargs": {"num_classes": 10},
                           "pretrained_cfg": cfg, "labels": labels})
    imgs = [str(_image(tmp_path / f"{i}.png", i)) for i in range(2)]
    assert main(["predict", *imgs, "--model", "vit_micro_patch4_32", "--weights", str(weights), "--topk", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == imgs[0] and len(out) == 8

    # the same numbers by hand: resize 40 (=32/0.8) on the short side, centre crop 32, normalise
    x = eval_transform(cfg)(Image.open(imgs[0]))
    assert x.shape == (3, 32, 32)
    probs = src(x[None]).softmax(-1)[0]
    top = probs.topk(3)
    for line, p, i in zip(out[1:4], top.values, top.indices):
        assert f"{labels[i]} ({i}): {p:.4f}" in line


def test_predict_errors_are_one_line(tmp_path, capsys):
    img = str(_image(tmp_path / "a.png", 0))
    assert main(["predict", img, "--model", "vit_micro_patch4_32", "--weights", str(tmp_path / "none.pth")]) == 2
    assert "weights file" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "b.png"), "--model", "vit_micro_patch4_32"]) == 2
    assert "image" in capsys.readouterr().err
    assert main(["predict", img, "--model", "vit_micro_patch4_32", "--weights", "imagenet"]) == 2
    assert "no pretrained weights are registered" in capsys.readouterr().err


def test_eval_transform_validates_interpolation():
    with pytest.raises(ValueError, match="interpolation='lanczos'"):
        eval_transform({"interpolation": "lanczos"})
