"""The six defects of the pretrained path (issue 14), each reproduced: headless orig_in21k tags and
predict's refusal, accuracy notes of the exact files, tag detection from a file's contents, locked
concurrent downloads, verified downloads and damaged cache files, and the failure message. Downloads
run against a local http.server on 127.0.0.1 (no network)."""
from __future__ import annotations

import base64
import hashlib
import http.server
import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from vitkit.weights import hub
from vitkit.weights.pretrained import TAGS, find_tag_by_filename, get_pretrained
from _weights_util import randomize_

SRC = Path(vitkit.__file__).parent


def _npz_bytes(n: int = 200_000, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=np.random.default_rng(seed).standard_normal(n).astype(np.float32))
    return buf.getvalue()


PAYLOAD = _npz_bytes()


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    mode: dict[str, str] = {}  # path → "html" | "cut" | "bad_md5" | "slow"
    log: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        data = self.files.get(self.path)
        mode = self.mode.get(self.path, "")
        rng = self.headers.get("Range")
        self.log.append((self.path, rng))
        if data is None:
            self.send_error(404)
            return
        if mode == "html":  # an error page served with 200
            body = b"<!DOCTYPE html><html><body>Quota exceeded</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        if start >= len(data) and rng:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.end_headers()
            return
        self.send_response(206 if rng else 200)
        md5 = hashlib.md5(b"x" if mode == "bad_md5" else data).digest()
        self.send_header("x-goog-hash", f"crc32c=AAAAAA==,md5={base64.b64encode(md5).decode()}")
        if mode == "cut":  # no Content-Length, and the stream stops half-way
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data[start:len(data) // 2])
            self.close_connection = True
            return
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        step = 1 << 15
        for i in range(0, len(body), step):
            self.wfile.write(body[i:i + step])
            if mode == "slow":
                time.sleep(0.01)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.mode, _Handler.log = {}, {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("VITKIT_NO_PROGRESS", "1")
    for v in ("VITKIT_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)


# ------------------------------------------------------------------ 1. headless orig_in21k tags
def _tiny_orig_in21k(cache: Path, tag) -> None:
    """The tag's file in the official layout: tanh pre-logits layer + a zeroed 21,843-class head, as
    Google published it (tiny widths, so it writes fast)."""
    from vitkit.weights.io import save_official_vit_npz

    src = randomize_(vitkit.create_model(tag.model, depth=1, embed_dim=64, num_heads=2, mlp_dim=128,
                                         representation_size=64, num_classes=21843, act="gelu_tanh"))
    with torch.no_grad():
        src.head.weight.zero_()
        src.head.bias.zero_()
    (cache / "weights").mkdir(exist_ok=True)
    save_official_vit_npz(src, cache / "weights" / tag.filename)


def test_orig_in21k_tags_build_headless_and_predict_refuses_them(tmp_path, monkeypatch):
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("VITKIT_OFFLINE", "1")
    for model in ("vit_base_patch16_224", "vit_large_patch16_224", "vit_base_r50_s16_224"):
        assert get_pretrained(model, "orig_in21k").num_classes == 0  # as timm: features only
    tag = get_pretrained("vit_base_patch16_224", "orig_in21k")
    _tiny_orig_in21k(tmp_path, tag)
    kw = dict(depth=1, embed_dim=64, num_heads=2, mlp_dim=128)
    model = vitkit.create_model("vit_base_patch16_224", pretrained="orig_in21k", **kw).eval()
    assert model.num_classes == 0 and isinstance(model.head, torch.nn.Identity)
    assert model.init_kwargs["representation_size"] is None  # the pre-training head goes whole (ViT §3.2)
    assert model.pretrained_cfg.labels is None and model.pretrained_cfg.num_classes == 0
    assert any(d.startswith("head.weight") for d in model.load_report.dropped)
    assert any(d.startswith("pre_logits.fc.weight") for d in model.load_report.dropped)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 64)  # features
    # fine-tuning from it still works: a fresh zero-initialised head
    ft = vitkit.create_model("vit_base_patch16_224", pretrained="orig_in21k", num_classes=10, **kw)
    assert ft.num_classes == 10 and ft.load_report.head_replaced

    img = tmp_path / "x.png"
    Image.new("RGB", (240, 240), (120, 30, 200)).save(img)
    from vitkit.weights.preprocess import classify

    with pytest.raises(ValueError, match="no classifier") as e:
        classify(model, [img])
    assert "orig_in21k" in str(e.value) and "fine-tun" in str(e.value)


# ----------------------------------------------------- 2. accuracy notes of the exact files
# ImageNet top-1 per fine-tuned file, from the official indexes: the google-research/vision_transformer
# README ("We recommend using the following checkpoints …") and the microsoft/Swin-Transformer README
# ("Main Results on ImageNet with Pretrained Models").
OFFICIAL_TOP1 = {
    "Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz": "78.22",
    "S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz": "83.73",
    "B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz": "85.49",
    "L_16-i21k-300ep-lr_0.001-aug_strong1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz": "85.59",
    "B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz": "83.59",
    "S_32-i21k-300ep-lr_0.001-aug_none-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz": "79.58",
    "swin_tiny_patch4_window7_224.pth": "81.2",
    "swin_small_patch4_window7_224.pth": "83.2",
    "swin_base_patch4_window7_224.pth": "83.5",
    "swin_base_patch4_window12_384.pth": "84.5",
    "swin_base_patch4_window7_224_22kto1k.pth": "85.2",
    "swin_base_patch4_window12_384_22kto1k.pth": "86.4",
    "swin_large_patch4_window7_224_22kto1k.pth": "86.3",
    "swin_large_patch4_window12_384_22kto1k.pth": "87.3",
}


def test_accuracy_notes_are_the_official_figures_of_the_exact_file():
    import re

    noted = 0
    for t in TAGS:
        figures = re.findall(r"\d\d\.\d+", t.note)
        file = t.url.rsplit("/", 1)[-1]
        if figures:
            noted += 1
            assert figures == [OFFICIAL_TOP1.get(file)], (t.name, t.note, file)
            assert "REFERENCE.md" not in t.note and "README" in t.note
    assert noted >= 8
    # the vitkit tags whose file the official index lists all carry its figure
    for t in TAGS:
        if t.url.rsplit("/", 1)[-1] in OFFICIAL_TOP1:
            assert OFFICIAL_TOP1[t.url.rsplit("/", 1)[-1]] in t.note, t.name


def test_no_citation_of_files_users_do_not_have():
    for path in (SRC / "weights").rglob("*.py"):
        assert "REFERENCE.md" not in path.read_text(), path


# ------------------------------------------------- 3. a local copy's tag from its contents
def test_find_tag_by_filename_reads_the_contents_of_an_ambiguous_name(tmp_path):
    """``ViT-B_16.npz`` is the name of both the 21k file and the 1k-384 file (wget keeps only the
    name); the head size and the position-embedding grid tell them apart."""
    ft = {"num_classes": 1000, "grid": 24, "kwargs": {"embed_dim": 768, "patch_size": 16}}
    pre = {"num_classes": 21843, "grid": 14, "kwargs": {"embed_dim": 768, "patch_size": 16}}
    assert find_tag_by_filename("ViT-B_16.npz", ft).name == "vit_base_patch16_384.orig_in21k_ft_in1k"
    assert find_tag_by_filename("ViT-B_16.npz", pre).name == "vit_base_patch16_224.orig_in21k"
    assert find_tag_by_filename("ViT-B_16.npz") is None  # the name alone cannot tell
    assert find_tag_by_filename("ViT-L_16.npz", {"num_classes": 1000, "grid": 24,
                                                "kwargs": {"embed_dim": 1024, "patch_size": 16}}).tag == "orig_in21k_ft_in1k"

    # end to end: a 1k-384 file saved as ViT-B_16.npz gets that tag's crop, input size and labels
    from vitkit.weights.io import save_official_vit_npz

    src = randomize_(vitkit.create_model("vit_base_patch16_384", depth=1, act="gelu_tanh"))
    path = save_official_vit_npz(src, tmp_path / "ViT-B_16.npz")
    model = vitkit.build.build_from_file(path, "vit_base_patch16_384", depth=1)
    cfg = model.pretrained_cfg
    assert cfg.tag == "vit_base_patch16_384.orig_in21k_ft_in1k" and cfg.crop_pct == 1.0
    assert cfg.input_size == (3, 384, 384) and cfg.labels is not None and cfg.labels[0] == "tench"


# --------------------------------------------------------- 4. concurrent processes, one download
def test_three_concurrent_processes_download_once_and_all_succeed(server, tmp_path):
    base, handler = server
    handler.files["/w.npz"] = _npz_bytes(1_000_000, seed=4)
    handler.mode["/w.npz"] = "slow"  # ~0.4 s of streaming: the three overlap
    data = handler.files["/w.npz"]
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('h', sys.argv[1]); "
            "h = importlib.util.module_from_spec(spec); spec.loader.exec_module(h); "
            "print(h.download(sys.argv[2], cache=sys.argv[3], sha256=sys.argv[4]))")
    env = {"VITKIT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(SRC / "weights" / "hub.py"), f"{base}/w.npz",
                               str(tmp_path), hashlib.sha256(data).hexdigest()],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert out.strip() == str(tmp_path / "w.npz")
    assert (tmp_path / "w.npz").read_bytes() == data
    assert not list(tmp_path.glob("*.part"))
    assert len([r for r in handler.log if r[0] == "/w.npz"]) == 1  # one rank downloads, the others wait


# ------------------------------------------------------------- 5. verified downloads
def test_part_file_larger_than_the_object_is_not_installed(server, tmp_path):
    base, handler = server
    handler.files["/w.npz"] = PAYLOAD
    (tmp_path / "w.npz.part").write_bytes(PAYLOAD + b"\0" * 5000)  # a .part from another, larger object
    path = hub.download(f"{base}/w.npz", cache=tmp_path)
    assert path.read_bytes() == PAYLOAD


def test_html_error_page_served_with_200_is_not_cached(server, tmp_path):
    base, handler = server
    handler.files["/w.npz"] = PAYLOAD
    handler.mode["/w.npz"] = "html"
    with pytest.raises(ValueError, match="HTML page") as e:
        hub.download(f"{base}/w.npz", cache=tmp_path)
    assert f"{base}/w.npz" in str(e.value)
    assert not (tmp_path / "w.npz").exists() and not (tmp_path / "w.npz.part").exists()


def test_cut_stream_without_content_length_is_not_cached(server, tmp_path):
    base, handler = server
    handler.files["/w.npz"] = PAYLOAD
    handler.mode["/w.npz"] = "cut"
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        hub.download(f"{base}/w.npz", cache=tmp_path)
    assert not (tmp_path / "w.npz").exists()
    assert "incomplete" in str(e.value) or "md5" in str(e.value)


def test_gcs_md5_mismatch_is_refused(server, tmp_path):
    base, handler = server
    handler.files["/w.npz"] = PAYLOAD
    handler.mode["/w.npz"] = "bad_md5"
    with pytest.raises(ValueError, match="MD5"):
        hub.download(f"{base}/w.npz", cache=tmp_path)
    assert not (tmp_path / "w.npz").exists()
    handler.mode.clear()  # the right md5 passes
    assert hub.download(f"{base}/w.npz", cache=tmp_path).read_bytes() == PAYLOAD


def test_damaged_cache_file_is_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("VITKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("VITKIT_OFFLINE", "1")
    tag = get_pretrained("vit_tiny_patch16_224")
    (tmp_path / "weights").mkdir()
    damaged = tmp_path / "weights" / tag.filename
    damaged.write_bytes(PAYLOAD[: len(PAYLOAD) // 3])  # what a cut download installed before
    with pytest.raises(ValueError) as e:
        vitkit.create_model("vit_tiny_patch16_224", pretrained=True)
    msg = str(e.value)
    assert str(damaged) in msg and "delete" in msg and "BadZipFile" not in type(e.value).__name__


# ------------------------------------------------------------- 6. the failure message
def test_failure_message_mentions_a_partial_download_only_when_there_is_one(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        hub.download("http://127.0.0.1:9/x.npz", cache=tmp_path, timeout=2)
    assert "partial" not in str(e.value) and "kept" not in str(e.value)
    (tmp_path / "y.npz.part").write_bytes(b"\0" * 1234)
    with pytest.raises(FileNotFoundError, match="partial download y.npz.part \\(1234 bytes\\) is kept"):
        hub.download("http://127.0.0.1:9/y.npz", cache=tmp_path, timeout=2)
