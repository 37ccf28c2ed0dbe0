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
RUNTIME_FIELDS = {"num_workers", "progress", "device", "compile", "checkpoint_every", "threads", "logger", "log_every"}


def accept_overrides_anywhere(parser: argparse.ArgumentParser, dest: str = "overrides") -> argparse.ArgumentParser:
    """Let ``field=value`` words stand anywhere among the options (``train weights=x --out d lr=1``).

    argparse fills a ``nargs="*"`` positional from one run of words only; words of a later run come
    back unrecognised and the command fails. This parser (as a sub-command, argparse calls its
    ``parse_known_args``) moves such ``field=value`` words onto ``dest``, in command-line order;
    anything else unrecognised (``--no-such-option``) is still an error."""
    inner = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):  # noqa: ANN001, ANN202 - argparse's signature
        ns, extras = inner(args, namespace)
        late = [a for a in extras if "=" in a and not a.startswith("-")]
        if late:
            setattr(ns, dest, list(getattr(ns, dest, None) or []) + late)
        return ns, [a for a in extras if a not in late]

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]
    return parser


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from . import add_command

    p = add_command(sub, "train", help="train or fine-tune a classifier (no arguments: the embedded MNIST demo)",
                    description="Train or fine-tune an image classifier with a recipe (--list-recipes shows them "
                    "with their command, time and accuracy). Any config field can be set as field=value "
                    "(--show-config prints them all); the run folder gets config.json, metrics.jsonl, "
                    "checkpoint-last.pt, checkpoint-best.pt and curves.png.",
                    examples=["vitkit train                                  # the embedded MNIST demo, minutes on a CPU",
                              "vitkit train --config run.yaml lr=5e-4 logger=tensorboard   # a file, then overrides",
                              "vitkit train --out runs/c10 --resume          # continue where it stopped"])
    p.add_argument("--recipe", default=None, help="recipe name (see --list-recipes); default: mnist_demo without "
                   "--data, else the one suited to the data (grey images up to 32 px: mnist_demo; colour up to "
                   "32 px: cifar10_vit_cpu; larger: folder_vit_cpu)")
    p.add_argument("--model", help="model name (vitkit models lists them)")
    p.add_argument("--data", help="mnist | cifar10 | cifar100 | an image folder | an archive of one")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch per optimiser step")
    p.add_argument("--out", help="run folder (default runs/<recipe>-<date-time>)")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of config fields (the same names as "
                   "field=value; 'recipe' too); --recipe/--model/... and field=value on the command line win. A "
                   "run's config.json works")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoint-last.pt")
    p.add_argument("--list-recipes", action="store_true", help="list the recipes with their command, time and accuracy")
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="field=value", help="config overrides, e.g. lr=3e-4 mixup=0.8")
    p.set_defaults(func=run_train)
    accept_overrides_anywhere(p)

    e = add_command(sub, "eval", help="evaluate a checkpoint: top-1/top-5, per-class accuracy, confusion matrix",
                    description="Evaluate a training checkpoint on a data split, at one or more input sizes: "
                    "top-1/top-5 accuracy, loss, per-class accuracy and a confusion matrix. Without --data, the "
                    "run's own data (from the checkpoint); the results go to eval.json and confusion-<size>.png "
                    "in the run folder (or --out).",
                    examples=["vitkit eval --checkpoint runs/c10/checkpoint-best.pt",
                              "vitkit eval --checkpoint runs/c10/checkpoint-best.pt --data cifar10 --img-size 32 48",
                              "vitkit eval --checkpoint runs/c10/checkpoint-last.pt --ema --out eval-ema/"])
    e.add_argument("--checkpoint", required=True, help="checkpoint-best.pt or checkpoint-last.pt of a run")
    e.add_argument("--data", help="mnist | cifar10 | cifar100 | an image folder | an archive "
                   "(default: the run's data, from the checkpoint)")
    e.add_argument("--split", default="val", choices=("val", "test", "train"))
    e.add_argument("--img-size", type=int, nargs="+", help="evaluate at each of these resolutions")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--num-workers", type=int, default=2)
    e.add_argument("--device", default="auto")
    e.add_argument("--data-root", help="where named sets (cifar10, cifar100) are looked for")
    e.add_argument("--ema", action="store_true", help="evaluate the EMA weights of a checkpoint-last.pt")
    e.add_argument("--out", help="folder for eval.json and confusion-<size>.png (default: the checkpoint's run folder)")
    e.set_defaults(func=run_eval)

    v = add_command(sub, "vtab", help="VTAB-1k style transfer: fine-tune on 1,000 images of each task, score "
                    "each test split, average per group (ViT Table 2)",
                    description="VTAB-1k style transfer (ViT paper, Table 2): fine-tune on 1,000 images of each "
                    "task, score each test split, average per group. Each task folder under --tasks holds "
                    "train/<class>/ and test/<class>/. Defaults are the ViT paper's: recipe vit_finetune, "
                    "2,500 steps at lr 0.01.",
                    examples=["vitkit vtab --tasks ~/data/vtab --out runs/vtab pretrained=true",
                              "vitkit vtab --tasks ~/data/vtab --out runs/vtab --task dtd --steps 500"])
    v.add_argument("--tasks", required=True, help="folder of task folders (caltech101/, dtd/, …)")
    v.add_argument("--out", required=True, help="folder for one run per task, vtab.json and vtab.md")
    v.add_argument("--recipe", default="vit_finetune")
    v.add_argument("--task", action="append", help="only this task (repeatable)")
    v.add_argument("--examples", type=int, default=1000, help="training images per task")
    v.add_argument("--steps", type=int, default=2500)
    v.add_argument("--lr", type=float, default=0.01)
    v.add_argument("overrides", nargs="*", metavar="field=value", help="config overrides, e.g. pretrained=true")
    v.set_defaults(func=run_vtab)
    accept_overrides_anywhere(v)


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


