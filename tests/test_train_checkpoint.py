"""What a training checkpoint records of its model, and where the Trainer takes preprocessing from.

- every registered architecture, built with non-default options (tanh GELU, LayerScale, average
  pooling, JAX stem numerics, a non-default window…), saved through the Trainer's checkpoint code and
  rebuilt by ``model_from_checkpoint`` gives identical logits;
- the Trainer's evaluation transform is the model's own preprocessing record (the weights'), not the
  registry row's; TrainConfig fields still override it.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

import vitkit
from vitkit import create_model
from vitkit.data import eval_transform
from vitkit.evaluate.classification import model_from_checkpoint
from vitkit.models.base import PretrainedCfg
from vitkit.registry import get_entry
from vitkit.train import Trainer, apply_overrides, get_recipe
from vitkit.train.checkpoint import load_checkpoint, save_atomic
from vitkit.train.loop import model_record


class RandomImages(Dataset):
    """``n`` random float images of ``shape`` in 3 classes (already transformed: the Trainer leaves
    user-supplied datasets as they are)."""

    def __init__(self, n: int, shape: tuple[int, ...], seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, *shape, generator=g)
        self.targets = [i % 3 for i in range(n)]
        self.classes = ["a", "b", "c"]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, item):
        i = item[0] if isinstance(item, tuple) else item
        return self.x[i], self.targets[i]


def tiny_options(name: str) -> dict:
    """A small variant of registry row ``name`` with options that differ from the row's defaults."""
    row = get_entry(name).kwargs
    if name.startswith("swin"):
        return dict(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2, img_size=32,
                    mlp_ratio=2.0, num_classes=3)
    kw = dict(depth=1, embed_dim=16, num_heads=2, mlp_dim=24, act="gelu_tanh", init_values=1e-5,
              global_pool="token" if row.get("global_pool") == "avg" else "avg", num_classes=3, norm_eps=1e-5)
    if "stem_depths" in row:
        kw.update(stem_depths=(1, 1, 1), stem_numerics="jax", img_size=32)
    else:
        kw.update(img_size=2 * row["patch_size"])
    return kw


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def _input(model) -> torch.Tensor:
    c, h, w = model.pretrained_cfg.input_size
    return torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", vitkit.list_models())
def test_every_registered_model_rebuilds_from_its_checkpoint_record(tmp_path: Path, name: str) -> None:
    """The record the Trainer writes (``model_record``) holds every constructor argument."""
    model = create_model(name, **tiny_options(name))
    save_atomic({**model_record(model), "model": model.state_dict()}, tmp_path / "ck.pt")
    rebuilt, ck = model_from_checkpoint(tmp_path / "ck.pt")
    assert ck["model_kwargs_complete"] is True
    assert rebuilt.init_kwargs == model.init_kwargs
    x = _input(model)
    assert torch.equal(_logits(rebuilt, x), _logits(model, x))


# one Trainer run per distinct architecture: plain ViT, 1-channel ViT, hybrid ResNet stem, Swin
ARCHITECTURES = ["vit_tiny_patch16_224", "vit_micro_patch4_28", "vit_base_r50_s16_384", "swin_tiny_patch4_window7_224"]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_trainer_checkpoints_rebuild_with_identical_logits(tmp_path: Path, name: str) -> None:
    """``Trainer(model=...)`` (a fine-tuning run from a model with non-default options) writes last
    and best checkpoints that ``model_from_checkpoint`` rebuilds exactly, preprocessing included."""
    opts = tiny_options(name)
    if name == "vit_micro_patch4_28":
        opts["img_size"] = 8
    model = create_model(name, **opts)
    chans = model.init_kwargs.get("in_chans", 3)
    shape = (chans, *model.pretrained_cfg.input_size[1:])
    cfg = apply_overrides(get_recipe("mnist_demo"), dict(
        model=name, max_steps=1, batch_size=4, num_workers=0, progress=False, warmup_steps=0, ema_decay=0.0,
        crop_pct=0.8, lr=1e-3))
    Trainer(cfg, tmp_path, model=model, train_set=RandomImages(8, shape), val_set=RandomImages(4, shape, 1)).fit()
    x = _input(model)
    want = _logits(model, x)
    for ck_name in ("checkpoint-last.pt", "checkpoint-best.pt"):
        rebuilt, ck = model_from_checkpoint(tmp_path / ck_name)
        assert ck["model_kwargs_complete"] is True and ck["model_name"] == name
        assert torch.equal(_logits(rebuilt, x), want), ck_name
        pc = rebuilt.pretrained_cfg
        assert pc.crop_pct == 0.8 and pc.labels == ["a", "b", "c"]  # as trained, with the run's override
        assert tuple(pc.input_size) == tuple(model.pretrained_cfg.input_size)


