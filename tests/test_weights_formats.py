"""Key tables and format detection: every peer's real state-dict layout converts to exactly the
names and shapes of the matching vitkit model (checked on the meta device, at full size)."""
from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.weights.formats import FORMAT_NAMES, detect_format, get_format
from vitkit.weights.formats.table import Pattern, Rule, from_vitkit, to_vitkit

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
transformers = pytest.importorskip("transformers")


def shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


def vitkit_shapes(name, **kw):
    with torch.device("meta"):
        return shapes(vitkit.create_model(name, **kw).state_dict())


def check_layout(sd, vname, fmt, **kw):
    f = detect_format(sd)
    assert f.name == fmt
    conv = f.convert(sd)
    assert conv.unknown == []
    assert shapes(conv.state) == vitkit_shapes(vname, **kw)
    return conv


# ------------------------------------------------------------------------------ the table machinery
def test_pattern_offsets_match_and_format_symmetrically():
    src, dst = Pattern("layers.{s}.downsample.w"), Pattern("stages.{s+1}.downsample.w")
    assert dst.format(src.match("layers.2.downsample.w")) == "stages.3.downsample.w"
    assert src.format(dst.match("stages.3.downsample.w")) == "layers.2.downsample.w"
    assert dst.match("stages.0.downsample.w") is None  # would be stage -1
    assert Pattern("block{s+1}/unit{b+1}/x").match("block1/unit3/x") == {"s": 0, "b": 2}
    assert Pattern("a.{i}.b.{i}").match("a.1.b.2") is None  # one name, one value
    assert Pattern("blocks.{i}.norm1.weight").match("xblocks.0.norm1.weight") is None


def test_fused_parts_concatenate_in_qkv_order_and_split_back():
    rules = [Rule(f"{n}.{{i}}", f"qkv.{{i}}#{p}") for p, n in (("q", "query"), ("k", "key"), ("v", "value"))]
    state = {f"{n}.0": torch.full((2, 3), float(j)) for j, n in enumerate(("value", "query", "key"))}
    out = to_vitkit(state, rules, {})
    assert out.state["qkv.0"][:, 0].tolist() == [1, 1, 2, 2, 0, 0]  # query (1), key (2), value (0)
    back = from_vitkit(out.state, rules)
    assert all(torch.equal(back[k], state[k]) for k in state)
    with pytest.raises(ValueError, match="both map to 'qkv.0#q'"):
        to_vitkit({"query.0": torch.zeros(1), "query.00": torch.zeros(1)}, rules, {})
    with pytest.raises(ValueError, match="q, k and v"):
        to_vitkit({"query.0": torch.zeros(1), "key.0": torch.zeros(1)}, rules, {})


def test_unknown_layout_is_refused_with_the_first_keys():
    with pytest.raises(ValueError, match="cannot tell the checkpoint's format.*encoder.foo"):
        detect_format({"encoder.foo": torch.zeros(1)})
    with pytest.raises(ValueError, match="choose one of"):
        get_format("keras")
    assert set(FORMAT_NAMES) == {"vitkit", "official_vit_npz", "transformers", "torchvision", "official_swin_pth", "timm"}


# ------------------------------------------------------------------------------ every peer layout
@pytest.mark.parametrize("tname,vname", [
    ("vit_base_patch16_224", "vit_base_patch16_224"),
    ("vit_large_patch16_384", "vit_large_patch16_384"),
    ("vit_base_r50_s16_224", "vit_base_r50_s16_224"),
    ("swin_base_patch4_window12_384", "swin_base_patch4_window12_384"),
    ("swin_large_patch4_window7_224", "swin_large_patch4_window7_224"),
])
def test_timm_layouts(tname, vname):
    with torch.device("meta"):
        sd = timm.create_model(tname, num_classes=1000).state_dict()
    check_layout(sd, vname, "timm")


@pytest.mark.parametrize("builder,vname,dropped", [
    ("vit_b_16", "vit_base_patch16_224", 0), ("vit_l_16", "vit_large_patch16_224", 0),
    ("swin_t", "swin_tiny_patch4_window7_224", 12), ("swin_b", "swin_base_patch4_window7_224", 24),
])
def test_torchvision_layouts(builder, vname, dropped):
    with torch.device("meta"):
        sd = getattr(torchvision.models, builder)().state_dict()
    conv = check_layout(sd, vname, "torchvision")
    assert len(conv.dropped) == dropped  # relative_position_index buffers, recomputed


def test_torchvision_representation_layer_maps_to_pre_logits():
    with torch.device("meta"):
        sd = torchvision.models.VisionTransformer(224, 16, 2, 4, 64, 128, representation_size=32).state_dict()
    check_layout(sd, "vit_base_patch16_224", "torchvision", depth=2, num_heads=4, embed_dim=64, mlp_dim=128,
                 representation_size=32)


