"""Self-supervised pre-training (vitkit.train.pretrain): the ViT paper's masked patch prediction (App.
B.1.2), MAE (He et al. 2022) and SimMIM (Xie et al. 2022) on the one Trainer.

- MPP: 3-bit mean-colour bins of known colours, the 50% / 80-10-10 corruption over many draws, and the
  encoder's input being exactly the corruption drawn;
- MAE: round(N·(1 − 0.75)) visible tokens enter the encoder's blocks, and nothing of the masked
  patches reaches the encoder (perturbed masked pixels: same output; their gradient: zero);
- SimMIM: block masks of the ratio asked, the Swin mask-token substitution after the patch embedding;
- a pre-training run interrupted (Ctrl-C in-process) and resumed ends bit-identical to an uninterrupted one;
- the run's checkpoint-last.pt goes into ``vitkit train weights=...``, ``load_weights`` and ``vitkit
  fewshot --weights`` as an encoder (pre-training parts dropped, listed in the report);
- ``vitkit pretrain`` runs, resumes, and refuses to change what a resumed run computes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit import create_model, load_weights
from vitkit.cli import main
from vitkit.data import SubsetView, eval_transform, train_transform
from vitkit.data.mnist import EmbeddedMNIST
from vitkit.evaluate.classification import evaluate_checkpoint, model_from_checkpoint
from vitkit.train import apply_overrides, get_recipe
from vitkit.train.checkpoint import load_checkpoint
from vitkit.train.recipes import PRETRAIN_RECIPES, describe_pretrain_recipe, get_pretrain_recipe
from vitkit.train.loop import Trainer, build_model
from vitkit.train.pretrain import (MaskedImageModel, PretrainConfig, block_mask, color_bins, mpp_corruption,
                                   mpp_targets, patchify, pretrain, random_masking)

MEAN = STD = (0.5, 0.5, 0.5)


def tiny_vit(seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)  # the same initial encoder each call (runs compared must start alike)
    return create_model("vit_micro_patch4_32", num_classes=0, depth=1, embed_dim=16, num_heads=2, mlp_dim=32, **kw)


def tiny_swin(seed: int = 0, num_classes: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("swin_micro_patch2_window4_32", num_classes=num_classes, embed_dim=8, depths=(1, 1, 1, 1),
                        num_heads=(1, 1, 1, 1))


def digits(n_train: int = 64, n_val: int = 16) -> tuple[SubsetView, SubsetView]:
    """Real MNIST digits (the embedded sample) as 32×32 RGB images."""
    tr, va = EmbeddedMNIST("train", mode="RGB"), EmbeddedMNIST("val", mode="RGB")
    return (SubsetView(tr, range(n_train), train_transform(32, mean=MEAN, std=STD, preset="cifar")),
            SubsetView(va, range(n_val), eval_transform(32, mean=MEAN, std=STD)))


def image_folder(root: Path, per_class: int, seed: int) -> Path:
    """train/ and test/ with two classes of ``per_class`` random 32×32 PNGs each."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def cfg(**kw) -> PretrainConfig:
    base = dict(max_steps=4, batch_size=8, lr=1e-3, warmup_steps=1, num_workers=0, progress=False, threads=1,
                eval_every=1)
    base.update(kw)
    return PretrainConfig(**base).validate()


# ------------------------------------------------------------------------------------- MPP
def test_mpp_colour_bins_of_known_colours() -> None:
    """3 bits a channel, red most significant: ids r·64 + g·8 + b (ViT App. B.1.2: 512 colours)."""
    colours = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.25, 0.126],
                            [0.124, 0.126, 0.999]])
    assert color_bins(colours).tolist() == [0, 511, 448, 56, 7, 4 * 64 + 2 * 8 + 1, 0 * 64 + 1 * 8 + 7]
    assert color_bins(colours, bits=1).tolist() == [0, 7, 4, 2, 1, 4, 1]


def test_mpp_targets_are_the_patch_mean_colour() -> None:
    """A 8×8 image of four 4×4 patches: plain red, plain white, half black/half white (mean 0.5: bin
    4 per channel) and a gradient; the 4×4 variant and the pixel target have their own shapes."""
    img = torch.zeros(1, 3, 8, 8)
    img[0, 0, :4, :4] = 1.0                    # patch 0: red
    img[0, :, :4, 4:] = 1.0                    # patch 1: white
    img[0, :, 4:6, :4] = 1.0                   # patch 2: top half white, bottom half black
    img[0, 2, 4:, 4:] = torch.linspace(0, 1, 4).repeat(4, 1)  # patch 3: blue ramp, mean 0.5
    assert mpp_targets(img, 4, "color").tolist() == [[448, 511, 4 * 64 + 4 * 8 + 4, 4]]
    fine = mpp_targets(img, 4, "color_4x4")
    assert fine.shape == (1, 4, 16) and fine[0, 0].eq(448).all() and fine[0, 1].eq(511).all()
    assert fine[0, 3].tolist() == [0, 2, 5, 7] * 4  # each pixel's own 3-bit blue
    assert torch.equal(mpp_targets(img, 4, "pixels"), patchify(img, 4)) and patchify(img, 4).shape == (1, 4, 48)


