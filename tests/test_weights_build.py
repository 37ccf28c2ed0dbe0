"""The one build path (vitkit.build) and the steps of load_weights (vitkit.weights.load), each on
its own: read → detect → convert (once) → head policy → fit → check → load → report."""
from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
import torch

import vitkit
from vitkit import build
from vitkit.models import SwinTransformer, VisionTransformer
from vitkit.weights import load as L
from vitkit.weights import read_checkpoint, save_official_vit_npz, save_vitkit
from vitkit.weights.convert import convert_checkpoint, model_with_weights
from vitkit.weights.formats import Format
from vitkit.weights.inspect import candidate_models, describe, infer_architecture
from vitkit.weights.io import decode_metadata
from _weights_util import randomize_

SRC = Path(vitkit.__file__).parent


def micro(**kw):
    return vitkit.create_model("vit_micro_patch4_32", **kw).eval()


def x(size=32, batch=2, chans=3):
    return torch.randn(batch, chans, size, size, generator=torch.Generator().manual_seed(size))


@pytest.fixture
def conversions(monkeypatch):
    """How often any format converts a state dict (each call is a full pass over the tensors)."""
    calls = []
    original = Format.convert

    def counting(self, state):
        calls.append(self.name)
        return original(self, state)

    monkeypatch.setattr(Format, "convert", counting)
    return calls


# --------------------------------------------------------------------------- one build path
def test_a_file_is_converted_once(tmp_path, conversions):
    """Defect: build_from_file read, detected and converted the file, then load_weights did it all again."""
    src = randomize_(micro(act="gelu_tanh"))
    npz = save_official_vit_npz(src, tmp_path / "micro.npz")
    model = model_with_weights("vit_micro_patch4_32", npz)
    assert conversions == ["official_vit_npz"] and model.load_report.ok
    conversions.clear()
    convert_checkpoint(npz, tmp_path / "micro.safetensors")  # inferring the model too: still once
    assert conversions == ["official_vit_npz"]


@torch.no_grad()
def test_the_files_saved_arguments_beat_the_row(tmp_path):
    """Defect: the row's img_size=32 overrode the file's saved 64; the model was built at 32 and the
    position embeddings silently resampled."""
    src = randomize_(micro(img_size=64))
    path = save_vitkit(src.state_dict(), tmp_path / "m64.safetensors",
                       {"model": "vit_micro_patch4_32", "model_kwargs": src.init_kwargs})
    model = model_with_weights("vit_micro_patch4_32", path).eval()
    assert model.init_kwargs == src.init_kwargs and not model.load_report.resampled
    assert model.pretrained_cfg.input_size == (3, 64, 64) and model.pretrained_cfg.source == "m64.safetensors"
    assert torch.equal(model(x(64)), src(x(64)))
    # ... and the caller's explicit override beats the file
    at32 = build.build_from_file(path, img_size=32)
    assert at32.init_kwargs["img_size"] == 32 and at32.load_report.resampled[0].startswith("pos_embed")
    assert at32.pretrained_cfg.input_size == (3, 32, 32)


def test_the_files_head_beats_the_row(tmp_path):
    """Defect: vit_micro_patch4_32's row (10 classes) replaced a 100-class file's head."""
    src = randomize_(micro(num_classes=100))
    path = tmp_path / "m.pth"
    torch.save(src.state_dict(), path)
    model = model_with_weights("vit_micro_patch4_32", path)
    assert model.num_classes == 100 and not model.load_report.head_replaced
    ft = build.build_from_file(path, "vit_micro_patch4_32", num_classes=3)
    assert ft.num_classes == 3 and ft.load_report.head_replaced


