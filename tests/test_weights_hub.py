"""Download cache and pretrained tags, with no network: a local HTTP server on 127.0.0.1 (with range
requests) stands in for the publishers, and a cache folder prepared by hand for offline use."""
from __future__ import annotations

import hashlib
import http.server
import threading

import pytest
import torch

import vitkit
from vitkit.weights import hub
from vitkit.weights.pretrained import TAGS, get_pretrained, imagenet1k_labels, list_pretrained
from _weights_util import randomize_

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    log: list[str | None] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        self.log.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.log = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("VITKIT_NO_PROGRESS", "1")
    monkeypatch.delenv("VITKIT_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_download_verifies_and_caches(server, tmp_path):
    base, handler = server
    handler.files["/w.bin"] = PAYLOAD
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    path = hub.download(f"{base}/w.bin", sha256=sha, cache=tmp_path)
    assert path == tmp_path / "w.bin" and path.read_bytes() == PAYLOAD
    assert not list(tmp_path.glob("*.part"))
    handler.files.clear()  # a second call is served from the cache, even offline
    assert hub.download(f"{base}/w.bin", sha256=sha, cache=tmp_path, offline=True) == path


def test_checksum_mismatch_removes_the_download(server, tmp_path):
    base, handler = server
    handler.files["/w.bin"] = PAYLOAD
    with pytest.raises(ValueError, match="does not match its SHA-256"):
        hub.download(f"{base}/w.bin", sha256="0" * 64, cache=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [".locks"]  # only the download lock remains


def test_interrupted_download_resumes_from_the_part_file(server, tmp_path):
    base, handler = server
    handler.files["/w.bin"] = PAYLOAD
    (tmp_path / "w.bin.part").write_bytes(PAYLOAD[:300_000])  # what a killed download leaves
    path = hub.download(f"{base}/w.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest(), cache=tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert handler.log == ["bytes=300000-"]


def test_offline_error_says_what_to_fetch_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("VITKIT_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as e:
        hub.download("https://example.invalid/vit_models/ViT-B_16.npz", cache=tmp_path)
    msg = str(e.value)
    assert "'ViT-B_16.npz'" in msg and "https://example.invalid/vit_models/ViT-B_16.npz" in msg and str(tmp_path) in msg


def test_unreachable_server_error_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"save it as {tmp_path / 'x.npz'}"):
        hub.download("http://127.0.0.1:9/x.npz", cache=tmp_path, timeout=2)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path))
    assert hub.cache_dir() == tmp_path / "weights"


# ----------------------------------------------------------------------------------- tags
def test_tag_table_covers_the_published_files():
    names = set(list_pretrained())
    for model in ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "vit_large_patch16_224"):
        assert f"{model}.augreg_in21k_ft_in1k" in names and f"{model}.augreg_in21k" in names
    for model in ("vit_base_patch16_224", "vit_large_patch16_224", "vit_base_r50_s16_224"):
        assert f"{model}.orig_in21k" in names
        tag = get_pretrained(model, "orig_in21k")  # a zeroed 21k head in the file: built headless
        assert tag.published_classes == 21843 and tag.num_classes == 0
    assert "vit_base_r50_s16_384.orig_in21k_ft_in1k" in names
    for size in ("tiny", "small", "base", "large"):
        for window, res in ((7, 224), (12, 384)):
            if size in ("tiny", "small") and res == 384:
                continue  # not published
            tags = {t.tag for t in TAGS if t.model == f"swin_{size}_patch4_window{window}_{res}"}
            assert {"ms_in22k", "ms_in22k_ft_in1k"} <= tags
    assert len({t.filename for t in TAGS}) == len(TAGS)  # one cache file per tag
    swin = get_pretrained("swin_base_patch4_window12_384", "ms_in22k")
    assert swin.num_classes == 21841 and swin.mean == (0.485, 0.456, 0.406) and swin.crop_pct == 1.0
    vit = get_pretrained("vit_base_patch16_224")
    assert vit.mean == vit.std == (0.5, 0.5, 0.5) and vit.url.endswith("res_224.npz") and vit.crop_pct == 0.9
    with pytest.raises(ValueError, match="choose one of augreg_in21k_ft_in1k"):
        get_pretrained("vit_tiny_patch16_224", "jft")
    with pytest.raises(ValueError, match="no pretrained weights are registered for 'vit_micro_patch4_32'"):
        get_pretrained("vit_micro_patch4_32")


