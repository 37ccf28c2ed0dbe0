"""``vitkit models [PATTERN]``: list registered models with their size, or (``--pretrained``) the
published checkpoints (``name.tag``) with their notes."""
from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from . import add_command

    p = add_command(sub, "models", help="list the registered model names",
                    description="List the registered model names (timm's naming conventions), optionally "
                    "filtered by a shell-style pattern and with their parameter counts.",
                    examples=["vitkit models 'swin_*'", "vitkit models 'vit_*_224' --params",
                              "vitkit models 'vit_base*' --pretrained"])
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'swin_*'")
    p.add_argument("--params", action="store_true", help="also count parameters (builds each model on the meta device)")
    p.add_argument("--pretrained", action="store_true",
                   help="list the published checkpoints as name.tag (create_model(NAME.TAG, pretrained=True)); "
                        "any Hub repo also loads as hf-hub:ORG/NAME")
    p.set_defaults(func=run)


def run_pretrained(pattern: str) -> int:
    from ..build import list_models
    from ..weights.pretrained import TAGS

    names = set(list_models(pattern, pretrained=True))
    if not names:
        raise ValueError(f"no pretrained weights match {pattern!r}; try 'vitkit models --pretrained' for all of them")
    for t in sorted((t for t in TAGS if t.name in names), key=lambda t: t.name):
        head = "headless (features)" if t.num_classes == 0 else f"{t.num_classes} classes"
        print(f"{t.name:58s} {t.input_size:4d}px  {head:20s} {t.note}".rstrip())
    return 0


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        return run_pretrained(args.pattern)
    import torch

    from .. import create_model, list_models

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; try 'vitkit models' for the full list")
    for name in names:
        if args.params:
            with torch.device("meta"):
                n = sum(p.numel() for p in create_model(name).parameters())
            print(f"{name:40s} {n / 1e6:9.2f} M")
        else:
            print(name)
    return 0
