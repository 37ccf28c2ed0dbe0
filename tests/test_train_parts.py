"""Configs and recipes, optimiser groups, layer decay, schedules, EMA, checkpoints, the CLI's errors."""
from __future__ import annotations

import inspect
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from vitkit import create_model
from vitkit.cli import main
from vitkit.train import RECIPES, TrainConfig, apply_overrides, get_recipe
from vitkit.train.checkpoint import get_rng_state, load_checkpoint, save_atomic, set_rng_state
from vitkit.train.ema import ModelEma
from vitkit.train.optim import WarmupDecay, build_optimizer, layer_ids, param_groups


# ------------------------------------------------------------------------------------- config
def test_overrides_convert_by_field_type() -> None:
    cfg = apply_overrides(get_recipe("mnist_demo"), ["lr=3e-4", "epochs=7", "betas=0.9,0.95", "compile=false",
                                                     "channels_last=yes", "data=/x/y", "scale=(0.2, 1)"])
    assert (cfg.lr, cfg.epochs, cfg.betas, cfg.compile, cfg.channels_last, cfg.data) == \
        (3e-4, 7, (0.9, 0.95), False, True, "/x/y")
    assert cfg.scale == (0.2, 1.0) and isinstance(cfg.epochs, int)
    assert type(cfg).__name__ == "MnistDemo"


@pytest.mark.parametrize("item, message", [
    ("lrr=1", "unknown config field 'lrr'; did you mean lr"),
    ("zzz=1", "valid fields: model"),
    ("epochs=2.5", "epochs='2.5': expected an integer"),
    ("lr=fast", "lr='fast': expected a number"),
    ("compile=maybe", "expected a boolean"),
    ("betas=0.9", "expected 2 comma-separated numbers"),
    ("optimizer=lamb", "optimizer='lamb': choose one of"),
    ("lr=-1", "lr=-1.0: must be positive"),
    ("ema_decay=1", "ema_decay=1.0: must be in [0, 1)"),
    ("layer_decay=0", "layer_decay=0.0: must be in (0, 1]"),
    ("accum_steps=3", "batch_size=32: must be divisible by accum_steps=3"),
    ("scale=0.9,0.1", "scale=(0.9, 0.1)"),
    ("lr", "not of the form field=value"),
])
def test_bad_config_fields_name_the_problem(item: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        apply_overrides(get_recipe("mnist_demo"), [item])
    assert message in str(err.value)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_valid_and_says_how_to_run_it(name: str) -> None:
    cfg = get_recipe(name).validate()
    doc = inspect.getdoc(type(cfg))
    for word in ("Command:", "Time:", "Accuracy:"):
        assert word in doc, f"{name} docstring lacks {word}"
    assert cfg.model in __import__("vitkit").list_models()
    roundtrip = type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert roundtrip == cfg


def test_paper_recipes_match_the_papers() -> None:
    ft = get_recipe("vit_finetune")
    assert (ft.optimizer, ft.momentum, ft.weight_decay, ft.clip_grad, ft.batch_size, ft.img_size, ft.zero_init_head,
            ft.schedule) == ("sgd", 0.9, 0.0, 1.0, 512, 384, True, "cosine")
    pt = get_recipe("vit_pretrain")
    assert (pt.betas, pt.weight_decay, pt.clip_grad, pt.warmup_steps, pt.schedule) == ((0.9, 0.999), 0.1, 1.0, 10_000, "linear")
    sw = get_recipe("swin_imagenet")
    assert (sw.optimizer, sw.lr, sw.lr_base_batch, sw.weight_decay, sw.mixup, sw.cutmix, sw.label_smoothing,
            sw.random_erasing, sw.randaugment, sw.epochs, sw.warmup_epochs) == \
        ("adamw", 1e-3, 1024, 0.05, 0.8, 1.0, 0.1, 0.25, 9, 300, 20.0)


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["train", "--out", str(tmp_path / "r"), "warmup=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config field 'warmup'; did you mean" in err and "Traceback" not in err
    assert main(["train", "--recipe", "cifar10_vt"]) == 2
    assert "did you mean cifar10_vit" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "--resume needs the --out folder of an earlier run" in capsys.readouterr().err
    assert main(["train", "--recipe", "swin_imagenet", "--show-config"]) == 2
    assert "pass --data PATH" in capsys.readouterr().err
    assert main(["train", "--model", "vit_tiny_patch4_32", "--epochs", "3", "--show-config", "mixup=0.5"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["recipe"], shown["model"], shown["epochs"], shown["mixup"]) == ("mnist_demo", "vit_tiny_patch4_32", 3, 0.5)


# ---------------------------------------------------------------------------------- optimiser
def test_no_weight_decay_on_norms_biases_position_and_bias_tables() -> None:
    for name, expect_nowd in (("vit_micro_patch4_32", ("pos_embed", "cls_token")),
                              ("swin_micro_patch2_window4_32", ("relative_position_bias_table",))):
        model = create_model(name)
        groups = param_groups(model, weight_decay=0.05)
        nowd = {n for g in groups if g["weight_decay"] == 0 for n in g["param_names"]}
        wd = {n for g in groups if g["weight_decay"] == 0.05 for n in g["param_names"]}
        assert nowd | wd == {n for n, _ in model.named_parameters()} and not nowd & wd
        for n in nowd:
            assert n.endswith(".bias") or "norm" in n or any(s in n for s in expect_nowd), n
        for n in wd:
            assert n.endswith(".weight") and "norm" not in n, n
        assert any(expect_nowd[0] in n for n in nowd)


def test_layer_decay_scales_grow_with_depth() -> None:
    vit = create_model("vit_micro_patch4_32")  # 6 blocks
    L, depth = layer_ids(vit)
    assert L == 6 and depth("cls_token") == depth("patch_embed.proj.weight") == 0
    assert depth("blocks.0.attn.qkv.weight") == 1 and depth("blocks.5.mlp.fc2.bias") == 6 and depth("head.weight") == 7
    scales = {n: g["lr_scale"] for g in param_groups(vit, 0.05, layer_decay=0.5) for n in g["param_names"]}
    assert scales["head.weight"] == 1.0 and scales["blocks.5.norm1.weight"] == 0.5
    assert scales["pos_embed"] == 0.5 ** 7
    swin = create_model("swin_micro_patch2_window4_32")  # depths (2, 2, 2, 2)
    L, depth = layer_ids(swin)
    assert L == 8 and depth("stages.1.blocks.0.attn.qkv.weight") == 3 and depth("stages.1.downsample.reduction.weight") == 2
    assert depth("norm.weight") == depth("head.bias") == 9
    opt = build_optimizer(param_groups(vit, 0.05, 0.5), "adamw", 1e-3)
    assert max(g["lr"] for g in opt.param_groups) == 1e-3 and min(g["lr"] for g in opt.param_groups) == 1e-3 * 0.5 ** 7


def test_warmup_then_decay() -> None:
    s = WarmupDecay(total=110, warmup=10, kind="cosine", start=0.1, end=0.01)
    assert s(0) == pytest.approx(0.1) and s(5) == pytest.approx(0.55) and s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.01 + 0.99 * 0.5) and s(110) == pytest.approx(0.01)
    lin = WarmupDecay(total=20, warmup=0, kind="linear")
    assert [lin(k) for k in (0, 10, 20)] == pytest.approx([1.0, 0.5, 0.0])
    assert WarmupDecay(total=20, warmup=5, kind="constant")(15) == 1.0


def test_ema_follows_the_formula() -> None:
    model = torch.nn.Linear(3, 2)
    ema = ModelEma(model, decay=0.9, warmup=False)
    start = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, 0.9 * start + 0.1 * model.weight)
    warm = ModelEma(model, decay=0.9999)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)


