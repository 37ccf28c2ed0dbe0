"""``vitkit models [PATTERN]``: list registered models with their size."""
from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from . import add_command

    p = add_command(sub, "models", help="list the registered model names",
                    description="List the registered model names (timm's naming conventions), optionally "
                    "filtered by a shell-style pattern and with their parameter counts.",
                    examples=["vitkit models 'swin_*'", "vitkit models 'vit_*_224' --params"])
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'swin_*'")
    p.add_argument("--params", action="store_true", help="also count parameters (builds each model on the meta device)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
