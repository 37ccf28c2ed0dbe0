"""``vitkit export``: a model name, a checkpoint or a run folder → ONNX or a ``torch.export`` program,
dynamic batch and H×W by default (see :mod:`vitkit.export`, docs/export.md)."""
from __future__ import annotations

import argparse

EPILOG = """examples:
  vitkit export swin_tiny_patch4_window7_224 swin_t.onnx --pretrained     # any batch, any HxW
  vitkit export runs/c10 vit.pt2 --static 224                             # a run folder, one size
  vitkit export vit_base_patch16_224.augreg_in21k_ft_in1k vit.onnx --pretrained --opset 18
"""


def _static(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        sizes = [int(p) for p in parts if p.strip()]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--static takes SIZE or HxW (e.g. 224 or 252x300), not {text!r}")
    return (sizes[0], sizes[-1])


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (.onnx) or torch.export (.pt2), any size",
                       description="Export a model to ONNX (dynamo exporter) or a torch.export program. Dynamic "
                                   "batch and HxW by default (ViT: multiples of the patch stride; Swin: any size); "
                                   "the preprocessing record and label names go into the file's metadata.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="registered model name (or name.tag), weights file / training checkpoint, "
                                 "or run folder (its checkpoint-best.pt)")
    p.add_argument("out", help="output file: .onnx or .pt2 (the format follows the suffix)")
    p.add_argument("--pretrained", nargs="?", const=True, default=False, metavar="TAG",
                   help="for a model name: load its published weights (default tag, or TAG)")
    p.add_argument("--static", type=_static, metavar="SIZE", help="bake one input size, SIZE or HxW (the batch "
                   "stays dynamic; position embeddings are resampled to it and folded in)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".onnx", ".pt2"):
        raise ValueError(f"output {args.out!r}: use a .onnx or a .pt2 file name")
    from ..export import DEFAULT_OPSET, export_onnx, export_program
    from ..export.core import require

    if suffix == ".onnx":
        try:
            require("onnx", "onnxscript")  # before the (slow) trace
        except ImportError as e:
            raise ValueError(str(e)) from None  # one clear line, naming the extra
        export_onnx(args.model, out, static=args.static, opset=args.opset or DEFAULT_OPSET,
                    pretrained=args.pretrained)
    else:
        if args.opset is not None:
            raise ValueError("--opset applies to ONNX files, not to a .pt2 program")
        export_program(args.model, out, static=args.static, pretrained=args.pretrained)
    shape = f"static {args.static[0]}x{args.static[1]}" if args.static else "dynamic batch and HxW"
    print(f"{args.model} -> {out} ({shape}, {out.stat().st_size / 2**20:.1f} MiB)")
    return 0
