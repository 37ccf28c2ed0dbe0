"""``vitkit`` command line: thin wrappers over the library, one module per command family.

Each module in ``COMMANDS`` exposes ``add_parsers(subparsers)``, which registers its subcommands
and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
A command module imports neither torch nor any vitkit module that does at its top level (only
inside its run functions), so that building the parser, ``vitkit --help`` included, stays fast;
:func:`add_command` gives a subcommand its description and examples.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import textwrap

COMMANDS = (
    "train",        # train, eval            (vitkit.cli.train)
    "weights",      # convert, predict       (vitkit.cli.weights)
    "bench",        # bench                  (vitkit.cli.bench)
    "analysis",     # fewshot, analyze       (vitkit.cli.analysis)
    "dense",        # segment, detect        (vitkit.cli.dense)
    "models",       # models                 (vitkit.cli.models)
    "hub",          # hub-export             (vitkit.cli.hub)
    "completion",   # completion             (vitkit.cli.completion)
    "pretrain",     # pretrain               (vitkit.cli.pretrain)
    "export",       # export                 (vitkit.cli.export)
)


def add_command(sub: argparse._SubParsersAction, name: str, help: str, description: str,
                examples: list[str] | tuple[str, ...], **kwargs) -> argparse.ArgumentParser:
    """A subcommand with a one-line ``help`` (in the parent's list), a ``description`` (wrapped;
    paragraphs separated by blank lines) and 1-3 ``examples`` (``# comment`` after two spaces)."""
    paras = [textwrap.fill(" ".join(part.split()), 100) for part in description.strip().split("\n\n")]
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    return sub.add_parser(name, help=help, description="\n\n".join(paras), epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="vitkit", description=textwrap.fill("Vision Transformers (ViT, Swin): train, fine-tune, evaluate, "
                                                 "convert weights, analyse. 'vitkit COMMAND --help' describes a "
                                                 "command, with examples.", 100),
        epilog="examples:\n  vitkit train                      # the embedded MNIST demo, a few minutes on a CPU\n"
        "  vitkit models 'swin_*' --params\n  python -m vitkit predict cat.jpg --checkpoint runs/c10/checkpoint-best.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vitkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # vitkit's own messages at INFO (DEBUG with -v); other libraries' only from WARNING, or onnxscript's
    # optimiser alone prints a few hundred INFO lines per `vitkit export`
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("vitkit").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..extras import MissingDependency

    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, MissingDependency) as e:  # user errors: one clear line, no traceback
        if args.verbose:
            raise
        print(f"vitkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
