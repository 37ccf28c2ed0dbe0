"""``vitkit fewshot`` and ``vitkit analyze``: the ViT paper's evaluations and analyses (§4.1, §4.5).

    vitkit fewshot --model vit_micro_patch4_28 --weights runs/mnist/checkpoint-best.pt --data mnist
    vitkit analyze --model vit_micro_patch4_28 --weights runs/mnist/checkpoint-best.pt --images mnist --out figs/
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the command line imports torch when a command runs
    import torch

log = logging.getLogger("vitkit.analysis")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="registered model name (see 'vitkit models'); may be left out when "
                   "--weights is a vitkit training checkpoint, which names its model")
    p.add_argument("--weights", help="weights file (vitkit checkpoint, timm, official .npz/.pth); "
                   "default: the model's random initialisation")
    p.add_argument("--num-classes", type=int, help="classes of the weights' head, when it differs from the "
                   "model's default (the head is not used by these commands)")
    p.add_argument("--img-size", type=int, help="input size (default: the model's)")
    p.add_argument("--data-root", help="where named sets (cifar10, cifar100) are looked for; default $VITKIT_DATA")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from . import add_command

    p = add_command(sub, "fewshot", help="few-shot linear evaluation (ViT §4.1) and a linear probe on frozen features",
                    description="Few-shot linear evaluation of frozen features (ViT paper §4.1): a closed-form "
                    "ridge regression to {-1, 1} targets on k examples per class (averaged over seeds), a "
                    "logistic probe on the same k-shot sets, and a logistic probe on all training images.",
                    examples=["vitkit fewshot --weights runs/mnist/checkpoint-best.pt --data mnist",
                              "vitkit fewshot --model vit_base_patch16_224 --weights ViT-B_16.npz --data cifar10 "
                              "--shots 1 5 10 --json fewshot.json"])
    _add_model_args(p)
    p.add_argument("--data", required=True, help="mnist | cifar10 | cifar100 | image folder (class per sub-folder; "
                   "train/ + val/|test/ when split) | archive of one")
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10, 25], help="examples per class")
    p.add_argument("--seeds", type=int, default=5, help="number of random k-shot draws per k")
    p.add_argument("--l2", type=float, default=2.0**10, help="ridge regularisation (paper: 2^10)")
    p.add_argument("--logreg-l2", type=float, default=1e-3, help="L2 of the logistic probe on the k-shot sets")
    p.add_argument("--probe-l2", type=float, default=1e-4, help="L2 of the logistic probe on all training images")
    p.add_argument("--no-logreg", action="store_true", help="skip the logistic probe on the k-shot sets")
    p.add_argument("--no-probe", action="store_true", help="skip the logistic probe on all training images")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of each class held out for testing when the folder has no val/ or test/")
    p.add_argument("--max-train", type=int, help="use at most this many training images (evenly spaced)")
    p.add_argument("--max-test", type=int, help="use at most this many test images (evenly spaced)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(func=run_fewshot)

    p = add_command(sub, "analyze", help="attention rollout, mean attention distance, position-embedding "
                    "similarity and patch-embedding filters as PNG figures (ViT §4.5, Fig. 6-7)",
                    description="The ViT paper's analyses (§4.5, Figures 6-7) as PNG figures in --out: attention "
                    "rollout over a few images, mean attention distance per head and layer, position-embedding "
                    "similarity and the principal components of the patch-embedding filters; the numbers go to "
                    "analysis.json.",
                    examples=["vitkit analyze --weights runs/mnist/checkpoint-best.pt --images mnist --out figs/",
                              "vitkit analyze --model vit_base_patch16_224 --weights ViT-B_16.npz --images photos/ "
                              "--out figs/"])
    _add_model_args(p)
    p.add_argument("--images", required=True, nargs="+",
                   help="image files, a folder of images, or a data spec (mnist, cifar10, a class-folder tree)")
    p.add_argument("--out", required=True, help="output folder for the PNG files")
    p.add_argument("--num-overlays", type=int, default=4, help="images shown in the rollout figure")
    p.add_argument("--distance-images", type=int, default=128, help="images averaged for the attention distance")
    p.add_argument("--components", type=int, default=28, help="principal components of the embedding filters")
    p.set_defaults(func=run_analyze)


# ------------------------------------------------------------------------------------ helpers
def _build_model(args: argparse.Namespace) -> torch.nn.Module:
    import torch

    from .. import create_model, load_weights

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"

    if args.model is None:
        if not args.weights:
            raise ValueError("give --model NAME (and optionally --weights PATH), or --weights CHECKPOINT from vitkit train")
        from ..evaluate import model_from_checkpoint

        if args.img_size is not None or args.num_classes is not None:
            raise ValueError("--img-size/--num-classes need --model; a training checkpoint fixes its own model")
        model, ckpt = model_from_checkpoint(args.weights)
        args.model = ckpt["model_name"]
        pre = ckpt.get("preprocess", {})  # the run's own evaluation preprocessing, when recorded
        model.pretrained_cfg.update({k: pre[k] for k in ("mean", "std", "interpolation", "crop_pct") if k in pre})
        log.info("loaded %s (%s) from the training checkpoint %s", args.model, ckpt.get("model_kwargs", {}), args.weights)
        return model.to(args.device).eval()
    kwargs = {}
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    if args.img_size is not None:
        kwargs["img_size"] = args.img_size
    model = create_model(args.model, **kwargs)
    if args.weights:
        if not Path(args.weights).is_file():
            raise FileNotFoundError(f"--weights {args.weights!r} does not exist")
        report = load_weights(model, args.weights)
        log.info("loaded %s: %s", args.weights, report)
    else:
        log.warning("no --weights given: analysing the random initialisation of %s", args.model)
    return model.to(args.device).eval()


def _preprocess(model: torch.nn.Module, normalise: bool = True):
    """The model's evaluation transform; without ``normalise``, images stay in [0, 1] (for display)."""
    from ..data import eval_transform

    cfg = model.pretrained_cfg
    C, H, _ = cfg["input_size"]
    size = model.img_size[0]
    mean, std = (cfg["mean"], cfg["std"]) if normalise else ((0.0,) * C, (1.0,) * C)
    return eval_transform(size, mean=mean, std=std, interpolation=cfg.get("interpolation", "bicubic"),
                          crop_pct=cfg.get("crop_pct", 1.0)), ("L" if C == 1 else "RGB")