def test_old_checkpoint_without_complete_record_warns(tmp_path: Path, caplog) -> None:
    model = create_model("vit_micro_patch4_32", num_classes=3)
    save_atomic({"model_name": "vit_micro_patch4_32", "model_kwargs": {"num_classes": 3},
                 "model": model.state_dict(), "classes": ["a", "b", "c"]}, tmp_path / "old.pt")
    with caplog.at_level(logging.WARNING):
        rebuilt, _ = model_from_checkpoint(tmp_path / "old.pt")
    assert "registry" in caplog.text and "activation" in caplog.text
    x = _input(model)
    assert torch.equal(_logits(rebuilt, x), _logits(model, x))
    assert rebuilt.pretrained_cfg.labels == ["a", "b", "c"]


# ---------------------------------------------------------------------- preprocessing from the weights
def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (50, 41, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


WEIGHTS_CFG = dict(mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), crop_pct=1.0, interpolation="bilinear")


def _apply(tf, path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return tf(im.convert("RGB"))


def _cfg(data: Path, **kw):
    fields = dict(model="vit_tiny_patch16_224", img_size=32, data=str(data), max_steps=1, batch_size=4, num_workers=0,
                  progress=False)
    return apply_overrides(get_recipe("mnist_demo"), {**fields, **kw})


def _weights_model() -> torch.nn.Module:
    """A small vit_tiny_patch16_224 as if built from weights whose preprocessing differs from the row's."""
    model = create_model("vit_tiny_patch16_224", num_classes=2, img_size=32, depth=1, embed_dim=16, num_heads=2,
                         mlp_dim=24)
    pc = model.pretrained_cfg.copy()
    pc.update(WEIGHTS_CFG)
    model.pretrained_cfg = pc
    return model


def test_eval_transform_is_the_weights_preprocessing_for_a_given_model(tmp_path: Path) -> None:
    data = _image_folder(tmp_path / "data")
    row = get_entry("vit_tiny_patch16_224").pretrained_cfg
    assert row.get("crop_pct", 1.0) != 1.0 or row.get("interpolation", "bicubic") != "bilinear"
    t = Trainer(_cfg(data), tmp_path / "run", model=_weights_model())
    img = sorted((data / "val" / "cat").glob("*.png"))[0]
    got = _apply(t.val_loader.dataset.transform, img)
    want = _apply(eval_transform(32, mean=WEIGHTS_CFG["mean"], std=WEIGHTS_CFG["std"], interpolation="bilinear",
                                 crop_pct=1.0), img)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert t.preprocess["crop_pct"] == 1.0 and t.preprocess["mean"] == list(WEIGHTS_CFG["mean"])


def test_eval_transform_is_the_weights_preprocessing_for_a_model_built_from_cfg(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """A model built from ``cfg`` (as ``pretrained=true`` would: its record says crop 1.0) gives the
    eval transform; ``crop_pct`` / ``interpolation`` / ``img_size`` set in the config still win."""
    import vitkit.train.loop as loop

    real = loop.create_model

    def from_weights(name, **kw):
        model = real(name, **kw)
        model.pretrained_cfg.update(WEIGHTS_CFG)
        return model

    monkeypatch.setattr(loop, "create_model", from_weights)
    data = _image_folder(tmp_path / "data")
    img = sorted((data / "val" / "dog").glob("*.png"))[0]
    t = Trainer(_cfg(data, img_size=0), tmp_path / "a")
    want = eval_transform(224, mean=WEIGHTS_CFG["mean"], std=WEIGHTS_CFG["std"], interpolation="bilinear", crop_pct=1.0)
    torch.testing.assert_close(_apply(t.val_loader.dataset.transform, img), _apply(want, img), rtol=0, atol=0)
    assert t.model.pretrained_cfg.labels == ["cat", "dog"]

    t = Trainer(_cfg(data, crop_pct=0.75, interpolation="bicubic", img_size=16), tmp_path / "b")
    want = eval_transform(16, mean=WEIGHTS_CFG["mean"], std=WEIGHTS_CFG["std"], interpolation="bicubic", crop_pct=0.75)
    torch.testing.assert_close(_apply(t.val_loader.dataset.transform, img), _apply(want, img), rtol=0, atol=0)
    assert t.preprocess["input_size"] == [3, 16, 16] and t.preprocess["crop_pct"] == 0.75
