"""``vitkit hub-export``: a finished training run as a timm-format Hugging Face repo (a folder and/or
a push to the Hub). No torch import at module level (the CLI's ``--help`` stays fast)."""
from __future__ import annotations

import argparse

EXAMPLES = """examples:
  vitkit hub-export runs/c10 --folder exported/c10          # a folder timm and vitkit load (local-dir:PATH)
  vitkit hub-export runs/c10 --repo me/vit-cifar10           # push it (needs `hf auth login` or HF_TOKEN)
  vitkit hub-export runs/c10 --checkpoint last --ema --repo me/vit-cifar10-ema
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hub-export", help="write a finished run as a timm-format Hugging Face repo (folder or Hub push)",
        description="Write a finished vitkit training run as a timm-format repo: config.json (architecture,\n"
                    "model_args, preprocessing, label names), model.safetensors in timm's key names and a\n"
                    "README model card with the run's config and measured metrics. timm.create_model(\n"
                    "'hf-hub:ORG/NAME', pretrained=True) then builds the same network with the same logits.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a finished `vitkit train` run")
    p.add_argument("--folder", help="write the repo into this folder")
    p.add_argument("--repo", help="push to this Hub repo ORG/NAME (created if needed)")
    p.add_argument("--checkpoint", default="best",
                   help="best (checkpoint-best.pt, default), last (checkpoint-last.pt) or a checkpoint path")
    p.add_argument("--ema", action="store_true", help="export the EMA weights of the checkpoint")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from ..weights.hub_export import export_run

    where = export_run(args.run_dir, repo_id=args.repo, folder=args.folder, checkpoint=args.checkpoint,
                       ema=args.ema, private=args.private or None)
    print(f"exported {args.run_dir} -> {where}")
    return 0
