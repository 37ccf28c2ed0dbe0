"""User files never run code: CIFAR pickles go through a restricted unpickler (issue 13, item 1).

A ``cifar-10-batches-py`` folder whose batches carry a ``__reduce__`` is fed through the same path
``vitkit train --data`` and ``vitkit eval --data`` take (an archive unpacked into the cache, then
:class:`vitkit.data.CIFAR`); the payload must not run and the error must name the file. Batches in
the official format (Python 2 pickles of dicts with numpy uint8 arrays and lists of ints, as well as
Python 3 pickles with bytes keys) still load.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from vitkit.cli import main
from vitkit.data import CIFAR, build_dataset
from vitkit.data import cifar as cifar_mod


class _ShellPayload:
    """Unpickling this runs ``touch MARKER`` through the shell (what the issue reproduced)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _OpenPayload:
    """Unpickling this creates MARKER with the builtin ``open`` (no shell involved)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)


def _write_cifar10(folder: Path, batch: dict, *, protocol: int = 4, bytes_keys: bool = False) -> None:
    """A cifar-10-batches-py folder: five train batches, a test batch and batches.meta."""
    folder.mkdir(parents=True)

    def key(k: str):
        return k.encode() if bytes_keys else k

    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({key(k): v for k, v in batch.items()}, f, protocol=protocol)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({key("label_names"): [f"c{k}" for k in range(10)], key("num_vis"): 3072}, f, protocol=protocol)


def _tar(folder: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return dest


def _eval_checkpoint(path: Path) -> Path:
    """A minimal vitkit classification checkpoint (10 classes c0..c9, RGB 32 px) for ``vitkit eval``."""
    from vitkit import create_model
    from vitkit.train.loop import model_record

    model = create_model("vit_micro_patch4_32", num_classes=10)
    torch.save({**model_record(model), "model": model.state_dict(), "classes": [f"c{k}" for k in range(10)],
                "preprocess": model.pretrained_cfg.to_dict(), "config": {}}, path)
    return path


@pytest.mark.parametrize("payload", [_ShellPayload, _OpenPayload], ids=["os.system", "builtins.open"])
def test_malicious_cifar_archive_does_not_run_through_train_or_eval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, payload: type) -> None:
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "PWNED"
    evil = {"data": _images(2), "labels": [1, 2], "batch_label": payload(marker)}
    _write_cifar10(tmp_path / "src" / "cifar-10-batches-py", evil)
    archive = _tar(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "evil.tar.gz")

    rc = main(["train", "--data", str(archive), "--out", str(tmp_path / "run"), "num_workers=0", "progress=false"])
    err = capsys.readouterr().err
    assert not marker.exists(), "the pickled payload ran during vitkit train --data"
    assert rc == 2 and "data_batch_1" in err and "refused" in err, err

    ckpt = _eval_checkpoint(tmp_path / "ckpt.pt")
    rc = main(["eval", "--checkpoint", str(ckpt), "--data", str(archive), "--split", "test", "--num-workers", "0"])
    err = capsys.readouterr().err
    assert not marker.exists(), "the pickled payload ran during vitkit eval --data"
    assert rc == 2 and "test_batch" in err and "refused" in err, err


def test_malicious_pickle_in_a_plain_folder_is_refused_naming_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    _write_cifar10(tmp_path / "cifar-10-batches-py", {"data": _ShellPayload(marker), "labels": [0]})
    with pytest.raises(ValueError, match=r"data_batch_1.*posix\.system|data_batch_1.*os\.system") as e:
        CIFAR(tmp_path, "train")
    assert not marker.exists()
    assert "only plain data" in str(e.value)  # says what is allowed, i.e. what a valid batch is


# ------------------------------------------------------------------- legitimate batches still load
class _Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle (protocol 2) wrote for the official CIFAR files: str and
    bytes as ``BINSTRING`` (Python 2 ``str``), numpy's reconstruction under ``numpy.core``."""

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + n.to_bytes(4, "little") + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin1"))

    def save_global(self, obj, name=None) -> None:
        module = getattr(obj, "__module__", "")
        name = name or obj.__qualname__
        module = module.replace("numpy._core", "numpy.core")  # numpy 1.x, as the files were written
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def _py2_dump(obj: object, path: Path) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("style", ["py2", "proto2-bytes-keys", "proto5-bytes-keys", "proto4-str-keys"])
def test_cifar_format_batches_load_through_the_restricted_unpickler(tmp_path: Path, style: str) -> None:
    imgs = _images(4, seed=1)
    batch = {"batch_label": "training batch 1 of 5", "labels": [3, 1, 4, 1], "data": imgs,
             "filenames": [f"img_{k}.png" for k in range(4)]}
    folder = tmp_path / "cifar-10-batches-py"
    if style == "py2":
        folder.mkdir()
        for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
            _py2_dump(batch, folder / name)
        _py2_dump({"label_names": [f"c{k}" for k in range(10)], "num_cases_per_batch": 10000}, folder / "batches.meta")
        assert b"numpy.core.multiarray\n_reconstruct" in (folder / "test_batch").read_bytes()
    else:
        proto = int(style[5])
        _write_cifar10(folder, batch, protocol=proto, bytes_keys="bytes" in style)
    tr = CIFAR(tmp_path, "train")
    assert len(tr) == 20 and tr.targets[:4] == [3, 1, 4, 1] and tr.classes == [f"c{k}" for k in range(10)]
    assert torch.equal(tr.load(2), torch.from_numpy(imgs[2].reshape(3, 32, 32)))
    te = build_dataset(folder, "test")
    assert len(te) == 4 and te.targets == [3, 1, 4, 1]


