"""save_pretrained / push_to_hub: a vitkit model as a timm-format repo that timm builds with the same
logits and vitkit reads back; offline (a hand-laid HF cache, tests/_hub_util.py; the Hub API mocked)."""
from __future__ import annotations

import json

import pytest
import torch

import vitkit
from _hub_util import hf_cache, lay_out_repo  # noqa: F401  (fixture)
from _weights_util import assert_parity, randomize_

timm = pytest.importorskip("timm")

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

CASES = {
    "vit": ("vit_micro_patch4_32", {}),
    "vit_gap_tanh": ("vit_micro_patch4_32", dict(global_pool="avg", act="gelu_tanh", depth=2)),
    "vit_base_row": ("vit_base_patch16_224", dict(embed_dim=32, depth=1, num_heads=2, mlp_dim=64, img_size=32,
                                                  num_classes=10)),
    "swin": ("swin_micro_patch2_window4_32", dict(depths=(1, 1, 1, 1))),
    "hybrid": ("vit_base_r50_s16_224", dict(depth=1, img_size=32, num_classes=10)),
}


def _model(case):
    name, kw = CASES[case]
    model = randomize_(vitkit.create_model(name, **kw), seed=3)
    model.pretrained_cfg.labels = list(LABELS)
    return model


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@torch.no_grad()
@pytest.mark.parametrize("case", sorted(CASES))
def test_save_pretrained_timm_builds_it_with_equal_logits(hf_cache, tmp_path, case):
    model = _model(case)
    folder = vitkit.save_pretrained(model, tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    lay_out_repo(hf_cache, "me/exported", _files(folder))
    ref = timm.create_model("hf-hub:me/exported", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    assert_parity(ref(x), model(x))
    assert ref.pretrained_cfg["label_names"] == LABELS and ref.num_classes == 10
    assert tuple(ref.pretrained_cfg["mean"]) == tuple(model.pretrained_cfg.mean)
    local = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()  # timm's local spelling
    assert_parity(local(x), model(x))
    back = vitkit.create_model("hf-hub:me/exported", pretrained=True).eval()  # and vitkit reads it back
    assert back.model_name == model.model_name and back.init_kwargs == model.init_kwargs
    assert torch.allclose(back(x), model(x), atol=1e-6) and back.pretrained_cfg.labels == LABELS
    again = vitkit.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert torch.allclose(again(x), model(x), atol=1e-6)


def test_what_timm_cannot_build_is_refused_before_writing(tmp_path):
    pre = vitkit.create_model("vit_micro_patch4_32", representation_size=32)
    with pytest.raises(ValueError, match="pre_logits"):
        vitkit.save_pretrained(pre, tmp_path / "a")
    assert not (tmp_path / "a" / "model.safetensors").exists()
    ape = vitkit.create_model("swin_micro_patch2_window4_32", ape=True)
    with pytest.raises(ValueError, match="absolute position embedding"):
        vitkit.save_pretrained(ape, tmp_path / "b")
    jax = vitkit.create_model("vit_base_r50_s16_224", depth=1, img_size=32, stem_numerics="jax")
    with pytest.raises(ValueError, match="stem_numerics='jax'"):
        vitkit.save_pretrained(jax, tmp_path / "c")


def _run_folder(tmp_path, model):
    """A finished run folder as vitkit train writes it (config.json, metrics.jsonl, checkpoint-best.pt)."""
    from vitkit.train.checkpoint import save_atomic

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"recipe": "", "model": model.model_name, "lr": 0.001, "epochs": 2,
                                                 "resolved": {"num_classes": 10}}))
    rows = [{"epoch": 1, "step": 10, "train_loss": 2.0, "val_acc1": 0.31},
            {"epoch": 2, "step": 20, "train_loss": 1.5, "val_acc1": 0.47}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    save_atomic({"model_name": model.model_name, "model_kwargs": dict(model.init_kwargs), "classes": LABELS,
                 "preprocess": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.2435, 0.2616],
                                "input_size": [3, 32, 32], "crop_pct": 1.0, "interpolation": "bilinear"},
                 "model": model.state_dict(), "metrics": rows[-1]}, run / "checkpoint-best.pt")
    return run