def test_mpp_corruption_proportions() -> None:
    """Exactly 50% of each image's patches corrupted; of those 80% [mask], 10% random, 10% kept."""
    g = torch.Generator().manual_seed(0)
    corrupt, action = mpp_corruption(4000, 64, 0.5, (0.8, 0.1, 0.1), generator=g)
    assert corrupt.sum(1).eq(32).all()
    assert action[~corrupt].eq(-1).all()
    picked = action[corrupt]
    shares = [picked.eq(a).float().mean().item() for a in (0, 1, 2)]
    assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.005)  # 128,000 draws: ±0.005 is > 4 sigma


def test_mpp_encoder_sees_the_corruption_drawn() -> None:
    """The tokens entering the encoder's blocks: [mask] embedding + position where action 0, another
    patch embedding of the batch + position where 1, the patch's own embedding where 2 or uncorrupted."""
    enc = tiny_vit()
    m = MaskedImageModel(enc, PretrainConfig(method="mpp"))
    x = torch.randn(4, 3, 32, 32)
    seen = {}
    original = enc.forward_tokens
    enc.forward_tokens = lambda t, **kw: (seen.setdefault("t", t.detach().clone()), original(t, **kw))[1]
    out = m(x, generator=torch.Generator().manual_seed(3))
    corrupt, action = mpp_corruption(4, 64, 0.5, (0.8, 0.1, 0.1), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        patches = enc.patch_tokens(x).reshape(4, 64, -1)
        pos = enc.pos_embed[:, 1:]
        got = seen["t"][:, 1:] - pos
        masked = got[action == 0]
        assert torch.allclose(masked, m.pretrain.mask_token[0].expand(len(masked), -1), atol=1e-6)
        keep = (action == 2) | ~corrupt
        assert torch.allclose(got[keep], patches[keep], atol=1e-6)
        bank = patches.reshape(-1, patches.shape[-1])
        for row in got[action == 1]:  # each a patch embedding from somewhere in the batch
            assert (bank - row).abs().amax(1).min() < 1e-5
    assert out["masked"].item() == 0.5 and torch.isfinite(out["loss"])


# ------------------------------------------------------------------------------------- MAE
def test_mae_encoder_runs_on_the_visible_tokens_only() -> None:
    enc = tiny_vit()
    m = MaskedImageModel(enc, PretrainConfig(method="mae", mask_ratio=0.75))
    shapes = []
    enc.blocks[0].register_forward_pre_hook(lambda mod, args: shapes.append(tuple(args[0].shape)))
    x = torch.randn(3, 3, 32, 32, requires_grad=True)
    latent, restore, mask = m.encode_visible(x, torch.Generator().manual_seed(1))
    visible = round(64 * (1 - 0.75))
    assert shapes == [(3, 1 + visible, 16)] and latent.shape == (3, 1 + visible, 16)
    assert mask.sum(1).eq(64 - visible).all()

    # nothing of a masked patch reaches the encoder: zero gradient there, non-zero on visible patches
    latent.square().sum().backward()
    g = patchify(x.grad, 4).abs().sum(-1)  # (B, 64) per patch
    assert g[mask.bool()].eq(0).all() and g[~mask.bool()].gt(0).all()

    # and other pixels under the masked patches change nothing
    noise = torch.randn_like(x) * 10
    px = mask.reshape(3, 8, 8).repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None]
    latent2, _, mask2 = m.encode_visible((x + noise * px).detach(), torch.Generator().manual_seed(1))
    assert torch.equal(mask2, mask) and torch.allclose(latent2, latent.detach(), atol=1e-6)