def _evenly(n: int, limit: int | None) -> list[int]:
    if limit is None or limit >= n:
        return list(range(n))
    return [int(i * n / limit) for i in range(limit)]


def _loader(ds, indices: list[int], batch_size: int):
    from torch.utils.data import DataLoader, Subset

    from ..data import collate

    return DataLoader(Subset(ds, indices), batch_size=batch_size, shuffle=False, collate_fn=collate)


# ------------------------------------------------------------------------------------ fewshot
def run_fewshot(args: argparse.Namespace) -> int:
    from ..data import build_dataset, resolve_data
    from ..evaluate.fewshot import extract_features, fewshot_evaluate, format_results, linear_probe

    model = _build_model(args)
    transform, mode = _preprocess(model)
    src = resolve_data(args.data, data_root=args.data_root)
    # a plain class folder has no held-out split: carve one (evenly spaced within each class)
    carve = args.val_fraction if src.kind == "folder" else 0.0
    splits = {}
    for split in ("train", "test"):
        ds = build_dataset(src, split if not carve or split == "train" else "val", transform, mode=mode,
                           val_fraction=carve)
        idx = _evenly(len(ds), args.max_train if split == "train" else args.max_test)
        feats, labels = extract_features(model, _loader(ds, idx, args.batch_size), args.device)
        splits[split] = (feats, labels)
        log.info("%s: %d images, features %s", split, len(labels), tuple(feats.shape))
        num_classes = ds.num_classes
    (tx, ty), (vx, vy) = splits["train"], splits["test"]
    results = [fewshot_evaluate(tx, ty, vx, vy, shots=args.shots, seeds=args.seeds, l2=args.l2,
                                num_classes=num_classes)]
    if not args.no_logreg:
        results.append(fewshot_evaluate(tx, ty, vx, vy, shots=args.shots, seeds=args.seeds, l2=args.logreg_l2,
                                        method="logreg", num_classes=num_classes))
    probe = None if args.no_probe else linear_probe(tx, ty, vx, vy, l2=args.probe_l2, num_classes=num_classes)
    print(f"{args.model} on {args.data}: {len(ty)} training / {len(vy)} test images, "
          f"{tx.shape[1]}-d pre-logits features, accuracy in % (mean ± std over {args.seeds} seeds)")
    print(format_results(results, probe))
    if args.json:
        out = {"model": args.model, "weights": args.weights, "data": args.data, "num_train": len(ty),
               "num_test": len(vy), "results": [r.to_dict() for r in results], "linear_probe": probe}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


