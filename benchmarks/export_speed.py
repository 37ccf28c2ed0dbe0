"""CPU inference speed of exported models: vitkit eager vs vitkit → onnxruntime vs timm eager vs
timm → onnxruntime, ViT-B/16 and Swin-T, batch 1 and 8 (issue 15). One command::

    python benchmarks/export_speed.py --threads 1          # writes benchmarks/results/export_speed.md (+ .json)

Every implementation runs in this process on the same input, in alternating rounds
(:func:`vitkit.benchmark.run_benchmark`, the rows of ``vitkit bench``); the ONNX files are exported
once per model (vitkit: H×W baked, batch dynamic; also vitkit's fully dynamic file; timm: its
dynamo export) and shared by both batch sizes. img/s is the median round.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ["vitkit", "vitkit-onnxruntime", "vitkit-onnxruntime-dynamic", "timm", "timm-onnxruntime"]
MODELS = ["vit_base_patch16_224", "swin_tiny_patch4_window7_224"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "export_speed.md")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from vitkit.benchmark import BenchConfig, run_benchmark, to_markdown

    results, tables = [], []
    for batch in args.batches:
        cfg = BenchConfig(models=args.models, impls=IMPLS, batch_size=batch, threads=args.threads,
                          rounds=args.rounds, warmup=2, matmul_peak=False)
        res = run_benchmark(cfg, log=lambda s: print(s, file=sys.stderr, flush=True))
        results.append(res)
        tables.append(to_markdown(res))
    lines = ["# Exported models: CPU inference, eager vs onnxruntime, vitkit vs timm", "",
             f"`python benchmarks/export_speed.py --threads {args.threads}`; {results[0]['date']}; "
             f"{results[0]['machine'].get('cpu')}, torch {results[0]['machine']['torch']}, "
             f"timm {results[0]['machine'].get('timm')}, onnxruntime {_version('onnxruntime')}; load average "
             f"{results[0]['load_before']:.1f} at the start, {results[-1]['load_after']:.1f} at the end.", "",
             "img/s (median of alternating rounds; same weights, same input, same process):", "",
             "| model | batch | " + " | ".join(IMPLS) + " |", "|---|---:|" + "---:|" * len(IMPLS)]
    for res in results:
        for e in res["models"]:
            cells = []
            for impl in IMPLS:
                r = e["rows"].get(impl, {})
                cells.append(f"{r['img_per_s']:.2f}" if "img_per_s" in r else f"— ({r.get('error', 'not run')[:80]})")
            lines.append(f"| {e['model']} | {res['config']['batch_size']} | " + " | ".join(cells) + " |")
    lines += ["", "ONNX files: " + "; ".join(sorted({f"{impl}: {r['onnx_shapes']}" for res in results
                                                     for e in res["models"] for impl, r in e["rows"].items()
                                                     if "onnx_shapes" in r})), "",
              "## Full tables (`vitkit bench` format)", ""] + tables
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))
    return 0


def _version(pkg: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
