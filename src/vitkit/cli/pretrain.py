"""``vitkit pretrain``: self-supervised pre-training (MPP, MAE, SimMIM) on unlabelled images, a thin
wrapper over :mod:`vitkit.train.pretrain`.

    vitkit pretrain --method mae --data ~/data/cifar10 --out runs/mae
    vitkit pretrain --out runs/mae --resume
    vitkit train --recipe cifar10_vit_cpu --data ~/data/cifar10 weights=runs/mae/checkpoint-last.pt
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

EPILOG = """examples:
  vitkit pretrain --method mae --data ~/data/cifar10 --out runs/mae     # ViT-micro/4, 75% masking
  vitkit pretrain --out runs/mae --resume                               # continue exactly
  vitkit train --recipe cifar10_vit_cpu --data ~/data/cifar10 weights=runs/mae/checkpoint-last.pt
(also: --method mpp, the ViT paper's; --method simmim --model swin_micro_patch2_window4_32 for Swin;
`vitkit fewshot --weights runs/mae/checkpoint-last.pt` scores the frozen encoder)"""

# fields that may differ when a run is resumed: they change how it runs, not what it computes
RUNTIME_FIELDS = {"num_workers", "progress", "device", "compile", "checkpoint_every", "threads"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain", help="self-supervised pre-training: masked patch prediction (ViT), MAE, SimMIM (Swin)",
        description="Pre-train an encoder on images without labels: mpp (the ViT paper's masked patch "
        "prediction, App. B.1.2), mae (He et al. 2022) or simmim (Xie et al. 2022; the one for Swin). "
        "Any config field can be set as field=value (e.g. mask_ratio=0.6 decoder_depth=4). The run "
        "folder's checkpoint-last.pt is taken by `vitkit train weights=...` and `vitkit fewshot --weights`.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=("mpp", "mae", "simmim"), help="the objective (default: the recipe's, mae)")
    p.add_argument("--recipe", default=None, help="pre-training recipe (default mae_cifar10; see --list-recipes)")
    p.add_argument("--model", help="encoder: a registered ViT or Swin name (vitkit models lists them)")
    p.add_argument("--data", help="cifar10 | cifar100 | an image folder | an archive of one (labels unread)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch per optimiser step")
    p.add_argument("--out", help="run folder (default runs/pretrain-<method>-<date-time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoint-last.pt")
    p.add_argument("--list-recipes", action="store_true", help="list the pre-training recipes (command, time, accuracy)")
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="field=value", help="config overrides, e.g. mask_ratio=0.75 lr=1e-3")
    p.set_defaults(func=run_pretrain)


def _cli_fields(args: argparse.Namespace) -> list[str]:
    named = {"method": args.method, "model": args.model, "data": args.data, "epochs": args.epochs,
             "batch_size": args.batch_size}
    return [f"{k}={v}" for k, v in named.items() if v is not None] + list(args.overrides)


def run_pretrain(args: argparse.Namespace) -> int:
    from ..train import apply_overrides
    from ..train.pretrain import load_pretrain_config, pretrain
    from ..train.recipes import DEFAULT_PRETRAIN_RECIPE, PRETRAIN_RECIPES, describe_pretrain_recipe, get_pretrain_recipe
    from .train import refuse_resume_changes, run_training

    if args.list_recipes:
        for name in PRETRAIN_RECIPES:
            print(f"{name}\n    " + describe_pretrain_recipe(name).replace("\n", "\n    ") + "\n")
        return 0
    overrides = _cli_fields(args)
    if args.resume:
        if not args.out:
            raise ValueError("--resume needs --out DIR, the folder of the run to continue")
        cfg, recipe = load_pretrain_config(args.out)
        if args.recipe and args.recipe != recipe:
            raise ValueError(f"{args.out} was pre-trained with recipe {recipe!r}, not {args.recipe!r}")
        new = apply_overrides(cfg, overrides)
        refuse_resume_changes(cfg, new, RUNTIME_FIELDS)
        cfg, out = new, Path(args.out)
    else:
        recipe = args.recipe or DEFAULT_PRETRAIN_RECIPE
        cfg = apply_overrides(get_pretrain_recipe(recipe), overrides)
        out = Path(args.out or f"runs/pretrain-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}")
        if (out / "checkpoint-last.pt").exists():
            raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if args.show_config:
        print(json.dumps({"recipe": recipe, **cfg.to_dict()}, indent=2))
        return 0
    return run_training("pretrain", pretrain, cfg, out, resume=args.resume, recipe=recipe)
