"""Datasets, colour modes, splits, the seeded sampler and the transform presets."""
from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from vitkit.data import (
    CIFAR, EmbeddedMNIST, ImageFolder, MixupCutmix, ShardedSampler, Skipped, build_dataset, collate,
    convert_mode, eval_transform, holdout_indices, resolve_data, train_transform,
)
from vitkit.data.transforms import RandomShift, ToNormalizedFloat

MNIST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # official t10k label counts


def digit(i: int = 0) -> Image.Image:
    return Image.fromarray(EmbeddedMNIST("train", mode="L").load(i)[0].numpy())


# ----------------------------------------------------------------------------- embedded MNIST
def test_embedded_mnist_split_is_fixed_disjoint_and_complete() -> None:
    tr, va = EmbeddedMNIST("train"), EmbeddedMNIST("val")
    assert (len(tr), len(va)) == (8000, 2000)
    assert set(tr.indices).isdisjoint(va.indices) and len(set(tr.indices) | set(va.indices)) == 10000
    assert all(i % 5 == 4 for i in va.indices)
    both = Counter(tr.targets) + Counter(va.targets)
    assert [both[k] for k in range(10)] == MNIST_COUNTS
    x = tr.load(0)
    assert x.dtype == torch.uint8 and x.shape == (1, 28, 28)
    assert EmbeddedMNIST("train", mode="RGB").load(0).shape == (3, 28, 28)


# ------------------------------------------------------------------------------- colour modes
def test_convert_mode_handles_every_common_mode() -> None:
    g = digit(3)  # L
    rgb = np.asarray(convert_mode(g.convert("RGB"), "RGB"))
    assert rgb.shape == (28, 28, 3)
    assert np.array_equal(np.asarray(convert_mode(g.convert("P"), "RGB")), rgb)
    cmyk = Image.new("CMYK", (2, 2), (255, 0, 0, 0))  # pure cyan ink
    assert tuple(np.asarray(convert_mode(cmyk, "RGB"))[0, 0]) == (0, 255, 255)
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))  # fully transparent: the white background shows
    assert tuple(np.asarray(convert_mode(rgba, "RGB"))[0, 0]) == (255, 255, 255)
    half = Image.new("RGBA", (1, 1), (0, 0, 0, 128))
    assert 120 <= np.asarray(convert_mode(half, "RGB"))[0, 0, 0] <= 130
    pal = g.convert("P")
    pal.info["transparency"] = int(np.asarray(pal)[0, 0])  # the background colour becomes transparent
    assert tuple(np.asarray(convert_mode(pal, "RGB"))[0, 0]) == (255, 255, 255)
    i16 = Image.fromarray(np.asarray(g).astype(np.uint16) * 257)
    assert i16.mode.startswith("I;16")
    assert np.array_equal(np.asarray(convert_mode(i16, "L")), np.asarray(g))
    assert np.asarray(convert_mode(g.convert("RGB"), "L")).shape == (28, 28)
    with pytest.raises(ValueError, match="mode='CMYK'"):
        convert_mode(g, "CMYK")


# ------------------------------------------------------------------------------ image folders
def _make_folder(root: Path, n_per_class: int = 6, classes: tuple[str, ...] = ("cat", "dog")) -> None:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(n_per_class):
            digit(c * n_per_class + j).save(root / name / f"{j:03d}.png")


def test_image_folder_skips_unreadable_files_and_collate_counts_them(tmp_path: Path) -> None:
    _make_folder(tmp_path, 3)
    (tmp_path / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "dog" / "notes.txt").write_text("ignored: not an image extension")
    ds = ImageFolder(tmp_path, transform=eval_transform(28, mean=(0.5,) * 3, std=(0.5,) * 3))
    assert ds.classes == ["cat", "dog"] and len(ds) == 7
    items = [ds[i] for i in range(len(ds))]
    bad = [it for it in items if isinstance(it, Skipped)]
    assert len(bad) == 1 and bad[0].source.endswith("broken.jpg") and "Error" in bad[0].error
    batch = collate(items)
    assert batch["image"].shape == (6, 3, 28, 28) and len(batch["skipped"]) == 1
    assert batch["target"].tolist() == [0, 0, 0, 1, 1, 1]


def test_image_folder_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        ImageFolder(tmp_path)