# -------------------------------------------------------------------------------- checkpoints
def test_save_atomic_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    save_atomic({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_atomic({"step": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_rng_state_round_trip(tmp_path: Path) -> None:
    state = get_rng_state()
    save_atomic({"rng": state}, tmp_path / "rng.pt")
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not math.isnan(b[2])


def test_config_dict_round_trip() -> None:
    cfg = TrainConfig(betas=(0.8, 0.9))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown config field"):
        TrainConfig.from_dict({"nope": 1})


def test_cli_train_then_resume_checks_the_saved_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``vitkit train`` on an image folder, then ``--resume``: the saved config is reloaded (recipe
    included), a changed training field is refused, runtime fields may change."""
    from PIL import Image

    from vitkit.data import EmbeddedMNIST

    digits = EmbeddedMNIST("train")
    for i in range(24):
        d = tmp_path / "data" / f"class{digits.targets[i] % 3}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digits.load(i)[0].numpy()).save(d / f"{i}.png")
    out = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "data"), "--out", str(out), "--batch-size", "8", "--epochs", "1",
            "val_fraction=0.25", "num_workers=0", "progress=false"]
    assert main(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["recipe"] == "mnist_demo" and cfg["resolved"]["classes"] == ["class0", "class1", "class2"]
    assert cfg["resolved"]["train_images"] + cfg["resolved"]["val_images"] == 24
    assert main(args) == 2 and "already holds a run" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "weight_decay=0.1"]) == 2  # lr, clip_grad may change
    assert "cannot change weight_decay when resuming" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "num_workers=1"]) == 0  # already complete: nothing to do
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_keep_freed_memory_makes_large_blocks_reuse_the_heap():
    """After keep_freed_memory(), steps that allocate and free the same large tensors (here three of
    40 MB, above glibc's largest automatic mmap threshold) reuse the heap: no page faults once the
    heap has grown, where the default allocator maps and faults every block in again (glibc only)."""
    import resource
    import subprocess
    import sys

    code = (
        "import resource, torch, sys\n"
        "from vitkit.train.allocator import keep_freed_memory\n"
        "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
        "def step():\n"
        "    for t in [torch.empty(10 << 20) for _ in range(3)]: t.fill_(1.0)\n"
        "for _ in range(3): step()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(3): step()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {}
    for mode in ("keep", "default"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True)
        if out.returncode != 0 and "AssertionError" in out.stderr:
            pytest.skip("not glibc: mallopt unavailable")
        assert out.returncode == 0, out.stderr
        faults[mode] = int(out.stdout.strip())
    pages = 3 * 3 * (40 << 20) // resource.getpagesize()  # three steps of three 40 MB tensors
    assert faults["keep"] < pages // 3, faults  # mostly reused from the heap (small allocations fragment it a little)
    assert faults["default"] > 3 * faults["keep"] + 16, faults  # mapped afresh every step (huge pages or not)
