"""``vitkit`` command line: thin wrappers over the library, one module per command family.

Each module in ``COMMANDS`` exposes ``add_parsers(subparsers)``, which registers its subcommands
and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = (
    "train",        # train, eval            (vitkit.cli.train)
    "weights",      # convert, predict       (vitkit.cli.weights)
    "bench",        # bench                  (vitkit.cli.bench)
    "analysis",     # fewshot, analyze       (vitkit.cli.analysis)
    "dense",        # segment, detect        (vitkit.cli.dense)
    "models",       # models                 (vitkit.cli.models)
    "export",       # export                 (vitkit.cli.export)
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="vitkit", description="Vision Transformers (ViT, Swin): "
                                     "train, fine-tune, evaluate, convert weights, analyse.")
    parser.add_argument("--version", action="version", version=f"vitkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as e:  # user errors: one clear line, no traceback
        if args.verbose:
            raise
        print(f"vitkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