@torch.no_grad()
def test_push_to_hub_uploads_the_folder(tmp_path, monkeypatch):
    """The Hub API mocked: push_to_hub creates the repo and uploads a folder that timm reads."""
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create_repo", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, revision=None, commit_message=""):
            calls.append(("upload_folder", repo_id, revision, _files(__import__("pathlib").Path(folder_path))))

            class Info:
                commit_url = f"https://huggingface.co/{repo_id}/commit/abc"
            return Info()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VITKIT_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    model = _model("vit")
    run = _run_folder(tmp_path, model)
    url = vitkit.push_to_hub(model, "me/tiny", run_dir=run, private=True)
    assert url == "https://huggingface.co/me/tiny/commit/abc"
    assert calls[1] == ("create_repo", "me/tiny", True, True)
    _, repo, rev, files = calls[2]
    assert repo == "me/tiny" and rev is None and set(files) == {"README.md", "config.json", "model.safetensors"}
    card = files["README.md"].decode()
    assert "library_name: timm" in card and "| val_acc1 | 0.4700 |" in card and '"lr": 0.001' in card
    assert 'timm.create_model("hf-hub:me/tiny", pretrained=True)' in card
    cfg = json.loads(files["config.json"])
    assert cfg["label_names"] == LABELS and cfg["vitkit"]["model"] == "vit_micro_patch4_32"

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="offline mode is on"):
        vitkit.push_to_hub(model, "me/tiny")


@torch.no_grad()
def test_hub_export_command_writes_a_run_as_a_timm_repo(hf_cache, tmp_path):
    from vitkit.cli import main

    model = _model("vit")
    run = _run_folder(tmp_path, model)
    assert main(["hub-export", str(run), "--folder", str(tmp_path / "repo")]) == 0
    card = (tmp_path / "repo" / "README.md").read_text()
    assert "Best validation row" in card and "| val_acc1 | 0.4700 |" in card
    lay_out_repo(hf_cache, "me/run", _files(tmp_path / "repo"))
    ref = timm.create_model("hf-hub:me/run", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    assert_parity(ref(x), model.eval()(x))
    assert tuple(ref.pretrained_cfg["mean"]) == (0.4914, 0.4822, 0.4465)  # the run's preprocessing
    assert main(["hub-export", str(run)]) == 2  # neither --folder nor --repo: a clear error
    assert main(["hub-export", str(tmp_path / "nope"), "--folder", str(tmp_path / "x")]) == 2


def test_train_push_to_hub_pushes_the_best_checkpoint_at_the_end(hf_cache, tmp_path, monkeypatch):
    """``vitkit train … push_to_hub=org/name``: after the run rank 0 uploads checkpoint-best.pt as a timm
    repo (Hub API mocked); timm builds the 1-channel GAP demo model from it with the run's logits."""
    import huggingface_hub

    from test_train_loop import tiny_cfg, tiny_sets
    from vitkit.train import train

    uploads = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            pass

        def upload_folder(self, repo_id, folder_path, revision=None, commit_message=""):
            from pathlib import Path

            uploads[repo_id] = _files(Path(folder_path))
            return f"https://huggingface.co/{repo_id}"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    train_set, val_set = tiny_sets(64, 32)
    cfg = tiny_cfg(epochs=1, ema_decay=0.0, mixup=0.0, cutmix=0.0, push_to_hub="me/mnist-demo")
    res = train(cfg, tmp_path / "run", train_set=train_set, val_set=val_set)
    files = uploads["me/mnist-demo"]
    assert "| val_acc1 |" in files["README.md"].decode() and "push_to_hub" in files["README.md"].decode()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    lay_out_repo(hf_cache, "me/mnist-demo", files)
    ref = timm.create_model("hf-hub:me/mnist-demo", pretrained=True).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert_parity(ref(x), res.model.eval()(x))
    with pytest.raises(ValueError, match="push_to_hub='nope': must be a Hub repo ORG/NAME"):
        tiny_cfg(push_to_hub="nope").validate()


@torch.no_grad()
def test_a_model_built_from_its_class_exports_and_reads_back(tmp_path):
    """A model made straight from the class (model_name is the class name, not a registry row)."""
    from vitkit.models.vit import VisionTransformer

    model = randomize_(VisionTransformer(img_size=32, patch_size=8, num_classes=4, embed_dim=32, depth=1,
                                         num_heads=2, mlp_dim=48), seed=6)
    folder = vitkit.save_pretrained(model, tmp_path / "cls")
    assert json.loads((folder / "config.json").read_text())["architecture"] == "vit_base_patch16_224"
    back = vitkit.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(back(x), model(x), atol=1e-6) and back.init_kwargs["mlp_dim"] == 48
    ref = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    assert_parity(ref(x), model(x))


def test_a_failed_push_after_training_says_how_to_push_later(tmp_path, monkeypatch):
    import huggingface_hub

    from vitkit.weights.hub_export import push_run

    class DownApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, *a, **k):
            raise OSError("connection refused")

    monkeypatch.setattr(huggingface_hub, "HfApi", DownApi)
    for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VITKIT_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    run = _run_folder(tmp_path, _model("vit"))
    with pytest.raises(ValueError, match=f"push it later with: vitkit hub-export {run} --repo me/x"):
        push_run(run, "me/x")
