"""Optional packages: a missing one gives one line naming the pip extra that installs it, and
``vitkit detect train`` says so before training, not after."""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from vitkit.cli import main
from vitkit.extras import EXTRAS, MissingDependency, check, require

ROOT = Path(__file__).resolve().parents[1]


def _block(monkeypatch, *names: str) -> None:
    """Simulate uninstalled packages: ``import name`` raises ImportError while the test runs."""
    for n in list(sys.modules):
        if n.split(".")[0] in names:
            monkeypatch.delitem(sys.modules, n)
    for n in names:
        monkeypatch.setitem(sys.modules, n, None)


def test_extras_table_matches_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, (dist, extra) in EXTRAS.items():
        assert extra in extras, f"pyproject has no extra {extra!r} (for {module})"
        assert any(req.lower().startswith(dist.lower()) for req in extras[extra]), (module, extra, extras[extra])


@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_require_names_the_extra(monkeypatch, module):
    _block(monkeypatch, module)
    extra = EXTRAS[module][1]
    with pytest.raises(MissingDependency, match=rf"pip install 'vitkit\[{extra}\]'"):
        require(module, "this feature")
    with pytest.raises(MissingDependency, match=rf"vitkit\[{extra}\]"):
        check(module, "this feature")


def test_require_keeps_the_error_of_an_installed_package_that_breaks(monkeypatch, tmp_path):
    # installed, but its own import fails on something else: that error, not "install fakepkg"
    (tmp_path / "fakepkg_i17").mkdir()
    (tmp_path / "fakepkg_i17" / "__init__.py").write_text("import nonexistent_dependency_i17\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="nonexistent_dependency_i17") as info:
        require("fakepkg_i17", "x")
    assert not isinstance(info.value, MissingDependency)
    with pytest.raises(MissingDependency, match="pip install not_installed_i17"):
        require("not_installed_i17", "x")


def test_coco_eval_and_coco_data_name_the_dense_extra(monkeypatch, tmp_path):
    import numpy as np

    from vitkit.dense import coco_eval, det_data

    _block(monkeypatch, "pycocotools")
    with pytest.raises(MissingDependency, match=r"pip install 'vitkit\[dense\]'"):
        coco_eval._rle(np.zeros((1, 4, 4), dtype=bool))
    with pytest.raises(MissingDependency, match=r"pip install 'vitkit\[dense\]'"):
        det_data.CocoDetection(tmp_path, tmp_path / "instances.json")


def test_detect_train_stops_before_training_without_pycocotools(monkeypatch, tmp_path, capsys):
    import vitkit.dense.train_det as train_det

    called = []
    monkeypatch.setattr(train_det, "train", lambda *a, **k: called.append(a))
    _block(monkeypatch, "pycocotools")
    rc = main(["detect", "train", "--recipe", "mask_rcnn_coco8_smoke", "--data", str(tmp_path),
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and not called and not (tmp_path / "run").exists()
    assert "pycocotools" in err and "pip install 'vitkit[dense]'" in err and len(err.strip().splitlines()) == 1
    rc = main(["detect", "eval", "--checkpoint", str(tmp_path / "x.pt")])
    assert rc == 2 and "vitkit[dense]" in capsys.readouterr().err


def test_library_detect_train_checks_first(monkeypatch, tmp_path):
    import dataclasses

    from vitkit.dense import train_det
    from vitkit.dense.recipes import DET_RECIPES, get_recipe

    _block(monkeypatch, "pycocotools")
    r = dataclasses.replace(get_recipe("mask_rcnn_coco8_smoke", DET_RECIPES), data=str(tmp_path),
                            out=str(tmp_path / "run"))
    with pytest.raises(MissingDependency, match="vitkit\\[dense\\]"):
        train_det.train(r)
    assert not (tmp_path / "run").exists()