def test_pre_logits_follow_the_head(tmp_path):
    """The file's pre-logits layer is built while the caller keeps its classes, dropped with another head."""
    src = randomize_(micro(representation_size=32, num_classes=50, act="gelu_tanh"))
    npz = save_official_vit_npz(src, tmp_path / "in21k-like.npz")
    same = build.build_from_file(npz, "vit_micro_patch4_32")
    assert same.init_kwargs["representation_size"] == 32 and same.num_classes == 50
    assert not same.load_report.head_replaced
    ft = build.build_from_file(npz, "vit_micro_patch4_32", num_classes=4)
    assert ft.init_kwargs["representation_size"] is None and ft.load_report.head_replaced
    assert any(d.startswith("pre_logits.fc.weight") for d in ft.load_report.dropped)


def test_precedence_row_then_weights_then_overrides():
    tag = vitkit.weights.pretrained.get_pretrained("vit_tiny_patch16_224", "augreg_in21k")
    need = build.weights_require(tag, None, {})
    assert need == {"act": "gelu_tanh", "num_classes": 21843}
    with torch.device("meta"):
        shaped = vitkit.create_model("vit_tiny_patch16_224.augreg_in21k", act="gelu", depth=1)
    assert shaped.init_kwargs["act"] == "gelu" and shaped.num_classes == 21843  # override > tag > row
    assert shaped.init_kwargs["embed_dim"] == 192  # the row


@torch.no_grad()
@pytest.mark.parametrize("name,kw", [
    ("vit_micro_patch4_32", dict(act="gelu_tanh")),
    ("vit_base_r50_s16_224", dict(act="gelu_tanh", stem_numerics="jax", depth=1, embed_dim=64, num_heads=2,
                                  mlp_dim=64, stem_depths=(1, 1, 1), img_size=32, num_classes=5)),
])
def test_converted_file_rebuilds_the_same_model(tmp_path, name, kw):
    """An official .npz → vitkit convert → rebuilt from the file alone: the complete init_kwargs
    (tanh GELU, the JAX stem numerics included) and identical logits."""
    src = randomize_(vitkit.create_model(name, **kw))
    npz = save_official_vit_npz(src, tmp_path / "official.npz")
    sizes = {k: v for k, v in kw.items() if k not in ("act", "stem_numerics")}  # the .npz implies those
    report, got = convert_checkpoint(npz, tmp_path / "m.safetensors", model=name if sizes else None, **sizes)
    assert got == name and report.ok
    meta = decode_metadata(read_checkpoint(tmp_path / "m.safetensors")[1])
    assert meta["model_kwargs"]["act"] == "gelu_tanh" and meta["model"] == name
    again = build.build_from_file(tmp_path / "m.safetensors").eval()
    assert again.model_name == name and again.init_kwargs == src.init_kwargs
    assert not again.load_report.resampled and not again.load_report.notes
    size = src.init_kwargs["img_size"]
    assert torch.equal(again(x(size, 1)), src(x(size, 1)))


@torch.no_grad()
def test_training_checkpoint_rebuilds_from_its_record(tmp_path):
    src = randomize_(micro(img_size=48, num_classes=3))
    ckpt = {"model_name": "vit_micro_patch4_32", "model_kwargs": dict(src.init_kwargs), "model": src.state_dict(),
            "classes": ["cat", "dog", "eel"], "preprocess": {"mean": [0.1, 0.2, 0.3], "crop_pct": 0.8}, "epoch": 3}
    model = build.build_from_checkpoint(ckpt).eval()
    assert model.init_kwargs == src.init_kwargs and model.load_report.ok and not model.load_report.resampled
    assert model.pretrained_cfg.labels == ["cat", "dog", "eel"] and model.pretrained_cfg.mean == (0.1, 0.2, 0.3)
    assert model.pretrained_cfg.input_size == (3, 48, 48)
    assert torch.equal(model(x(48)), src(x(48)))
    torch.save(ckpt, tmp_path / "checkpoint-best.pt")  # the same record read from the file
    from_file = build.build_from_file(tmp_path / "checkpoint-best.pt")
    assert from_file.init_kwargs == src.init_kwargs and from_file.load_report.format == "vitkit"
    with pytest.raises(ValueError, match="no EMA weights"):
        build.build_from_checkpoint(ckpt, ema=True)