def test_cifar100_layout_loads_through_the_restricted_unpickler(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    imgs = _images(3, seed=2)
    for name in ("train", "test"):
        with open(folder / name, "wb") as f:
            pickle.dump({b"fine_labels": [7, 0, 99], b"coarse_labels": [1, 2, 3], b"data": imgs}, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{k}" for k in range(100)], b"coarse_label_names": ["a"]}, f, protocol=2)
    ds = CIFAR(tmp_path, "test")
    assert ds.targets == [7, 0, 99] and len(ds.classes) == 100 and ds.classes[99] == "f99"


def test_known_official_md5_may_use_the_full_unpickler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose MD5 is one of the official files' is read even when it holds a global the
    restricted unpickler does not admit (here an OrderedDict); any other file with it is refused."""
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder, {"data": _images(2), "labels": [5, 6]})
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(OrderedDict(label_names=[f"c{k}" for k in range(10)]), f, protocol=2)
    with pytest.raises(ValueError, match="collections.OrderedDict"):
        CIFAR(tmp_path, "train")
    md5 = hashlib.md5((folder / "batches.meta").read_bytes()).hexdigest()
    monkeypatch.setitem(cifar_mod.OFFICIAL_MD5, md5, "batches.meta")
    assert CIFAR(tmp_path, "train").classes[5] == "c5"


def test_official_md5_table_is_torchvisions() -> None:
    """The table of official MD5s is the one torchvision checks downloads against."""
    from torchvision.datasets import CIFAR10, CIFAR100

    theirs = {md5: name for cls in (CIFAR10, CIFAR100) for name, md5 in cls.train_list + cls.test_list}
    theirs.update({cls.meta["md5"]: cls.meta["filename"] for cls in (CIFAR10, CIFAR100)})
    assert cifar_mod.OFFICIAL_MD5 == theirs


def test_images_are_decoded_only_by_image_decoders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PIL picks the decoder from the content: an EPS file named .png would go to Ghostscript (an outside
    program with a history of code-execution bugs). Data sets only use the image formats they list."""
    from PIL import EpsImagePlugin

    from vitkit.data import ImageFolder, Skipped

    marker = tmp_path / "GHOSTSCRIPT_RAN"

    def fake_ghostscript(*args, **kwargs):
        marker.touch()
        raise OSError("fake Ghostscript")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", fake_ghostscript)
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "a" / "x.png").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    item = ImageFolder(tmp_path / "data")[0]
    assert isinstance(item, Skipped) and "cannot identify" in item.error
    assert not marker.exists()
