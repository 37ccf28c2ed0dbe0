"""``hf-hub:`` model ids, offline, over a Hugging Face cache laid out by hand (tests/_hub_util.py) from
tiny random models written by the peers themselves (timm's ``save_for_hf``, transformers'
``save_pretrained``): vitkit's logits equal timm's / transformers' reading the same files."""
from __future__ import annotations

import json

import pytest
import torch

import vitkit
from _hub_util import hf_cache, lay_out_repo  # noqa: F401  (fixture)
from _weights_util import assert_parity, randomize_

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

LABELS = ["cat", "dog", "eel", "fox", "gnu"]


def _folder_files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _timm_repo(tmp_path, arch, labels=None, **args):
    net = randomize_(timm.create_model(arch, pretrained=False, **args), seed=1)
    out = tmp_path / f"timm-{arch}"
    cfg = {"label_names": labels} if labels else None
    timm.models.save_for_hf(net, str(out), model_config=cfg, safe_serialization=True)
    return net, _folder_files(out)


@torch.no_grad()
@pytest.mark.parametrize("arch,args", [
    ("vit_base_patch16_224", dict(embed_dim=32, depth=2, num_heads=2, num_classes=5, img_size=32, patch_size=8)),
    ("swin_tiny_patch4_window7_224", dict(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4, img_size=32,
                                          num_classes=5)),
])
def test_timm_repo_loads_with_timms_logits(hf_cache, tmp_path, arch, args):
    net, files = _timm_repo(tmp_path, arch, labels=LABELS, **args)
    lay_out_repo(hf_cache, "someone/tiny-timm", files)
    model = vitkit.create_model("hf-hub:someone/tiny-timm", pretrained=True).eval()
    ref = timm.create_model("hf-hub:someone/tiny-timm", pretrained=True).eval()  # timm reads the same cache
    x = torch.randn(2, 3, 32, 32)
    assert_parity(model(x), ref(x))
    assert_parity(model(x), net(x))
    cfg = model.pretrained_cfg
    assert cfg.labels == LABELS and cfg.num_classes == 5
    assert cfg.source == cfg.tag == "hf-hub:someone/tiny-timm"
    assert cfg.input_size == (3, 32, 32) and cfg.mean == tuple(ref.pretrained_cfg["mean"])
    assert cfg.crop_pct == ref.pretrained_cfg["crop_pct"] and cfg.interpolation == ref.pretrained_cfg["interpolation"]
    assert model.load_report.ok and model.load_report.format == "timm"


def _hf_vit(num_labels=5):
    cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 image_size=32, patch_size=8, num_labels=num_labels,
                                 id2label={i: n for i, n in enumerate(LABELS)}, label2id={n: i for i, n in enumerate(LABELS)})
    return transformers.ViTForImageClassification(cfg)


def _hf_swin():
    cfg = transformers.SwinConfig(embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4, image_size=32,
                                  patch_size=4, num_labels=5, id2label={i: n for i, n in enumerate(LABELS)},
                                  label2id={n: i for i, n in enumerate(LABELS)})
    return transformers.SwinForImageClassification(cfg)


@torch.no_grad()
@pytest.mark.parametrize("make,cls", [(_hf_vit, "ViTForImageClassification"), (_hf_swin, "SwinForImageClassification")])
def test_transformers_repo_loads_with_transformers_logits(hf_cache, tmp_path, make, cls):
    net = randomize_(make(), seed=2)
    out = tmp_path / "hf"
    net.save_pretrained(out)
    proc = transformers.ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4, 0.5, 0.6],
                                          image_std=[0.2, 0.25, 0.3], resample=2)
    proc.save_pretrained(out)
    snap = lay_out_repo(hf_cache, "org/tiny-hf", _folder_files(out), revision="v1.0")
    model = vitkit.create_model("hf-hub:org/tiny-hf@v1.0", pretrained=True).eval()
    ref = getattr(transformers, cls).from_pretrained("org/tiny-hf", revision="v1.0").eval()  # same cache, offline
    x = torch.randn(2, 3, 32, 32)
    assert_parity(model(x), ref(pixel_values=x).logits)
    cfg = model.pretrained_cfg
    assert cfg.labels == LABELS and cfg.tag == "hf-hub:org/tiny-hf@v1.0"
    assert cfg.mean == (0.4, 0.5, 0.6) and cfg.std == (0.2, 0.25, 0.3) and cfg.interpolation == "bilinear"
    assert cfg.crop_pct == 1.0 and cfg.input_size == (3, 32, 32)
    assert model.load_report.format == "transformers" and model.load_report.ok
    # a commit hash names the same snapshot
    again = vitkit.create_model(f"hf-hub:org/tiny-hf@{snap.name}", pretrained=True).eval()
    assert torch.equal(again(x), model(x))