def test_mae_masking_restores_order_and_loss_is_on_masked_patches() -> None:
    keep, restore, mask = random_masking(5, 64, 0.75, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert keep.shape == (5, 16) and torch.equal(mask.gather(1, keep), torch.zeros(5, 16))
    m = MaskedImageModel(tiny_vit(), PretrainConfig(method="mae"))
    x = torch.randn(2, 3, 32, 32)
    a = m(x, generator=torch.Generator().manual_seed(4))["loss"]
    # the loss recomputed by hand: squared error to per-patch normalised pixels, averaged over the
    # masked patches only (the mean over all patches differs)
    latent, restore, mask = m.encode_visible(x, torch.Generator().manual_seed(4))
    pred = m.pretrain(latent, restore)
    t = patchify(x, 4)
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6) ** 0.5
    per = ((pred - t) ** 2).mean(-1)
    assert torch.allclose(a, (per * mask).sum() / mask.sum(), atol=1e-6)
    assert not torch.allclose(a, per.mean(), atol=1e-4)


# ---------------------------------------------------------------------------------- SimMIM
def test_simmim_block_mask_ratio_and_units() -> None:
    m = block_mask(50, (16, 16), 4, 0.6, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert m.shape == (50, 16, 16) and m.sum((1, 2)).eq(10 * 16).all()  # round(0.6·16) squares of 16 tokens
    units = m.reshape(50, 4, 4, 4, 4)  # (B, gh, unit, gw, unit): constant inside a square
    assert torch.equal(units.amax((2, 4)), units.amin((2, 4)))


def test_swin_mask_token_replaces_patch_tokens() -> None:
    enc = tiny_swin().eval()
    token = torch.randn(1, 1, 8)
    x1, x2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    zeros, ones = torch.zeros(2, 16, 16), torch.ones(2, 16, 16)
    with torch.no_grad():
        assert torch.allclose(enc.forward_features_masked(x1, zeros, token), enc.forward_features(x1), atol=1e-6)
        # every token replaced: the image no longer matters
        a, b = enc.forward_features_masked(x1, ones, token), enc.forward_features_masked(x2, ones, token)
        assert torch.allclose(a, b)
    m = MaskedImageModel(enc, PretrainConfig(method="simmim", mask_patch_size=8))
    out = m(x1, generator=torch.Generator().manual_seed(0))
    assert out["masked"].item() == pytest.approx(round(0.6 * 16) / 16) and torch.isfinite(out["loss"])


@pytest.mark.parametrize("method, encoder", [("mae", tiny_vit), ("mpp", tiny_vit), ("simmim", tiny_vit),
                                             ("simmim", tiny_swin)])
def test_every_parameter_gets_a_gradient_under_bf16_autocast(method: str, encoder) -> None:
    """DDP (find_unused_parameters off) needs a gradient for every parameter each step; the mask
    tokens mix with bf16 activations under autocast (precision=bf16) and the loss stays float32."""
    m = MaskedImageModel(encoder(), PretrainConfig(method=method, mask_patch_size=8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m(torch.randn(4, 3, 32, 32))["loss"]
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert [n for n, p in m.named_parameters() if p.grad is None] == []


def test_methods_refuse_what_they_cannot_do() -> None:
    with pytest.raises(ValueError, match="simmim"):
        MaskedImageModel(tiny_swin(), PretrainConfig(method="mae"))
    with pytest.raises(ValueError, match="mpp_replace"):
        PretrainConfig(mpp_replace=(0.8, 0.1, 0.2)).validate()
    with pytest.raises(ValueError, match="method"):
        PretrainConfig(method="byol").validate()


@pytest.mark.parametrize("kind", ["none", "learned_2d", "sincos_2d", "relative", "rope_2d"])
def test_every_position_embedding_pretrains_or_is_refused_by_name(kind: str) -> None:
    """MPP and SimMIM encode the whole grid, so every ``pos_embed`` works (a finite loss, gradients to
    the encoder); MAE encodes a subset of tokens, which position inside attention cannot place: named."""
    x = torch.rand(2, 3, 32, 32)
    for method in ("mpp", "simmim") + (("mae",) if kind not in ("relative", "rope_2d") else ()):
        m = MaskedImageModel(tiny_vit(pos_embed=kind), PretrainConfig(method=method))
        loss = m(x)["loss"]
        loss.backward()
        assert torch.isfinite(loss) and m.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0, method
    if kind in ("relative", "rope_2d"):
        with pytest.raises(ValueError, match="visible patches only.*method=mpp or simmim"):
            MaskedImageModel(tiny_vit(pos_embed=kind), PretrainConfig(method="mae"))


# ---------------------------------------------------------------------------- the Trainer
@pytest.mark.parametrize("method, encoder", [("mae", tiny_vit), ("mpp", tiny_vit), ("simmim", tiny_swin)])
def test_resumed_pretraining_is_bit_identical(tmp_path: Path, method: str, encoder) -> None:
    """Ctrl-C at step 3 of 6 (in-process), resume: the final weights, optimiser moments and metrics
    equal the uninterrupted run's exactly (masks come from the restored RNG). The checkpoint then
    loads into a classifier of the same architecture (head zero-initialised)."""
    c = cfg(method=method, max_steps=6, epochs=2, batch_size=8, eval_every=1)
    train_set, val_set = digits(32, 8)  # 4 steps an epoch: the cut falls inside epoch 1
    whole = pretrain(c, tmp_path / "whole", model=encoder(), train_set=train_set, val_set=val_set)

    def interrupt(trainer: Trainer) -> None:
        if trainer.global_step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(c, tmp_path / "cut", model=encoder(), train_set=train_set, val_set=val_set, callbacks=[interrupt])
    assert load_checkpoint(tmp_path / "cut" / "checkpoint-last.pt")["global_step"] == 3
    resumed = pretrain(c, tmp_path / "cut", resume=True, model=encoder(), train_set=train_set, val_set=val_set)
    a = load_checkpoint(tmp_path / "whole" / "checkpoint-last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoint-last.pt")
    assert a["model"].keys() == b["model"].keys() and any(k.startswith("pretrain.") for k in a["model"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    timing = ("seconds", "images_per_second")
    drop = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert drop(resumed.metrics) == drop(whole.metrics) and whole.global_step == 6 and len(whole.metrics) == 2
    assert whole.metrics[-1]["train_loss"] < whole.metrics[0]["train_loss"] or method == "simmim"
    classifier = encoder()
    classifier.reset_classifier(3)
    report = load_weights(classifier, tmp_path / "whole" / "checkpoint-last.pt")
    assert report.ok and report.head_replaced and any(d.startswith("pretrain.mask_token") for d in report.dropped)


def test_pretrained_encoder_loads_into_train_and_fewshot(tmp_path: Path) -> None:
    """checkpoint-last.pt of a pre-training run is an encoder checkpoint: the classification Trainer's
    ``weights=`` (a zero-initialised 10-class head), ``load_weights`` (pretrain.* dropped, each with
    the reason) and ``vitkit fewshot --weights`` (rebuilt from the checkpoint's record) take it."""
    train_set, val_set = digits(16, 8)
    run = tmp_path / "mpp"
    pretrain(cfg(method="mpp", max_steps=2, model="vit_micro_patch4_32"), run, train_set=train_set, val_set=val_set)
    ckpt_path = run / "checkpoint-last.pt"
    ck = load_checkpoint(ckpt_path)
    assert ck["task"] == "pretrain" and ck["model_name"] == "vit_micro_patch4_32"
    assert ck["model_class"] == "vitkit.models.vit.VisionTransformer" and ck["model_kwargs"]["num_classes"] == 0
    enc_state = {k[len("encoder."):]: v for k, v in ck["model"].items() if k.startswith("encoder.")}

    tc = apply_overrides(get_recipe("cifar10_vit_cpu"), dict(weights=str(ckpt_path)))
    model, _ = build_model(tc, 10)  # what `vitkit train ... weights=RUN/checkpoint-last.pt` builds
    assert model.num_classes == 10 and torch.equal(model.head.weight, torch.zeros(10, 64))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in enc_state.items())

    report = load_weights(create_model("vit_micro_patch4_32"), ckpt_path)
    assert report.ok and report.head_replaced and len(report.loaded) == len(enc_state)
    dropped = [d for d in report.dropped if d.startswith("pretrain.")]
    assert {d.split(" ")[0] for d in dropped} == {k for k in ck["model"] if k.startswith("pretrain.")}
    assert all("pre-training part" in d for d in dropped)

    encoder, _ = model_from_checkpoint(ckpt_path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = create_model("vit_micro_patch4_32", num_classes=0)
        ref.load_state_dict(enc_state)
        assert torch.allclose(encoder.forward_features(x), ref.eval().forward_features(x), atol=1e-5)

    folder = image_folder(tmp_path / "imgs", 3, 0)
    out = tmp_path / "fewshot.json"
    assert main(["fewshot", "--weights", str(ckpt_path), "--data", str(folder), "--shots", "1", "--seeds", "2",
                 "--no-logreg", "--no-probe", "--device", "cpu", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"] == "vit_micro_patch4_32" and doc["num_test"] == 6 and "1" in doc["results"][0]["shots"]
    with pytest.raises(ValueError, match="no classifier.*vitkit fewshot"):
        evaluate_checkpoint(ckpt_path, str(folder), split="test", num_workers=0)


def test_cli_pretrain_runs_and_resumes(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "imgs", 4, 1)
    out = tmp_path / "run"
    args = ["pretrain", "--method", "mae", "--data", str(folder), "--out", str(out), "max_steps=2", "batch_size=4",
            "num_workers=0", "progress=false", "model=vit_micro_patch4_32"]
    assert main(args) == 0
    doc = json.loads((out / "config.json").read_text())
    assert doc["recipe"] == "mae_cifar10" and doc["method"] == "mae" and doc["max_steps"] == 2
    assert main(args) == 2  # the folder holds a run: refused
    assert main(["pretrain", "--out", str(out), "--resume", "mask_ratio=0.5"]) == 2  # would change what it computes
    assert main(["pretrain", "--out", str(out), "--resume", "max_steps=3", "num_workers=0"]) == 2
    assert main(["pretrain", "--out", str(out), "--resume", "num_workers=0"]) == 0  # already done: nothing to do


def _gloo() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_gloo_available()


@pytest.mark.slow  # four processes start (about a minute of CPU on one core)
@pytest.mark.skipif(not _gloo(), reason="torch.distributed with gloo is not available")
@pytest.mark.parametrize("method, parallel", [("mae", "fsdp"), ("mpp", "ddp")])
def test_pretraining_runs_under_torchrun(tmp_path: Path, method: str, parallel: str) -> None:
    """``torchrun --nproc_per_node=2 -m vitkit.cli pretrain`` (gloo, CPU): DDP and FSDP (encoder and
    decoder blocks sharded) train the wrapper and write one whole checkpoint that loads as an encoder."""
    import os
    import subprocess
    import sys

    folder = image_folder(tmp_path / "imgs", 4, 2)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "vitkit.cli", "pretrain", "--method", method, "--data", str(folder), "--out",
                          str(tmp_path / "run"), "max_steps=2", "batch_size=4", "num_workers=0", "progress=false",
                          "threads=1", f"parallel={parallel}"], env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    ck = load_checkpoint(tmp_path / "run" / "checkpoint-last.pt")
    assert (ck["world_size"], ck["parallel"], ck["global_step"]) == (2, parallel, 2)
    assert load_weights(create_model("vit_micro_patch4_32"), tmp_path / "run" / "checkpoint-last.pt").ok


@pytest.mark.parametrize("name", sorted(PRETRAIN_RECIPES))
def test_every_pretraining_recipe_is_valid_and_says_how_to_run_it(name: str) -> None:
    c = get_pretrain_recipe(name).validate()
    doc = describe_pretrain_recipe(name)
    assert all(word in doc for word in ("Command:", "Time:", "Accuracy:")) and f"pretrain --recipe {name}" in doc
    assert c.model in __import__("vitkit").list_models()
    assert type(c).from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_a_signal_ends_both_training_commands_with_128_plus_its_number(tmp_path: Path, monkeypatch, command) -> None:
    """`vitkit pretrain` and `vitkit train` share one runner: SIGTERM (the run saved itself) exits 143,
    as schedulers expect, not 130 (pretrain said 130 for every signal)."""
    import signal

    import vitkit.train
    import vitkit.train.pretrain
    from vitkit.cli import main
    from vitkit.train.errors import Interrupted

    def stopped(*args, **kwargs):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(vitkit.train.pretrain, "pretrain", stopped)
    monkeypatch.setattr(vitkit.train, "train", stopped)
    extra: list[str] = []  # train: the embedded MNIST demo; pretrain: its default recipe
    assert main([command, "--out", str(tmp_path / "run"), *extra, "max_steps=1"]) == 128 + signal.SIGTERM


@pytest.mark.parametrize("damage", ["", "{\"method\": \"ma", None])
def test_a_damaged_pretraining_config_json_is_recovered_from_the_checkpoint(tmp_path: Path, damage, caplog) -> None:
    """Pre-training resume reads its config as training resume does: an empty, cut or missing
    config.json is taken from checkpoint-last.pt with a warning naming both files."""
    from vitkit.train.pretrain import load_pretrain_config

    saved = get_pretrain_recipe("mae_cifar10")
    torch.save({"config": saved.to_dict(), "recipe": "mae_cifar10"}, tmp_path / "checkpoint-last.pt")
    if damage is not None:
        (tmp_path / "config.json").write_text(damage)
    with caplog.at_level("WARNING", logger="vitkit"):
        cfg, recipe = load_pretrain_config(tmp_path)
    assert (cfg.to_dict(), recipe) == (saved.to_dict(), "mae_cifar10")
    assert "config.json" in caplog.text and "checkpoint-last.pt" in caplog.text