def test_holdout_is_stratified_and_deterministic() -> None:
    targets = [0] * 50 + [1] * 30 + [2] * 20
    kept, held = holdout_indices(targets, 0.1)
    assert sorted(kept + held) == list(range(100)) and not set(kept) & set(held)
    assert Counter(targets[i] for i in held) == {0: 5, 1: 3, 2: 2}
    assert holdout_indices(targets, 0.1) == (kept, held)
    with pytest.raises(ValueError, match="val_fraction"):
        holdout_indices(targets, 1.5)


def test_build_dataset_split_rules(tmp_path: Path) -> None:
    _make_folder(tmp_path / "split" / "train", 4)
    _make_folder(tmp_path / "split" / "test", 2)
    assert resolve_data(tmp_path / "split").kind == "split-folder"
    tr = build_dataset(tmp_path / "split", "train")
    va = build_dataset(tmp_path / "split", "val")  # no val/: falls back to test/
    assert (len(tr), len(va)) == (8, 4) and va.classes == tr.classes
    carved_tr = build_dataset(tmp_path / "split", "train", val_fraction=0.25)
    carved_va = build_dataset(tmp_path / "split", "val", val_fraction=0.25)
    assert (len(carved_tr), len(carved_va)) == (6, 2)
    assert {carved_va.source(i) for i in range(2)}.isdisjoint(carved_tr.source(i) for i in range(6))

    _make_folder(tmp_path / "flat", 5)
    with pytest.raises(ValueError, match="val_fraction=0.1"):
        build_dataset(tmp_path / "flat", "val")
    assert len(build_dataset(tmp_path / "flat", "val", val_fraction=0.2)) == 2
    with pytest.raises(FileNotFoundError, match="neither one of"):
        build_dataset(tmp_path / "nothing", "train")
    with pytest.raises(FileNotFoundError, match="data_download=true"):
        build_dataset("cifar10", "train", data_root=tmp_path)


def test_archive_is_unpacked_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    _make_folder(tmp_path / "src" / "pets" / "train", 2)
    _make_folder(tmp_path / "src" / "pets" / "val", 1)
    with tarfile.open(tmp_path / "pets.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "src" / "pets", arcname="pets")
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path / "cache"))
    a = resolve_data(tmp_path / "pets.tar.gz")
    assert a.kind == "split-folder" and str(a.root).startswith(str(tmp_path / "cache"))
    b = resolve_data(tmp_path / "pets.tar.gz")
    assert a == b and len(list((tmp_path / "cache").iterdir())) == 1
    assert len(build_dataset(tmp_path / "pets.tar.gz", "val")) == 2


