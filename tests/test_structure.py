"""The package's shape: consumers ask the model (models.base protocol) instead of testing what it is."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import vitkit

SRC = Path(vitkit.__file__).resolve().parent

# A type test for ViT or Swin: isinstance against their classes, hasattr probes of their attributes,
# or a family guessed from parameter-name prefixes.
TYPE_TEST = re.compile(
    r"isinstance\([^)]*\b(VisionTransformer|SwinTransformer|SwinBlock|SwinStage|WindowAttention|Block)\b"
    r"|hasattr\([^)]*[\"'](blocks|stages|stem|img_size|grid_size|window_size|patch_size|pos_embed)[\"']"
    r"|startswith\([^)]*[\"'](stages|blocks)\.[\"']"
    r"|==\s*[\"'](vit|swin)[\"']"
)


def _offending_lines() -> list[str]:
    hits = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        # models/ defines the architectures; weights/formats/ are the key tables of each file format
        if rel.startswith(("models/", "weights/formats/")):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if TYPE_TEST.search(line):
                hits.append(f"{rel}:{n}: {line.strip()}")
    return hits


def test_no_vit_or_swin_type_tests_outside_models():
    """Equivalent to: grep -rnE '<TYPE_TEST>' src/vitkit --exclude-dir=models --exclude-dir=formats."""
    assert _offending_lines() == []


def test_the_type_test_pattern_catches_what_it_should():
    """The check above would fail on the dispatch it replaced (so it cannot pass vacuously)."""
    old = ['if isinstance(model, VisionTransformer):', 'if hasattr(model, "blocks"):  # ViT',
           'if any(k.startswith("stages.") for k in keys):', 'if isinstance(m, (Block, SwinBlock)):',
           'if info.get("family") == "swin":']
    assert all(TYPE_TEST.search(line) for line in old)
    assert not TYPE_TEST.search("for blk in model.transformer_blocks():")


def _tiny(name: str, **kw):
    return vitkit.create_model(name, **kw)


@pytest.mark.parametrize("name,kw", [
    ("vit_micro_patch4_32", dict(act="gelu_tanh", init_values=1e-5, global_pool="avg", representation_size=32)),
    ("swin_micro_patch2_window4_32", dict(window_size=2, ape=True)),
])
def test_model_protocol_answers(name, kw):
    """Every question a consumer used to answer by inspecting the model's type has an answer."""
    m = _tiny(name, **kw)
    blocks = m.transformer_blocks()
    assert len(blocks) == m.num_layers > 0
    assert all(isinstance(b, torch.nn.Module) for b in blocks)
    ids = {n: m.layer_id(n) for n, _ in m.named_parameters()}
    assert min(ids.values()) == 0 and max(ids.values()) == m.num_layers + 1
    # every block's parameters get that block's id, in forward order
    for i, blk in enumerate(blocks):
        names = {n for n, p in m.named_parameters() if any(p is q for q in blk.parameters())}
        assert {ids[n] for n in names} == {i + 1}
    layers = m.attention_layers()
    assert [a.index for a in layers] == list(range(len(blocks)))
    assert all(m.get_submodule(a.name) is a.module for a in layers)
    assert m.position_embedding_grid().ndim == 3
    assert isinstance(m.pixel_patch_projection(), torch.nn.Conv2d)
    assert m.feature_pyramid in ("plain", "hierarchical")
    rebuilt = vitkit.create_model(m.model_name, **m.init_kwargs)
    assert rebuilt.init_kwargs == m.init_kwargs
    rebuilt.load_state_dict(m.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), m.eval()(x))


def test_init_kwargs_follow_geometry_and_head_changes():
    m = _tiny("swin_micro_patch2_window4_32")
    m.set_input_size(64, window_size=8)
    m.reset_classifier(3)
    assert (m.init_kwargs["img_size"], m.init_kwargs["window_size"], m.init_kwargs["num_classes"]) == (64, 8, 3)
    assert m.pretrained_cfg["input_size"] == (3, 64, 64)
    rebuilt = vitkit.create_model(m.model_name, **m.init_kwargs)
    rebuilt.load_state_dict(m.state_dict())  # same shapes: same geometry


def test_pretrained_cfg_is_typed():
    m = _tiny("vit_micro_patch4_32")
    cfg = m.pretrained_cfg
    assert cfg["mean"] == cfg.mean and cfg.get("crop_pct") == 1.0
    with pytest.raises(KeyError, match="crop_pc"):
        cfg["crop_pc"] = 0.9  # a misspelt field is an error, not a silently ignored setting
    assert type(cfg).from_dict(cfg.to_dict()) == cfg