# ------------------------------------------------------------------------------------ analyze
def _load_images(specs: list[str], model: torch.nn.Module, limit: int, data_root: str | None
                 ) -> tuple[torch.Tensor, list[str]]:
    """Up to ``limit`` images in [0, 1], (B, C, H, W), and a label for each."""
    import torch

    from ..data import build_dataset, load_image
    from ..data.images import IMAGE_EXTENSIONS

    transform, mode = _preprocess(model, normalise=False)
    files = []
    for s in specs:
        p = Path(s)
        if p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS):
            files.append(p)
        elif p.is_dir() and not any(d.is_dir() for d in p.iterdir()):
            files += sorted(f for f in p.iterdir() if f.name.lower().endswith(IMAGE_EXTENSIONS))
    if files:
        files = files[:limit]
        return torch.stack([transform(load_image(str(f), mode)) for f in files]), [f.name for f in files]
    if len(specs) != 1:
        raise ValueError(f"--images {' '.join(specs)}: give image files, one folder of images, or one data spec")
    try:
        ds = build_dataset(specs[0], "test", transform, mode=mode, data_root=data_root)
    except ValueError:
        ds = build_dataset(specs[0], "train", transform, mode=mode, data_root=data_root)
    # spread the picks over the classes: item j of class j % K, round robin
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(ds.targets):
        by_class.setdefault(t, []).append(i)
    order = [by_class[c][j] for j in range(max(map(len, by_class.values())))
             for c in sorted(by_class) if j < len(by_class[c])][:limit]
    items = [ds[i] for i in order]
    keep = [(x, ds.classes[y]) for x, y in (it for it in items if isinstance(it, tuple))]
    if not keep:
        raise ValueError(f"no readable image in {specs[0]!r}")
    return torch.stack([x for x, _ in keep]), [f"class {name}" for _, name in keep]


def run_analyze(args: argparse.Namespace) -> int:
    from ..analysis import (attention_distance, attention_layers, patch_distances, patch_embedding_components,
                            position_embedding_similarity, rollout_map)
    from ..analysis import plots

    import torch

    model = _build_model(args)
    images, labels = _load_images(args.images, model, max(args.distance_images, args.num_overlays), args.data_root)
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, -1, 1, 1)
    x = ((images - mean) / std).to(args.device)
    out = Path(args.out)
    name = args.model + (f" ({Path(args.weights).name})" if args.weights else " (random init)")
    written = []

    n = min(args.num_overlays, len(images))
    maps = rollout_map(model, x[:n])
    written.append(plots.plot_rollout(images[:n], maps, out / "attention_rollout.png", labels=labels[:n],
                                      title=f"Attention rollout: {name}"))
    batches = [x[i: i + args.batch_size] for i in range(0, len(x), args.batch_size)]
    dist = attention_distance(model, batches)
    layers = attention_layers(model)
    stages = [layer.stage for layer in layers] if layers[0].windowed else None
    uniform = None
    if not layers[0].windowed:  # reference: every query attending all patches equally
        grid = (x.shape[-2] // model.stride, x.shape[-1] // model.stride)
        uniform = float(patch_distances(grid, model.stride).mean())
    written.append(plots.plot_attention_distance(dist, out / "attention_distance.png", image_size=images.shape[-1],
                                                 stages=stages, uniform=uniform,
                                                 title=f"Mean attention distance ({len(x)} images)\n{name}"))
    try:
        sim = position_embedding_similarity(model)
        written.append(plots.plot_position_similarity(sim, out / "position_embedding_similarity.png",
                                                      title=f"Position embedding similarity\n{name}"))
    except ValueError as e:
        log.warning("skipping the position-embedding figure: %s", e)
    try:
        comps, explained = patch_embedding_components(model, args.components)
        written.append(plots.plot_embedding_filters(comps, out / "embedding_filters.png", explained=explained))
    except ValueError as e:
        log.warning("skipping the embedding-filter figure: %s", e)
    summary = {"model": args.model, "weights": args.weights, "images": len(x),
               "mean_attention_distance_px": [d.tolist() for d in dist], "uniform_attention_distance_px": uniform}
    (out / "analysis.json").write_text(json.dumps(summary, indent=2))
    for p in written:
        print(p)
    return 0