def test_pytorch_model_bin_is_read_when_there_is_no_safetensors(hf_cache, tmp_path):
    net, files = _timm_repo(tmp_path, "vit_base_patch16_224", embed_dim=32, depth=1, num_heads=2, num_classes=3,
                            img_size=32, patch_size=16)
    import io

    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    files.pop("model.safetensors")
    files["pytorch_model.bin"] = buf.getvalue()
    lay_out_repo(hf_cache, "a/bin-only", files)
    model = vitkit.create_model("hf-hub:a/bin-only", pretrained=True).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_parity(model(x), net.eval()(x))


def test_offline_miss_names_the_repo_and_the_cache_folder(hf_cache):
    with pytest.raises(FileNotFoundError) as e:
        vitkit.create_model("hf-hub:nobody/missing", pretrained=True)
    msg = str(e.value)
    assert "hf-hub:nobody/missing" in msg and str(hf_cache / "models--nobody--missing") in msg
    assert "offline" in msg and "config.json" in msg


def test_offline_miss_of_the_weights_lists_both_names(hf_cache, tmp_path):
    _, files = _timm_repo(tmp_path, "vit_base_patch16_224", embed_dim=32, depth=1, num_heads=2, num_classes=3,
                          img_size=32)
    files.pop("model.safetensors")
    lay_out_repo(hf_cache, "a/config-only", files)
    with pytest.raises(FileNotFoundError, match="model.safetensors / pytorch_model.bin is not in the Hugging Face cache"):
        vitkit.create_model("hf-hub:a/config-only", pretrained=True)
    # the architecture alone needs only the config
    shaped = vitkit.create_model("hf-hub:a/config-only")
    assert shaped.num_classes == 3 and shaped.init_kwargs["embed_dim"] == 32 and shaped.init_kwargs["img_size"] == 32


def test_transformers_offline_variable_and_hf_home_are_honoured(tmp_path, monkeypatch):
    """TRANSFORMERS_OFFLINE alone turns offline mode on; HF_HOME/hub is the cache when HF_HUB_CACHE is unset."""
    from vitkit.weights import hf_hub

    for v in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "VITKIT_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hf_hub.hub_offline() and hf_hub.hub_cache_dir() == tmp_path / "home" / "hub"
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "home" / "hub" / "models--x--y")):
        vitkit.create_model("hf-hub:x/y", pretrained=True)


def test_unsupported_timm_architecture_is_refused_by_name(hf_cache, tmp_path):
    _, files = _timm_repo(tmp_path, "vit_base_patch16_224", embed_dim=32, depth=1, num_heads=2, num_classes=3,
                          img_size=32, reg_tokens=4)
    lay_out_repo(hf_cache, "a/regs", files)
    with pytest.raises(ValueError, match="reg_tokens"):
        vitkit.create_model("hf-hub:a/regs", pretrained=True)
    cfg = json.loads(files["config.json"])
    cfg["architecture"] = "deit_tiny_patch16_224"
    lay_out_repo(hf_cache, "a/deit", {**files, "config.json": cfg})
    with pytest.raises(ValueError, match="'deit_tiny_patch16_224' is not one of vitkit's models"):
        vitkit.create_model("hf-hub:a/deit", pretrained=True)


def test_tag_hub_copies_are_timms_copies_of_the_same_files():
    """Each tag's hub_id is timm's pretrained config for the same name, whose source URL is the tag's."""
    from timm.models import get_pretrained_cfg
    from vitkit.weights.pretrained import TAGS

    with_hub = [t for t in TAGS if t.hub_id]
    assert len(with_hub) >= 30
    for t in with_hub:
        cfg = get_pretrained_cfg(t.name)
        assert cfg is not None and t.hub_id == f"timm/{t.name}" and cfg.hf_hub_id in ("timm/", t.hub_id), t.name
        assert cfg.url.replace("%2B", "+") == t.url.replace("%2B", "+"), t.name
        assert cfg.num_classes == t.num_classes, t.name
    assert all(t.hub_id is None for t in TAGS if t.tag.startswith("orig_"))  # timm's are re-converted files