def read_config_file(path: str) -> dict:
    """The fields of a ``--config`` file: a YAML (``.yaml``/``.yml``) or JSON mapping of config field
    names to values, as ``field=value`` takes them (a run's config.json included: its ``resolved``
    record is left out). Values go through the same conversion as field=value text (lists: a,b)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--config {path!r} does not exist")
    text = p.read_text()
    if p.suffix.lower() in (".yaml", ".yml"):
        from ..extras import require

        yaml = require("yaml", "--config with a YAML file")
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"--config {path}: not valid YAML: {e}") from e
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"--config {path}: not valid JSON ({e}); YAML files end in .yaml or .yml") from e
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ValueError(f"--config {path}: expected a mapping of field: value, got {type(doc).__name__}")
    doc.pop("resolved", None)
    return {str(k): _as_text(v) for k, v in doc.items()}


def _as_text(value) -> str:
    """A file's value as the text field=value would give (then converted by the field's type)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_as_text(v) for v in value)
    return str(value)


def _cli_fields(args: argparse.Namespace) -> list[str]:
    named = {"model": args.model, "data": args.data, "epochs": args.epochs, "batch_size": args.batch_size}
    return [f"{k}={v}" for k, v in named.items() if v is not None] + list(args.overrides)


def run_train(args: argparse.Namespace) -> int:
    from ..train import apply_overrides, describe_recipe, get_recipe, load_run_config, train
    from ..train.advice import choose_recipe
    from ..train.recipes import DEFAULT_RECIPE, RECIPES

    log = logging.getLogger("vitkit.train")

    if args.list_recipes:
        for name in RECIPES:
            print(f"{name}\n    " + describe_recipe(name).replace("\n", "\n    ") + "\n")
        return 0
    file_fields = read_config_file(args.config) if args.config else {}
    recipe_from = "--recipe" if args.recipe else ""
    if file_fields.get("recipe") and not args.recipe:
        args.recipe, recipe_from = str(file_fields["recipe"]), "--config"
    file_fields.pop("recipe", None)
    overrides = _cli_fields(args)
    if args.resume:
        if not args.out:
            raise ValueError("--resume needs --out DIR, the folder of the run to continue")
        cfg, recipe = load_run_config(args.out)
        if args.recipe and args.recipe != recipe:
            raise ValueError(f"{args.out} was trained with recipe {recipe!r}, not {args.recipe!r}")
        new = apply_overrides(apply_overrides(cfg, file_fields), overrides)
        from ..train.loop import RESUME_CHANGEABLE  # lr, clip_grad: the remedies for a diverged run (logged)

        refuse_resume_changes(cfg, new, RUNTIME_FIELDS | set(RESUME_CHANGEABLE))
        cfg, out = new, Path(args.out)
        log.info("resuming %s (recipe %s)", out, recipe)
    else:
        recipe, why = args.recipe or DEFAULT_RECIPE, "the default without --data"
        data = args.data or file_fields.get("data")
        if args.recipe:
            why = f"from {recipe_from}"
        elif data:
            recipe, why = choose_recipe(str(data))
            why = f"chosen for the data: {why}"
        hint = "" if args.recipe else "; --recipe NAME to choose another, --list-recipes lists them"
        log.info("recipe %s (%s%s)", recipe, why, hint)
        cfg = apply_overrides(apply_overrides(get_recipe(recipe), file_fields), overrides)  # the command line wins
        out = Path(args.out or f"runs/{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
        if (out / "checkpoint-last.pt").exists():
            raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if not cfg.data:
        raise ValueError(f"recipe {recipe!r} has no default data; pass --data PATH (an image folder with train/ "
                         "and val/, or an archive of one)")
    cfg = _advise(cfg, set(file_fields) | {o.split("=", 1)[0] for o in overrides})
    if args.show_config:
        print(json.dumps({"recipe": recipe, **cfg.to_dict()}, indent=2))
        return 0
    return run_training("train", train, cfg, out, resume=args.resume, recipe=recipe)


def refuse_resume_changes(old, new, allowed: set[str]) -> None:
    """Refuse a resume whose overrides change a config field outside ``allowed`` (the run would no
    longer continue exactly); ``old``/``new``: the saved config and the one asked for."""
    before = old.to_dict()
    changed = sorted(k for k, v in new.to_dict().items() if v != before[k] and k not in allowed)
    if changed:
        raise ValueError(f"cannot change {', '.join(changed)} when resuming (the run would no longer continue "
                         f"exactly); start a new run with another --out instead")


def run_training(command: str, fn, cfg, out: Path, **kwargs) -> int:
    """``fn(cfg, out, **kwargs)`` (train, pretrain) as a command: quiet ranks other than 0, a
    TrainingError as one line (exit 1), an interrupt (Ctrl-C, SIGTERM: the run saved itself and said
    so) as 128 + the signal's number, the process group closed."""
    from ..train import TrainingError
    from ..train import distributed as D

    if int(os.environ.get("RANK", "0")) != 0:
        logging.getLogger("vitkit").setLevel(logging.WARNING)
    try:
        fn(cfg, out, **kwargs)
    except TrainingError as e:
        logging.getLogger("vitkit.train").error("vitkit %s: %s", command, e)
        return 1
    except KeyboardInterrupt as e:
        return 128 + getattr(e, "signum", 2)
    finally:
        D.cleanup()
    return 0


def _advise(cfg, given: set[str]):
    """Before the run starts: a missing tracker package, warnings about the schedule and the
    evaluation split, and threads/workers for the free cores (a CPU run with threads=0, outside
    torchrun; ``given``: the fields the user set, whose values stand)."""
    import dataclasses

    from ..extras import check
    from ..train.advice import cpu_budget, eval_split_warning, schedule_warnings
    from ..train.loggers import parse_loggers

    for name in parse_loggers(cfg.logger):  # a missing tracker package stops the run now, not after a step
        check(name, f"logger={name}")
    log = logging.getLogger("vitkit.train")
    if int(os.environ.get("RANK", "0")) == 0:
        for text in schedule_warnings(cfg) + [w for w in [eval_split_warning(cfg)] if w]:
            log.warning("warning: %s", text)
    if "WORLD_SIZE" in os.environ or cfg.device.startswith("cuda"):
        return cfg
    if cfg.device == "auto":
        import torch

        if torch.cuda.is_available():
            return cfg
    budget = cpu_budget(cfg, workers_given="num_workers" in given)
    if budget is None:
        return cfg
    threads, workers, why = budget
    log.info("CPU: %s", why)
    return dataclasses.replace(cfg, threads=threads, num_workers=workers)


def run_eval(args: argparse.Namespace) -> int:
    import sys

    from ..evaluate import evaluate_checkpoint

    out = Path(args.out) if args.out else Path(args.checkpoint).parent  # the run folder, beside the checkpoint
    failed: list[int] = []

    def show(r) -> None:
        worst = sorted((v, k) for k, v in r.per_class.items() if v is not None)[:3]
        print(f"{r.img_size}px: top-1 {100 * r.acc1:.2f}%  top-5 {100 * r.acc5:.2f}%  loss {r.loss:.4f}  "
              f"({r.num_images} images{f', {r.skipped} unreadable skipped' if r.skipped else ''}); weakest classes: "
              + ", ".join(f"{k} {100 * v:.1f}%" for v, k in worst), flush=True)

    def fail(size: int, e: Exception) -> None:
        failed.append(size)
        print(f"vitkit eval: {size}px failed: {e}", file=sys.stderr, flush=True)

    results = evaluate_checkpoint(args.checkpoint, args.data, split=args.split, img_sizes=args.img_size,
                                  batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                                  data_root=args.data_root, ema=args.ema, out_dir=out, on_result=show,
                                  on_error=fail if args.img_size and len(args.img_size) > 1 else None)
    pngs = ", ".join(str(out / f"confusion-{r.img_size}.png") for r in results)
    print(f"wrote {out / 'eval.json'}" + (f" and {pngs}" if pngs else ""))
    return 1 if failed else 0
