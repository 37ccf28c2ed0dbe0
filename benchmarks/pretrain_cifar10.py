"""Label-free pre-training on CIFAR-10, then few-shot linear evaluation and a short fine-tune,
against the same model from scratch (issue 16; docs/pretraining.md).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pretrain_cifar10.py --data /tmp/vitkit-data
    python benchmarks/pretrain_cifar10.py --data /tmp/vitkit-data --quick   # a 2-minute smoke run

``--data`` is the image-folder copy of CIFAR-10 (train/<class>/*.jpg 50,000, test/<class>/*.jpg
10,000; ../shared/data/cifar10/cifar10-jpg.tar.gz unpacked). Every stage runs in this one process,
one torch thread, one after the other:

1. MAE and MPP pre-training of ViT-micro/4 (vit_micro_patch4_32: 6 blocks, D=64, 65 tokens at 32×32)
   on the 50,000 training images, labels never read (``vitkit.train.pretrain.pretrain``, the Trainer);
2. few-shot linear evaluation (ViT §4.1 closed form: whitened features, ridge λ=2^10, 1/5/10/25
   shots, 5 draws) of the frozen encoders — MAE, MPP and the random initialisation — rebuilt from
   ``checkpoint-last.pt`` as ``vitkit fewshot --weights`` does, features of the [class] token (what
   ``vitkit fewshot`` uses) and of the mean patch token;
3. a short fine-tune (``recipe cifar10_vit_cpu`` with ``weights=RUN/checkpoint-last.pt``, the path
   ``vitkit train`` takes) of each, and of the same model from scratch with the same budget, 2 seeds.

Images are decoded once into a uint8 tensor (cached beside the results as a .pt file under /tmp)
and augmented on the fly as the ``cifar`` preset does (4-pixel reflect padding, random 32×32 crop,
horizontal flip): decoding 32×32 JPEGs every epoch would cost more CPU than MAE's encoder.
Writes benchmarks/results/pretrain_cifar10.json (raw, per stage, with wall and CPU seconds and the
load average) and .md (the tables). A stage already in the JSON is not run again (restartable).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset

HERE = Path(__file__).resolve().parent
MODEL = "vit_micro_patch4_32"
MEAN = STD = (0.5, 0.5, 0.5)  # the row's preprocessing


# ------------------------------------------------------------------------------------ data
def decode(root: Path, split: str, cache: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(N, 3, 32, 32) uint8 images, (N,) labels and the class names of ``root/split``."""
    if cache.is_file():
        d = torch.load(cache, weights_only=True)
        return d["x"], d["y"], list(d["classes"].split(","))
    from vitkit.data import build_dataset

    ds = build_dataset(root, split, None)
    xs = torch.empty(len(ds), 3, 32, 32, dtype=torch.uint8)
    import numpy as np

    for i in range(len(ds)):
        img, _ = ds[i]
        xs[i] = torch.from_numpy(np.asarray(img.convert("RGB"))).permute(2, 0, 1)
    y = torch.tensor(ds.targets, dtype=torch.long)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x": xs, "y": y, "classes": ",".join(ds.classes)}, cache)
    return xs, y, list(ds.classes)