@torch.no_grad()
def test_a_tag_reads_timms_hub_copy_offline_and_falls_back_to_the_url(hf_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path / "vitkit"))
    net = randomize_(timm.create_model("vit_tiny_patch16_224", depth=1), seed=5)
    out = tmp_path / "copy"
    timm.models.save_for_hf(net, str(out), safe_serialization=True)
    lay_out_repo(hf_cache, "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", _folder_files(out))
    model = vitkit.create_model("vit_tiny_patch16_224", pretrained=True, depth=1, act="gelu").eval()
    ref = timm.create_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", pretrained=True, depth=1).eval()  # same cache
    x = torch.randn(1, 3, 224, 224)
    assert_parity(model(x), ref(x))
    tagged = vitkit.create_model("vit_tiny_patch16_224", pretrained=True, depth=1)  # the tag's own tanh GELU
    assert tagged.blocks[0].mlp.act.approximate == "tanh" and tagged.pretrained_cfg.labels[0] == "tench"
    assert tagged.pretrained_cfg.tag == "vit_tiny_patch16_224.augreg_in21k_ft_in1k" and tagged.load_report.ok
    # no Hub copy cached and offline: the error names both places
    with pytest.raises(FileNotFoundError) as e:
        vitkit.create_model("vit_small_patch16_224", pretrained=True)
    msg = str(e.value)
    assert str(tmp_path / "vitkit" / "weights") in msg and "hf-hub:timm/vit_small_patch16_224.augreg_in21k_ft_in1k" in msg
    assert str(hf_cache / "models--timm--vit_small_patch16_224.augreg_in21k_ft_in1k") in msg


def test_transformers_vit_hybrid_and_other_types_are_refused_by_name(hf_cache):
    base = {"image_size": 32, "patch_size": 8, "num_channels": 3, "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64, "hidden_act": "gelu"}
    lay_out_repo(hf_cache, "a/hybrid", {"config.json": {**base, "model_type": "vit-hybrid"}})
    with pytest.raises(ValueError, match="hf-hub:a/hybrid: transformers' vit-hybrid"):
        vitkit.create_model("hf-hub:a/hybrid", pretrained=True)
    lay_out_repo(hf_cache, "a/deit", {"config.json": {**base, "model_type": "deit"}})
    with pytest.raises(ValueError, match="model_type='deit'"):
        vitkit.create_model("hf-hub:a/deit", pretrained=True)
    lay_out_repo(hf_cache, "a/relu", {"config.json": {**base, "model_type": "vit", "hidden_act": "relu"}})
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        vitkit.create_model("hf-hub:a/relu")


def test_predict_command_reads_a_hub_repo_with_its_labels(hf_cache, tmp_path, capsys):
    from PIL import Image

    from vitkit.cli import main

    net, files = _timm_repo(tmp_path, "vit_base_patch16_224", labels=LABELS, embed_dim=32, depth=1, num_heads=2,
                            num_classes=5, img_size=32, patch_size=8)
    lay_out_repo(hf_cache, "someone/pets", files)
    img = tmp_path / "x.png"
    Image.new("RGB", (40, 36), (10, 200, 30)).save(img)
    assert main(["predict", str(img), "--model", "hf-hub:someone/pets", "--topk", "2"]) == 0
    out = capsys.readouterr().out
    assert sum(f"{name} (" in out for name in LABELS) == 2


def test_a_damaged_cached_hub_file_is_named_with_the_fix(hf_cache, tmp_path):
    """The Hub's LFS files are stored by their SHA-256: a blob whose bytes no longer match is refused."""
    _, files = _timm_repo(tmp_path, "vit_base_patch16_224", embed_dim=32, depth=1, num_heads=2, num_classes=3,
                          img_size=32)
    snap = lay_out_repo(hf_cache, "a/damaged", files)
    vitkit.create_model("hf-hub:a/damaged", pretrained=True)  # intact: loads (and is marked verified)
    blob = (snap / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte
    blob.write_bytes(bytes(data))
    (tmp_path / "vitkit" / "hub-verified" / blob.name).unlink()
    with pytest.raises(ValueError, match="is damaged") as e:
        vitkit.create_model("hf-hub:a/damaged", pretrained=True)
    assert str(blob) in str(e.value) and "delete" in str(e.value)


def test_what_a_repo_does_not_say_comes_from_the_row(hf_cache, tmp_path):
    """A timm Swin repo whose pretrained_cfg gives no mean/std gets the Swin row's ImageNet statistics."""
    _, files = _timm_repo(tmp_path, "swin_tiny_patch4_window7_224", embed_dim=16, depths=(1, 1), num_heads=(1, 2),
                          window_size=4, img_size=32, num_classes=3)
    cfg = json.loads(files["config.json"])
    for k in ("mean", "std", "crop_pct"):
        cfg["pretrained_cfg"].pop(k)
    lay_out_repo(hf_cache, "a/sparse", {**files, "config.json": cfg})
    model = vitkit.create_model("hf-hub:a/sparse", pretrained=True)
    row = vitkit.registry.get_entry("swin_tiny_patch4_window7_224").pretrained_cfg
    assert model.pretrained_cfg.mean == tuple(row["mean"]) and model.pretrained_cfg.crop_pct == row["crop_pct"]
    assert model.pretrained_cfg.input_size == (3, 32, 32)
