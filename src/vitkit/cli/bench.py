"""``vitkit bench``: vitkit against timm, torchvision and transformers, same weights, same inputs,
same process, alternating runs (see :mod:`vitkit.benchmark`).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)
# the choices, here so that building the parser imports no torch (a test checks them against
# vitkit.benchmark.runner.MODES / DTYPES and vitkit.benchmark.peers.IMPLS)
MODES = ("inference", "train")
DTYPES = ("float32", "bfloat16", "float16")
IMPLS = ("vitkit", "timm", "torchvision", "transformers")
ORT_IMPLS = ("vitkit-onnxruntime", "vitkit-onnxruntime-dynamic", "timm-onnxruntime")  # vitkit.benchmark.onnx


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    from . import add_command

    p = add_command(subparsers, "bench", help="throughput, FLOPs and memory against timm/torchvision/transformers",
                    description="Throughput, FLOPs and memory of vitkit against timm, torchvision and "
                    "transformers: same weights, same inputs, same process, alternating timed rounds (median "
                    "reported). The peers are optional: pip install 'vitkit[bench]' (timm, transformers).",
                    examples=["vitkit bench --threads 2                 # ViT-B/16 and Swin-T, batch 8",
                              "vitkit bench --models vit_small_patch16_224 --mode train --batch-size 16 --impls vitkit,timm",
                              "vitkit bench --impls vitkit,vitkit-onnxruntime,timm,timm-onnxruntime --threads 1"])
    p.add_argument("--models", type=_csv, default=["vit_base_patch16_224", "swin_tiny_patch4_window7_224"],
                   help="comma-separated vitkit model names (default: %(default)s)")
    p.add_argument("--impls", type=_csv, default=list(IMPLS),
                   help=f"comma-separated, from {', '.join(IMPLS + ORT_IMPLS)} (default: the eager ones; the "
                        "onnxruntime rows export each model first, pip install 'vitkit[export]')")
    p.add_argument("--mode", choices=MODES, default="inference",
                   help="inference (forward under torch.inference_mode) or train (forward, backward, AdamW)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--img-size", type=int, default=None, help="square input side (default: the model's own)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice). On a small shared CPU, 1 thread per "
                        "busy core: 2 threads lose to 1 when the other core is taken by another job")
    p.add_argument("--channels-last", action="store_true", help="channels-last input and model")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (compile time reported apart)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--rounds", type=int, default=5, help="alternating timed rounds (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per implementation first")
    p.add_argument("--memory", action="store_true",
                   help="peak memory of one call (CPU: peak-RSS growth in a fresh subprocess; CUDA: allocator peak)")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute each block in backward")
    p.add_argument("--no-peak", action="store_true", help="skip measuring the matmul peak")
    p.add_argument("--malloc-tune", action="store_true",
                   help="keep freed memory in glibc's heap (mallopt) for every implementation: big activations "
                        "are then not page-faulted in afresh on each call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the full result (every timing) here")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables here (also printed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..benchmark import BenchConfig, run_benchmark, to_markdown

    cfg = BenchConfig(models=args.models, impls=args.impls, mode=args.mode, batch_size=args.batch_size,
                      img_size=args.img_size, dtype=args.dtype, threads=args.threads,
                      channels_last=args.channels_last, compile=args.compile, device=args.device,
                      rounds=args.rounds, warmup=args.warmup, memory=args.memory,
                      grad_checkpointing=args.grad_checkpointing, matmul_peak=not args.no_peak,
                      malloc_tune=args.malloc_tune, seed=args.seed)
    result = run_benchmark(cfg, log=log.info)
    text = to_markdown(result)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    return 0