def _hf_vit(**kw):
    from transformers import ViTConfig, ViTForImageClassification
    with torch.device("meta"):
        return ViTForImageClassification(ViTConfig(num_labels=1000, **kw)).state_dict()


def _hf_swin(**kw):
    from transformers import SwinConfig, SwinForImageClassification
    with torch.device("meta"):
        return SwinForImageClassification(SwinConfig(num_labels=1000, **kw)).state_dict()


# the names that hub files carry (transformers < 5), from the in-memory names of transformers ≥ 5
HUB_NAMES = [("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
             ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense"),
             ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense"), ("vit.layers.", "vit.encoder.layer.")]
HUB_NAMES_SWIN = [("attention.q_proj", "attention.self.query"), ("attention.k_proj", "attention.self.key"),
                  ("attention.v_proj", "attention.self.value"), ("attention.o_proj", "attention.output.dense"),
                  ("attention.relative_position_bias.", "attention.self."),
                  ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")]


def _rename(sd, pairs):
    out = {}
    for k, v in sd.items():
        for a, b in pairs:
            k = k.replace(a, b)
        out[k] = v
    return out


@pytest.mark.parametrize("era", ["memory", "hub"])
def test_transformers_layouts(era):
    vit, swin = _hf_vit(), _hf_swin()
    if era == "hub":
        vit, swin = _rename(vit, HUB_NAMES), _rename(swin, HUB_NAMES_SWIN)
        assert "vit.encoder.layer.0.attention.attention.query.weight" in vit
        assert "swin.encoder.layers.0.blocks.0.attention.self.relative_position_bias_table" in swin
    check_layout(vit, "vit_base_patch16_224", "transformers")
    check_layout(swin, "swin_tiny_patch4_window7_224", "transformers")
    # ViTModel: no ``vit.`` prefix, a tanh pooler = the paper's pre-logits layer, no classifier
    bare = {k[len("vit."):]: v for k, v in vit.items() if k.startswith("vit.")}
    bare["pooler.dense.weight"], bare["pooler.dense.bias"] = torch.zeros(768, 768), torch.zeros(768)
    conv = get_format("transformers").convert(bare)
    assert "pre_logits.fc.weight" in conv.state and "head.weight" not in conv.state


def test_transformers_swin_absolute_position_embedding():
    sd = _hf_swin(use_absolute_embeddings=True)
    conv = check_layout(sd, "swin_tiny_patch4_window7_224", "transformers", ape=True)
    assert conv.state["absolute_pos_embed"].shape == (1, 56, 56, 96)


@pytest.mark.parametrize("vname", ["vit_base_patch16_224", "vit_base_r50_s16_224"])
def test_official_vit_npz_table_round_trips(vname):
    model = vitkit.create_model(vname, depth=1)
    sd = model.state_dict()
    fmt = get_format("official_vit_npz")
    flax = from_vitkit(sd, fmt.rules, {"num_heads": 12})
    assert flax["Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"].shape == (768, 12, 64)
    assert flax["Transformer/encoderblock_0/MultiHeadDotProductAttention_1/out/kernel"].shape == (12, 64, 768)
    if "r50" in vname:
        assert flax["conv_root/kernel"].shape == (7, 7, 3, 64)
        assert flax["block3/unit9/conv3/kernel"].shape == (1, 1, 256, 1024)
        assert "block1/unit1/conv_proj/kernel" in flax and "block1/unit2/conv_proj/kernel" not in flax
    nested = {f"opt/target/{k}": v for k, v in flax.items()}  # older files nest everything one level down
    assert detect_format(nested).name == "official_vit_npz"
    back = fmt.convert(nested)
    assert back.unknown == [] and set(back.state) == set(sd)
    assert all(torch.equal(back.state[k], sd[k]) for k in sd)


def test_official_swin_merging_moves_to_the_next_stage():
    with torch.device("meta"):
        sd = vitkit.create_model("swin_tiny_patch4_window7_224").state_dict()
    fmt = get_format("official_swin_pth")
    official = from_vitkit(sd, fmt.rules)
    assert "layers.0.downsample.reduction.weight" in official and "layers.3.downsample.reduction.weight" not in official
    assert official["layers.0.downsample.reduction.weight"].shape == (192, 384)
    assert detect_format(official).name == "official_swin_pth"
    assert shapes(fmt.convert(official).state) == shapes(sd)


def test_vitkit_layouts_are_recognised():
    with torch.device("meta"):
        swin = vitkit.create_model("swin_micro_patch2_window4_32").state_dict()
        hybrid = vitkit.create_model("vit_base_r50_s16_224", depth=1).state_dict()
        plain = vitkit.create_model("vit_micro_patch4_32").state_dict()
    assert detect_format(swin).name == "vitkit"
    assert detect_format(hybrid).name == "vitkit"
    assert detect_format(plain).name == "timm"  # plain ViT names are timm's by design
    assert detect_format(plain, {"format": "vitkit"}).name == "vitkit"