def test_imagenet_labels_ship_with_the_package():
    labels = imagenet1k_labels()
    assert len(labels) == 1000 == len(set(labels))
    assert labels[0] == "tench" and labels[999] == "toilet tissue"


@torch.no_grad()
def test_imagenet21k_names_ship_and_reach_a_21k_checkpoints_model(tmp_path, monkeypatch):
    """The 21,843 ImageNet-21k classes of the official ViT files: WordNet ids in sorted order (the
    checkpoints' class order), each with its lemmas; a model built from a 21k-class file carries them."""
    from vitkit.weights.pretrained import imagenet21k_synsets, labels_for

    rows = imagenet21k_synsets()
    wnids = [w for w, _ in rows]
    assert len(rows) == 21843 and wnids == sorted(set(wnids)) and all(len(w) == 9 and w[0] == "n" for w in wnids)
    names = dict(rows)
    assert names["n00004475"] == "organism, being" and names["n01440764"].startswith("tench")
    assert labels_for("imagenet21k", 21843)[0] == "organism, being" and labels_for("imagenet21k", 10) is None

    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("VITKIT_OFFLINE", "1")
    tag = get_pretrained("vit_tiny_patch16_224", "augreg_in21k")
    src = randomize_(vitkit.create_model("vit_tiny_patch16_224", depth=1, num_classes=21843, act="gelu_tanh"))
    (tmp_path / "weights").mkdir()
    vitkit.weights.save_official_vit_npz(src, tmp_path / "weights" / tag.filename)
    model = vitkit.create_model("vit_tiny_patch16_224", pretrained="augreg_in21k", depth=1)
    assert model.num_classes == 21843 and model.pretrained_cfg["labels"][21842] == rows[21842][1]

    # timm's "name.tag" spelling: the same weights; without pretrained, the tag's shape only
    dotted = vitkit.create_model("vit_tiny_patch16_224.augreg_in21k", pretrained=True, depth=1)
    assert dotted.pretrained_cfg["tag"] == model.pretrained_cfg["tag"] == "vit_tiny_patch16_224.augreg_in21k"
    assert all(torch.equal(a, b) for a, b in zip(dotted.state_dict().values(), model.state_dict().values()))
    shaped = vitkit.create_model("vit_tiny_patch16_224.augreg_in21k", depth=1)
    assert shaped.num_classes == 21843 and shaped.blocks[0].mlp.act.approximate == "tanh"
    with pytest.raises(ValueError, match="names the tag 'augreg_in21k' but pretrained='orig_in21k'"):
        vitkit.create_model("vit_tiny_patch16_224.augreg_in21k", pretrained="orig_in21k")
    with pytest.raises(ValueError, match="no pretrained tag 'jft'"):
        vitkit.create_model("vit_tiny_patch16_224.jft")


@torch.no_grad()
def test_create_model_pretrained_from_the_cache_offline(tmp_path, monkeypatch):
    """A published file placed in the cache by hand is found offline, loaded strictly, and the model
    gets the tag's preprocessing, labels and the official tanh GELU."""
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("VITKIT_OFFLINE", "1")
    tag = get_pretrained("vit_tiny_patch16_224")
    src = randomize_(vitkit.create_model("vit_tiny_patch16_224", act="gelu_tanh"))
    (tmp_path / "weights").mkdir()
    vitkit.weights.save_official_vit_npz(src, tmp_path / "weights" / tag.filename)

    model = vitkit.create_model("vit_tiny_patch16_224", pretrained=True).eval()
    assert model.load_report.format == "official_vit_npz" and model.load_report.ok
    cfg = model.pretrained_cfg
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["crop_pct"] == 0.9 and cfg["tag"] == tag.name
    assert cfg["labels"][0] == "tench" and len(cfg["labels"]) == 1000
    assert model.blocks[0].mlp.act.approximate == "tanh"
    x = torch.randn(1, 3, 224, 224)
    assert torch.allclose(model(x), src(x), atol=1e-5)

    ft = vitkit.create_model("vit_tiny_patch16_224", pretrained="augreg_in21k_ft_in1k", num_classes=10, img_size=384)
    assert ft.load_report.head_replaced and ft.load_report.resampled[0].startswith("pos_embed")
    assert ft.pretrained_cfg["labels"] is None and ft.pretrained_cfg["input_size"] == (3, 384, 384)

    with pytest.raises(FileNotFoundError, match=str(tmp_path / "weights")):
        vitkit.create_model("vit_small_patch16_224", pretrained=True)
