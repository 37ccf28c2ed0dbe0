"""``vitkit train`` and ``vitkit eval``: thin wrappers over :mod:`vitkit.train` and :mod:`vitkit.evaluate`.

    vitkit train                                  # the embedded MNIST demo, a few minutes on a CPU
    vitkit train --recipe cifar10_vit --data ~/data/cifar10 --out runs/c10 lr=5e-4 drop_path=0.2
    vitkit train --out runs/c10 --resume          # continue exactly where it stopped
    torchrun --nproc_per_node=4 -m vitkit.cli train --recipe cifar10_vit --data …
    vitkit eval --checkpoint runs/c10/checkpoint-best.pt --data cifar10 --img-size 32 48
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

# fields that may differ when a run is resumed: they change how it runs, not what it computes
RUNTIME_FIELDS = {"num_workers", "progress", "device", "compile", "checkpoint_every", "threads"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or fine-tune a classifier (no arguments: the embedded MNIST demo)",
                       description="Train with a recipe; any config field can be set as field=value.")
    p.add_argument("--recipe", default=None, help="recipe name (default mnist_demo; see --list-recipes)")
    p.add_argument("--model", help="model name (vitkit models lists them)")
    p.add_argument("--data", help="mnist | cifar10 | cifar100 | an image folder | an archive of one")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch per optimiser step")
    p.add_argument("--out", help="run folder (default runs/<recipe>-<date-time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoint-last.pt")
    p.add_argument("--list-recipes", action="store_true", help="list the recipes with their command, time and accuracy")
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="field=value", help="config overrides, e.g. lr=3e-4 mixup=0.8")
    p.set_defaults(func=run_train)

    e = sub.add_parser("eval", help="evaluate a checkpoint: top-1/top-5, per-class accuracy, confusion matrix")
    e.add_argument("--checkpoint", required=True, help="checkpoint-best.pt or checkpoint-last.pt of a run")
    e.add_argument("--data", required=True, help="mnist | cifar10 | cifar100 | an image folder | an archive")
    e.add_argument("--split", default="val", choices=("val", "test", "train"))
    e.add_argument("--img-size", type=int, nargs="+", help="evaluate at each of these resolutions")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--num-workers", type=int, default=2)
    e.add_argument("--device", default="auto")
    e.add_argument("--data-root", help="where named sets (cifar10, cifar100) are looked for")
    e.add_argument("--ema", action="store_true", help="evaluate the EMA weights of a checkpoint-last.pt")
    e.add_argument("--out", help="folder for eval.json and confusion-<size>.png")
    e.set_defaults(func=run_eval)

    v = sub.add_parser("vtab", help="VTAB-1k style transfer: fine-tune on 1,000 images of each task, score "
                       "each test split, average per group (ViT Table 2)",
                       description="Each task folder under --tasks holds train/<class>/ and test/<class>/. "
                       "Defaults are the ViT paper's: recipe vit_finetune, 2,500 steps at lr 0.01.")
    v.add_argument("--tasks", required=True, help="folder of task folders (caltech101/, dtd/, …)")
    v.add_argument("--out", required=True, help="folder for one run per task, vtab.json and vtab.md")
    v.add_argument("--recipe", default="vit_finetune")
    v.add_argument("--task", action="append", help="only this task (repeatable)")
    v.add_argument("--examples", type=int, default=1000, help="training images per task")
    v.add_argument("--steps", type=int, default=2500)
    v.add_argument("--lr", type=float, default=0.01)
    v.add_argument("overrides", nargs="*", metavar="field=value", help="config overrides, e.g. pretrained=true")
    v.set_defaults(func=run_vtab)


def run_vtab(args: argparse.Namespace) -> int:
    from ..evaluate.vtab import run_vtab as vtab, table
    from ..train import apply_overrides, get_recipe

    cfg = apply_overrides(get_recipe(args.recipe), list(args.overrides))
    summary = vtab(args.tasks, args.out, cfg, tasks=args.task, examples=args.examples, steps=args.steps, lr=args.lr)
    if int(os.environ.get("RANK", "0")) == 0:
        print(table(summary), end="")
        if not summary["complete"]:
            print(f"({len(summary['tasks'])} tasks; the VTAB score averages all 19)")
    return 0


def _cli_fields(args: argparse.Namespace) -> list[str]:
    named = {"model": args.model, "data": args.data, "epochs": args.epochs, "batch_size": args.batch_size}
    return [f"{k}={v}" for k, v in named.items() if v is not None] + list(args.overrides)


def run_train(args: argparse.Namespace) -> int:
    from ..train import TrainingError, apply_overrides, describe_recipe, get_recipe, load_run_config, train
    from ..train import distributed as D
    from ..train.recipes import DEFAULT_RECIPE, RECIPES

    if args.list_recipes:
        for name in RECIPES:
            print(f"{name}\n    " + describe_recipe(name).replace("\n", "\n    ") + "\n")
        return 0
    overrides = _cli_fields(args)
    if args.resume:
        if not args.out:
            raise ValueError("--resume needs --out DIR, the folder of the run to continue")
        cfg, recipe = load_run_config(args.out)
        if args.recipe and args.recipe != recipe:
            raise ValueError(f"{args.out} was trained with recipe {recipe!r}, not {args.recipe!r}")
        new = apply_overrides(cfg, overrides)
        from ..train.loop import RESUME_CHANGEABLE  # lr, clip_grad: the remedies for a diverged run (logged)

        changed = sorted(k for k, v in new.to_dict().items()
                         if v != cfg.to_dict()[k] and k not in RUNTIME_FIELDS and k not in RESUME_CHANGEABLE)
        if changed:
            raise ValueError(f"cannot change {', '.join(changed)} when resuming (the run would no longer continue "
                             f"exactly); start a new run with another --out instead")
        cfg, out = new, Path(args.out)
    else:
        recipe = args.recipe or DEFAULT_RECIPE
        cfg = apply_overrides(get_recipe(recipe), overrides)
        out = Path(args.out or f"runs/{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
        if (out / "checkpoint-last.pt").exists():
            raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if not cfg.data:
        raise ValueError(f"recipe {recipe!r} has no default data; pass --data PATH (an image folder with train/ "
                         "and val/, or an archive of one)")
    if args.show_config:
        print(json.dumps({"recipe": recipe, **cfg.to_dict()}, indent=2))
        return 0
    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger("vitkit").setLevel(logging.WARNING)
    try:
        train(cfg, out, resume=args.resume, recipe=recipe)
    except TrainingError as e:
        logging.getLogger("vitkit.train").error("vitkit train: %s", e)
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the run saved itself and said so
        return 128 + getattr(e, "signum", 2)
    finally:
        D.cleanup()
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate_checkpoint

    results = evaluate_checkpoint(args.checkpoint, args.data, split=args.split, img_sizes=args.img_size,
                                  batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                                  data_root=args.data_root, ema=args.ema, out_dir=args.out)
    for r in results:
        worst = sorted((v, k) for k, v in r.per_class.items() if v is not None)[:3]
        print(f"{r.img_size}px: top-1 {100 * r.acc1:.2f}%  top-5 {100 * r.acc5:.2f}%  loss {r.loss:.4f}  "
              f"({r.num_images} images{f', {r.skipped} unreadable skipped' if r.skipped else ''}); weakest classes: "
              + ", ".join(f"{k} {100 * v:.1f}%" for v, k in worst))
    if args.out:
        print(f"wrote {Path(args.out) / 'eval.json'} and confusion-<size>.png")
    return 0