class Images(Dataset):
    """Decoded CIFAR images; ``train``: the cifar preset's pad-4 reflect random crop and flip."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, classes: list[str], train: bool,
                 index: list[int] | None = None) -> None:
        self.x, self.y, self.classes, self.train = x, y, classes, train
        self.index = index if index is not None else list(range(len(x)))
        self.targets = [int(y[i]) for i in self.index]
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        i = i[0] if isinstance(i, tuple) else i  # the Trainer's sampler yields (index, epoch)
        j = self.index[i]
        img = self.x[j].float() / 255
        if self.train:
            img = torch.nn.functional.pad(img[None], (4, 4, 4, 4), mode="reflect")[0]
            dy, dx = (int(v) for v in torch.randint(0, 9, (2,)))
            img = img[:, dy:dy + 32, dx:dx + 32]
            if torch.rand(()) < 0.5:
                img = img.flip(-1)
        return (img - self.mean) / self.std, self.targets[i]


# --------------------------------------------------------------------------------- stages
def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(results: dict[str, Any], key: str, fn: Callable[[], dict[str, Any]], save: Callable[[], None]) -> dict:
    if key in results:
        logging.info("%s: already done (%s)", key, results[key].get("summary", ""))
        return results[key]
    load0, t0, c0 = os.getloadavg(), time.time(), cpu_seconds()
    out = fn()
    out.update(wall_s=time.time() - t0, cpu_s=cpu_seconds() - c0, load_before=load0, load_after=os.getloadavg())
    results[key] = out
    save()
    logging.info("%s: %.0f s wall, %.0f s CPU, load %.1f -> %.1f", key, out["wall_s"], out["cpu_s"], load0[0],
                 out["load_after"][0])
    return out


def pretrain_stage(method: str, run: Path, data: dict, steps: int, seed: int) -> dict[str, Any]:
    from vitkit.train.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(model=MODEL, method=method, max_steps=steps, batch_size=128, lr=1e-3,
                         betas=(0.9, 0.95), weight_decay=0.05, warmup_steps=max(steps // 20, 1), min_lr=1e-5,
                         schedule="cosine", clip_grad=1.0, seed=seed, num_workers=0, threads=1, progress=False,
                         data="cifar10", eval_every=100, val_examples=2000)
    r = pretrain(cfg, run, resume=(run / "checkpoint-last.pt").is_file(), train_set=data["train"],
                 val_set=data["test"])
    cmd = (f"vitkit pretrain --method {method} --model {MODEL} --data PATH --out {run} max_steps={steps} "
           f"batch_size=128 lr=1e-3 betas=0.9,0.95 weight_decay=0.05 warmup_steps={max(steps // 20, 1)} "
           f"min_lr=1e-5 clip_grad=1 seed={seed} val_examples=2000")
    last = r.metrics[-1]
    return {"command": cmd, "steps": steps, "images_seen": steps * 128, "final": last, "run": str(run),
            "summary": f"val_loss {last.get('val_loss'):.4f}"}


def fewshot_stage(weights: Path | None, data: dict, shots: list[int], draws: int) -> dict[str, Any]:
    from vitkit import create_model
    from vitkit.evaluate.classification import model_from_checkpoint
    from vitkit.evaluate.fewshot import fewshot_evaluate

    if weights is None:
        model = create_model(MODEL, num_classes=0)
    else:
        model, _ = model_from_checkpoint(weights)  # what `vitkit fewshot --weights RUN/checkpoint-last.pt` builds
    model.eval()
    feats = {}
    for split in ("pool", "test"):
        loader = DataLoader(data[split], batch_size=256, shuffle=False)
        tok, gap, ys = [], [], []
        with torch.no_grad():
            for x, y in loader:
                f = model.forward_features(x)
                tok.append(model.forward_head(f, pre_logits=True))
                gap.append(f[:, model.num_prefix_tokens:].mean(1))
                ys.append(y)
        feats[split] = (torch.cat(tok), torch.cat(gap), torch.cat(ys))
    out: dict[str, Any] = {"weights": str(weights) if weights else "random initialisation"}
    for j, name in ((0, "token"), (1, "gap")):
        r = fewshot_evaluate(feats["pool"][j], feats["pool"][2], feats["test"][j], feats["test"][2], shots=shots,
                             seeds=draws, num_classes=10)
        out[name] = r.to_dict()
    out["summary"] = " ".join(f"{k}-shot {100 * out['token']['shots'][str(k)]['mean']:.1f}%" for k in shots)
    return out


def finetune_stage(weights: Path | None, run: Path, data: dict, steps: int, seed: int) -> dict[str, Any]:
    from vitkit.train import apply_overrides, get_recipe, train

    fields = dict(max_steps=steps, warmup_steps=max(steps // 10, 1), seed=seed, num_workers=0, threads=1,
                  progress=False, weights=str(weights) if weights else "")
    cfg = apply_overrides(get_recipe("cifar10_vit_cpu"), fields)
    r = train(cfg, run, resume=(run / "checkpoint-last.pt").is_file(), recipe="cifar10_vit_cpu",
              train_set=data["train"], val_set=data["test"])
    last = r.metrics[-1]
    w = f" weights={weights}" if weights else ""
    cmd = (f"vitkit train --recipe cifar10_vit_cpu --data PATH --out {run} max_steps={steps} "
           f"warmup_steps={max(steps // 10, 1)} seed={seed}{w}")
    return {"command": cmd, "steps": steps, "images_seen": steps * cfg.batch_size, "final": last,
            "acc1": last["val_acc1"], "acc5": last["val_acc5"], "summary": f"top-1 {100 * last['val_acc1']:.2f}%"}


# ---------------------------------------------------------------------------------- report
def mean_std(v: list[float]) -> tuple[float, float]:
    m = sum(v) / len(v)
    s = (sum((a - m) ** 2 for a in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
    return m, s


def write_markdown(res: dict[str, Any], path: Path, arms: list[str], seeds: list[int], shots: list[int],
                   pretrain_seeds: list[int]) -> None:
    meta = res["meta"]
    lines = ["# Self-supervised pre-training on CIFAR-10 (ViT-micro/4, CPU)", "",
             f"Measured {meta['date']} on {meta['machine']}, torch {meta['torch']}, one thread, `nice -n 10`, "
             "the machine shared with other jobs (load averages per stage below: timings are noisy).", "",
             f"Command: `{meta['command']}`", "",
             f"Model: `{MODEL}` (6 blocks, D=64, 4 heads, 0.21 M parameters; patch 4 → 64 patches + [class]). "
             "Pre-training reads only the 50,000 training images (no labels); every score is on the 10,000 "
             "test images.", ""]
    lines += ["## Pre-training", "", "| method | steps × batch | images seen | final val loss | wall | CPU | load |",
              "|---|---|---|---|---|---|---|"]
    pre_keys = [(m, ps, f"pretrain_{m}" + (f"_s{ps}" if ps else "")) for ps in pretrain_seeds for m in ("mae", "mpp")]
    for m, ps, key in pre_keys:
        r = res.get(key)
        if r:
            extra = f" (colour acc {100 * r['final']['val_mpp_acc']:.1f}%)" if "val_mpp_acc" in r["final"] else ""
            lines.append(f"| {m.upper()} (seed {ps}) | {r['steps']} × 128 | {r['images_seen']:,} | "
                         f"{r['final']['val_loss']:.4f}{extra} | {r['wall_s'] / 60:.1f} min | "
                         f"{r['cpu_s'] / 60:.1f} min | "
                         f"{r['load_before'][0]:.1f}–{r['load_after'][0]:.1f} |")
    lines += ["", "Commands:", ""] + [f"    {res[k]['command']}" for _, _, k in pre_keys if k in res]
    for feat, title in (("token", "[class]-token features (what `vitkit fewshot` uses)"),
                        ("gap", "mean patch-token features")):
        lines += ["", f"## Few-shot linear evaluation, {title}", "",
                  "ViT §4.1 closed form (whitened features + bias, ridge λ = 2^10), k images per class drawn "
                  "from 5,000 training images (500 a class), 5 draws; accuracy in %, mean ± std over draws.", "",
                  "| encoder | " + " | ".join(f"{k}-shot" for k in shots) + " |",
                  "|---|" + "---|" * len(shots)]
        for arm in arms:
            more = [f"fewshot_{arm}_s{ps}" for ps in pretrain_seeds[1:]] if arm != "scratch" else []
            keys = [f"fewshot_{arm}"] + more
            found = [(k, res[k]) for k in keys if k in res]
            for k, r in found:
                cells = [f"{100 * r[feat]['shots'][str(n)]['mean']:.1f} ± {100 * r[feat]['shots'][str(n)]['std']:.1f}"
                         for n in shots]
                seed = k.rsplit("_s", 1)[1] if "_s" in k.split("_", 1)[1] else "0"
                label = arm if arm == "scratch" else f"{arm} (pre-training seed {seed})"
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            if len(found) > 1:
                cells = []
                for n in shots:
                    m, sd = mean_std([r[feat]["shots"][str(n)]["mean"] for _, r in found])
                    cells.append(f"**{100 * m:.1f} ± {100 * sd:.1f}**")
                lines.append(f"| {arm}: mean ± std over {len(found)} pre-training seeds | " + " | ".join(cells) + " |")
    ft_steps = next((res[k]["steps"] for k in res if k.startswith("finetune_")), 0)
    lines += ["", "## Short fine-tune", "",
              f"Recipe `cifar10_vit_cpu` (AdamW lr 2e-3, label smoothing 0.1, pad-crop + flip) cut to "
              f"{ft_steps} steps × 128 = {ft_steps * 128:,} images (a warm-up of a tenth, cosine), the same budget "
              "for every arm; top-1 on the 10,000 test images, mean ± std over "
              f"{len(seeds)} seeds (seed = data order, head init, augmentation).", "",
              "| start | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std | CPU per run |",
              "|---|" + "---|" * len(seeds) + "---|---|"]
    for arm in arms:
        accs = [res[f"finetune_{arm}_s{s}"]["acc1"] for s in seeds if f"finetune_{arm}_s{s}" in res]
        cpu = [res[f"finetune_{arm}_s{s}"]["cpu_s"] for s in seeds if f"finetune_{arm}_s{s}" in res]
        if accs:
            m, s = mean_std(accs)
            lines.append(f"| {arm} | " + " | ".join(f"{100 * a:.2f}" for a in accs) +
                         f" | {100 * m:.2f} ± {100 * s:.2f} | {sum(cpu) / len(cpu) / 60:.1f} min |")
    lines += ["", "Commands (scratch: without `weights=`):", ""]
    lines += [f"    {res[k]['command']}" for k in res if k.startswith("finetune_") and k.endswith(f"_s{seeds[0]}")]
    total_cpu = sum(v.get("cpu_s", 0) for k, v in res.items() if k != "meta")
    total_wall = sum(v.get("wall_s", 0) for k, v in res.items() if k != "meta")
    lines += ["", f"All stages: {total_cpu / 60:.1f} min of CPU, {total_wall / 60:.1f} min of wall time "
              "(few-shot rows: mean ± std over 5 k-shot draws, the bold rows over pre-training seeds of "
              "those means; fine-tunes start from pre-training seed 0, their spread is over fine-tuning seeds).", ""]
    path.write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/tmp/vitkit-data", help="CIFAR-10 image-folder tree (train/, test/)")
    ap.add_argument("--runs", default="/tmp/i16b-pretrain-runs", help="folder for the run folders")
    ap.add_argument("--out", default=str(HERE / "results" / "pretrain_cifar10"), help="results path without suffix")
    ap.add_argument("--mae-steps", type=int, default=1170)   # 3 epochs of 390 steps × 128
    ap.add_argument("--mpp-steps", type=int, default=585)    # 1.5 epochs (MPP runs the encoder on every token)
    ap.add_argument("--ft-steps", type=int, default=156)     # 20,000 images
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="fine-tuning seeds")
    ap.add_argument("--pretrain-seeds", type=int, nargs="+", default=[0],
                    help="pre-training seeds (few-shot for each; fine-tunes start from the first)")
    ap.add_argument("--quick", action="store_true", help="a tiny smoke run into /tmp (numbers meaningless)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.quick:
        args.mae_steps, args.mpp_steps, args.ft_steps, args.seeds = 4, 4, 4, [0]
        args.runs, args.out = "/tmp/i16b-pretrain-quick", "/tmp/i16b-pretrain-quick/results"
    runs, out = Path(args.runs), Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    res: dict[str, Any] = json.loads(json_path.read_text()) if json_path.is_file() else {}
    res.setdefault("meta", {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                            "machine": f"{os.cpu_count()}-core {platform.machine()} VM", "torch": torch.__version__,
                            "command": "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pretrain_cifar10.py "
                                       + " ".join(sys.argv[1:])})
    command = "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pretrain_cifar10.py " + " ".join(sys.argv[1:])
    if command not in res["meta"]["command"].split("`, then `"):  # a restart that adds stages
        res["meta"]["command"] += f"`, then `{command}"

    def save() -> None:
        json_path.write_text(json.dumps(res, indent=1))

    root = Path(args.data)
    xtr, ytr, classes = decode(root, "train", Path("/tmp/i16b-cifar10-train-u8.pt"))
    xte, yte, _ = decode(root, "test", Path("/tmp/i16b-cifar10-test-u8.pt"))
    pool = [i for c in range(10) for i in (ytr == c).nonzero().flatten()[::10].tolist()]  # 500 a class
    data = {"train": Images(xtr, ytr, classes, True), "test": Images(xte, yte, classes, False),
            "pool": Images(xtr, ytr, classes, False, index=pool)}
    if args.quick:
        data["test"] = Images(xte, yte, classes, False, index=list(range(0, 10000, 20)))
    shots = [1, 5, 10, 25]

    for ps in args.pretrain_seeds:
        sfx = f"_s{ps}" if ps else ""  # seed 0 keeps the plain names
        for m, steps in (("mae", args.mae_steps), ("mpp", args.mpp_steps)):
            timed(res, f"pretrain_{m}{sfx}",
                  lambda: pretrain_stage(m, runs / f"pretrain-{m}{sfx.replace('_', '-')}", data, steps, ps), save)
    weights = {"scratch": None, "mae": runs / "pretrain-mae" / "checkpoint-last.pt",
               "mpp": runs / "pretrain-mpp" / "checkpoint-last.pt"}
    arms = list(weights)
    for arm, w in weights.items():
        timed(res, f"fewshot_{arm}", lambda: fewshot_stage(w, data, shots, 5), save)
    for ps in args.pretrain_seeds[1:]:
        for arm in ("mae", "mpp"):
            w = runs / f"pretrain-{arm}-s{ps}" / "checkpoint-last.pt"
            timed(res, f"fewshot_{arm}_s{ps}", lambda: fewshot_stage(w, data, shots, 5), save)
    for seed in args.seeds:
        for arm, w in weights.items():
            timed(res, f"finetune_{arm}_s{seed}",
                  lambda: finetune_stage(w, runs / f"finetune-{arm}-s{seed}", data, args.ft_steps, seed), save)
    write_markdown(res, out.with_suffix(".md"), arms, args.seeds, shots, args.pretrain_seeds)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
