"""``vitkit models [PATTERN]``: list registered models with their size."""
from __future__ import annotations

import argparse

import torch


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'swin_*'")
    p.add_argument("--params", action="store_true", help="also count parameters (builds each model on the meta device)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