def test_registry_holds_rows_only():
    """registry.py imports neither the models nor the weights (nor the build module), at any level."""
    tree = ast.parse((SRC / "registry.py").read_text())
    mods = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    mods += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert all(not m.startswith(("vitkit", "models", "weights", "build", "torch")) for m in mods), mods
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))
    assert vitkit.registry.create_model is vitkit.create_model is build.create_model  # compatibility


def test_no_circle_dodging_imports_in_the_build_path():
    """No function-local import of a vitkit module in the build module or the load pipeline."""
    for path in (SRC / "build.py", SRC / "weights" / "load.py", SRC / "weights" / "inspect.py",
                 SRC / "weights" / "convert.py"):
        tree = ast.parse(path.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            local = [n for n in ast.walk(fn) if isinstance(n, ast.ImportFrom) and n.level]
            assert not local, f"{path.name}:{fn.name} imports {[n.module for n in local]} locally"


# --------------------------------------------------------------------- the steps of load_weights
def test_read_source_turns_a_training_record_into_metadata():
    state = micro().state_dict()
    raw, meta = L.read_source({"model": state, "model_name": "vit_micro_patch4_32", "model_kwargs": {"depth": 6}})
    assert set(raw) == set(state) and meta["format"] == "vitkit" and meta["model"] == "vit_micro_patch4_32"
    assert L.read_source({"model": state, "epoch": 1})[1] == {}  # any other wrapper: no metadata


def test_detect_and_convert(tmp_path):
    src = vitkit.create_model("vit_base_r50_s16_224", depth=1, stem_depths=(1, 1, 1), img_size=32)
    raw, meta = read_checkpoint(save_official_vit_npz(src, tmp_path / "h.npz"))
    f = L.detect(raw, meta)
    assert f.name == "official_vit_npz" and L.detect(raw, meta, "timm").name == "timm"
    w = L.convert(raw, meta, f, "h.npz")
    assert set(w.state) == set(src.state_dict()) and w.where == "checkpoint (detected format: official_vit_npz)"
    assert {k: v for k, (v, _) in w.implies.items()} == {"act": "gelu_tanh", "stem_numerics": "jax"}
    assert L.read_weights(w) is w


def test_format_notes_read_init_kwargs(tmp_path):
    src = micro()
    w = L.read_weights(save_official_vit_npz(src, tmp_path / "p.npz"))
    assert len(L.format_notes(micro(), w)) == 1 and "act='gelu_tanh'" in L.format_notes(micro(), w)[0]
    assert L.format_notes(micro(act="gelu_tanh"), w) == []
    plain = micro()
    plain.init_kwargs["act"] = "gelu_tanh"  # what the notes read: the record, not the modules
    assert L.format_notes(plain, w) == []


def test_head_policy_keeps_replaces_drops_and_refuses():
    model = micro()
    target = model.state_dict()
    own = randomize_(micro()).state_dict()
    keep = L.head_policy(model, own, target)
    assert not keep.replace and set(keep.state) == set(own) and not keep.dropped
    other = randomize_(micro(num_classes=4)).state_dict()
    repl = L.head_policy(model, other, target)
    assert repl.replace and "head.weight" not in repl.state and "head.weight" in other  # input untouched
    assert "4 classes in the file, 10 in the model" in repl.notes[0]
    pre = randomize_(micro(representation_size=16, num_classes=4)).state_dict()
    drop = L.head_policy(model, pre, target)
    assert drop.replace and not any(k.startswith("pre_logits") for k in drop.state)
    assert any("pre-training head removed" in d for d in drop.dropped)
    same = randomize_(micro(representation_size=64)).state_dict()  # a head of the model's shape
    with pytest.raises(ValueError, match="representation_size=64"):
        L.head_policy(model, same, target)
    assert L.head_policy(model, same, target, strict=False).replace


def test_fit_asks_the_model():
    model = micro(img_size=48)
    target = model.state_dict()
    state = dict(randomize_(micro()).state_dict())
    state["extra"] = torch.zeros(1)
    got = L.fit(model, state, target)
    assert got.resampled == ["pos_embed: (1, 65, 64) -> (1, 145, 64)"] and got.unexpected == ["extra"]
    assert got.notes == ["pos_embed: 8x8 grid resampled to 12x12 (bicubic)"] and not got.missing
    asked = []
    model.fit_tensor = lambda k, v, interpolation: asked.append(k)  # a model that fits nothing
    got = L.fit(model, {k: v for k, v in state.items() if k != "norm.bias"}, target, skip=("head.bias",))
    assert asked == ["pos_embed"] and got.mismatched[0].startswith("pos_embed: (1, 65, 64) in the file")
    assert got.missing == ["pos_embed", "norm.bias"]
    swin = vitkit.create_model("swin_micro_patch2_window4_32", window_size=8)
    sd = randomize_(vitkit.create_model("swin_micro_patch2_window4_32")).state_dict()
    got = L.fit(swin, sd, swin.state_dict())
    assert got.resampled and all("relative_position_bias_table" in r for r in got.resampled)


def test_check_errors_name_the_format_and_the_first_keys():
    w = L.Weights("timm", {})
    report = L.LoadReport(missing=["a", "b"], unexpected=["c"])
    with pytest.raises(ValueError, match=r"detected format: timm\): 2 model tensors are missing from the file: a, b; "
                                         r"1 file tensors have no place in the model: c\. Pass strict=False"):
        L.check(micro(), w, report, 3)
    L.check(micro(), w, report, 3, strict=False)  # non-strict: the report says it
    with torch.device("meta"):
        small = vitkit.create_model("vit_small_patch16_224").state_dict()
    w = L.Weights("timm", {k: torch.empty(v.shape) for k, v in small.items()})
    with pytest.raises(ValueError, match="does not fit vit_micro_patch4_32: 1 of 9 tensors.*embed_dim=384"):
        L.check(micro(), w, L.LoadReport(mismatched=["pos_embed: …"]), 9)


@torch.no_grad()
def test_load_replaces_the_head_then_copies():
    model = micro(num_classes=3)
    src = randomize_(micro()).state_dict()
    body = {k: v for k, v in src.items() if not k.startswith("head.")}
    L.load(model, body, replace_head=True)
    assert torch.count_nonzero(model.head.weight) == 0 and torch.equal(model.norm.weight, src["norm.weight"])


def test_report_logs_notes_and_non_strict_gaps(caplog):
    with caplog.at_level(logging.INFO, logger="vitkit.weights.load"):
        L.log_report(L.LoadReport(notes=["a note"], missing=["x"]), strict=False)
    assert "a note" in caplog.text and "non-strict load" in caplog.text


def test_load_weights_is_the_pipeline(tmp_path, conversions):
    src = randomize_(micro())
    w = L.read_weights(src.state_dict())
    assert conversions == ["timm"]
    a, b = micro(), micro()
    ra, rb = L.load_converted(a, w), vitkit.load_weights(b, w)  # Weights already read: not converted again
    assert conversions == ["timm"] and str(ra) == str(rb) and ra.ok


# ------------------------------------------------------------------------------- inspect
def test_inspect_asks_the_architectures():
    vit = infer_architecture(randomize_(micro()).state_dict())
    assert vit["architecture"] is VisionTransformer and vit["grid"] == 8 and vit["num_classes"] == 10
    assert candidate_models(vit)[0] == "vit_micro_patch4_32"
    assert describe(vit) == VisionTransformer.describe_config(vit)
    swin = infer_architecture(vitkit.create_model("swin_micro_patch2_window4_32").state_dict())
    assert swin["architecture"] is SwinTransformer and swin["window_size"] == 4
    assert candidate_models(swin) == ["swin_micro_patch2_window4_32"]
    unknown = infer_architecture({"fc.weight": torch.zeros(2, 2)})
    assert unknown["architecture"] is None and candidate_models(unknown) == []
    assert "no vitkit architecture" in describe(unknown) and "fc.weight" in describe(unknown)
    text = (SRC / "weights" / "inspect.py").read_text()
    assert "stages." not in text and "family" not in text