def test_cifar_pickles_in_torchvision_layout(tmp_path: Path) -> None:
    """A torchvision-format folder (same keys and layout) written from real digits, read back."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    imgs = np.stack([np.asarray(digit(i).convert("RGB").resize((32, 32))) for i in range(12)])  # (12, 32, 32, 3)
    flat = imgs.transpose(0, 3, 1, 2).reshape(12, -1)  # CIFAR rows: 1024 R, 1024 G, 1024 B
    for k in range(1, 6):
        with open(folder / f"data_batch_{k}", "wb") as f:
            pickle.dump({"data": flat[:2], "labels": [k % 10, (k + 1) % 10]}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": flat[10:], "labels": [3, 4]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, f)
    tr = CIFAR(tmp_path, "train")
    assert len(tr) == 10 and tr.targets[:2] == [1, 2] and tr.classes[3] == "c3"
    assert torch.equal(tr.load(1), torch.from_numpy(imgs[1]).permute(2, 0, 1))
    te = build_dataset(folder, "test", mode="L")
    assert len(te) == 2 and te.load(0).shape == (1, 32, 32)


@pytest.mark.slow
@pytest.mark.data
def test_shared_cifar10_archive(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITKIT_CACHE", str(Path.home() / ".cache" / "vitkit" / "extracted"))
    tr = build_dataset(shared_data / "cifar10" / "cifar10-jpg.tar.gz", "train")
    te = build_dataset(shared_data / "cifar10" / "cifar10-jpg.tar.gz", "test")
    assert (len(tr), len(te)) == (50000, 10000)
    assert tr.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert Counter(te.targets) == {k: 1000 for k in range(10)}
    assert tr.load(0).size == (32, 32)


# ------------------------------------------------------------------------------------ sampler
def test_sampler_shards_cover_the_epoch_and_resume_mid_epoch() -> None:
    n, W = 103, 4
    shards = [list(ShardedSampler(n, num_replicas=W, rank=r, seed=1, seeded=False)) for r in range(W)]
    flat = [i for s in shards for i in s]
    assert all(len(s) == n // W for s in shards) and len(set(flat)) == len(flat) == (n // W) * W
    one = ShardedSampler(n, seed=1, seeded=False)
    assert [i for step in zip(*shards) for i in step] == list(one)[: (n // W) * W]  # same global order
    s = ShardedSampler(n, seed=1)
    s.set_epoch(3)
    full = list(s)
    s.set_epoch(3, start=40)
    assert list(s) == full[40:] and len(s) == len(full) - 40
    s.set_epoch(4)
    assert [i for i, _ in s] != [i for i, _ in full]
    seeds = {i: sd for i, sd in full}
    two = ShardedSampler(n, num_replicas=2, rank=1, seed=1)
    two.set_epoch(3)
    assert all(seeds[i] == sd for i, sd in two)  # a sample's seed does not depend on the sharding


def test_seeded_items_are_reproducible() -> None:
    ds = EmbeddedMNIST("train", transform=train_transform(28, mean=(0.5,), std=(0.5,), preset="digits"))
    torch.manual_seed(123)
    a = ds[(5, 42)][0]
    torch.manual_seed(999)
    state = torch.get_rng_state()
    b = ds[(5, 42)][0]
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert any(not torch.equal(a, ds[(5, s)][0]) for s in range(1, 10))


# --------------------------------------------------------------------------------- transforms
def test_fast_ops_equal_their_torchvision_counterparts() -> None:
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    ref = v2.Normalize([0.4, 0.5, 0.6], [0.2, 0.3, 0.25])(v2.ToDtype(torch.float32, scale=True)(x))
    torch.testing.assert_close(ToNormalizedFloat([0.4, 0.5, 0.6], [0.2, 0.3, 0.25])(x), ref)
    for seed in range(20):
        torch.manual_seed(seed)
        out = RandomShift(3)(x)
        torch.manual_seed(seed)
        dy, dx = torch.randint(0, 7, (2,)).tolist()
        assert torch.equal(out, torch.nn.functional.pad(x, (3, 3, 3, 3))[:, dy:dy + 32, dx:dx + 32])


@pytest.mark.parametrize("preset", ["imagenet", "cifar", "digits", "resize"])
def test_train_presets_output_normalised_images(preset: str) -> None:
    img = digit(7).convert("RGB").resize((40, 36))
    tf = train_transform(32, mean=(0.5,) * 3, std=(0.5,) * 3, preset=preset, randaugment=9)
    out = tf(img)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and -1 <= out.min() < out.max() <= 1
    erased = train_transform(32, mean=(0.5,) * 3, std=(0.5,) * 3, preset=preset, random_erasing=1.0)(img)
    assert erased.min() < -1 or erased.max() > 1  # Gaussian noise in the erased box
    with pytest.raises(ValueError, match="preset 'autoaug' is unknown"):
        train_transform(32, mean=(0.5,), std=(0.5,), preset="autoaug")


def test_eval_transform_resizes_then_crops() -> None:
    img = Image.new("L", (80, 60), 0)
    img.paste(255, (30, 20, 50, 40))  # a white square in the middle
    out = eval_transform(32, mean=(0.0,), std=(1.0,), crop_pct=0.8, interpolation="bilinear")(img)
    assert out.shape == (1, 32, 32) and out[0, 16, 16] == 1.0 and out[0, 0, 0] == 0.0
    with pytest.raises(ValueError, match="crop_pct"):
        eval_transform(32, mean=(0.5,), std=(0.5,), crop_pct=1.5)


def test_mixup_cutmix_soft_targets() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 3, 16, 16)
    y = torch.arange(8) % 4
    mix = MixupCutmix(4, mixup_alpha=0.8, cutmix_alpha=1.0)
    xm, ym = mix(x, y)
    assert xm.shape == x.shape and ym.shape == (8, 4)
    torch.testing.assert_close(ym.sum(1), torch.ones(8))
    assert (ym.max(1).values < 1).any()  # labels were mixed
    with pytest.raises(ValueError, match="mixup_alpha"):
        MixupCutmix(4)
