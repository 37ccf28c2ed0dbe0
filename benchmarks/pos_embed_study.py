"""The ViT paper's position-embedding study (Table 8, App. D.4) and its class-token / GAP comparison
(App. D.3), at CPU scale on the real CIFAR-10.

Every run is one ``vitkit train`` process (the library's CLI and Trainer, nothing special-cased),
started one after the other with one torch thread and no data workers, so the study occupies one
core. Same model (``vit_micro_patch4_32``: 6 blocks, D=64, 4 heads, 4×4 patches → 8×8 grid), same
recipe (``cifar10_vit_cpu``: AdamW, cosine, label smoothing 0.1, pad-crop + flip) and the same
seeded training subset per seed for every variant; only ``pos_embed=`` (or ``global_pool=``)
changes. The score is top-1 on the 10,000 CIFAR-10 test images after the last epoch (no selection).

    python benchmarks/pos_embed_study.py --data /tmp/vitkit-data           # the study (about an hour of one core)
    python benchmarks/pos_embed_study.py --data /tmp/vitkit-data --smoke   # a 2-minute check of the plumbing

``--data`` is an image folder with ``train/`` and ``test/`` (the CIFAR-10 archive in
``../shared/data/cifar10`` unpacked), or the archive itself. Runs whose folder already holds a finished
``metrics.jsonl`` are read, not repeated. Writes ``benchmarks/results/pos_embed_study.json`` (every run:
command, accuracy, wall and CPU seconds, load average) and ``pos_embed_study.md`` (the tables).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
KINDS = ("none", "learned_1d", "learned_2d", "relative", "sincos_2d", "rope_2d")  # Table 8's order, then the newer two
LABELS = {
    "none": "No position embedding",
    "learned_1d": "1-D learned (paper default)",
    "learned_2d": "2-D learned, factorised rows/columns",
    "relative": "Relative (App. D.4)",
    "sincos_2d": "2-D sine-cosine, fixed (MAE)",
    "rope_2d": "2-D rotary, axial (RoPE)",
}
# ViT paper Table 8, column "Default/Stem": ViT-B/16 pre-trained on JFT, ImageNet 5-shot linear accuracy
PAPER_TABLE8 = {"none": 61.382, "learned_1d": 64.206, "learned_2d": 64.001, "relative": 64.032}


def run_specs(seeds: list[int], kinds: tuple[str, ...] = KINDS, gap: bool = True) -> list[dict]:
    """Seed by seed (a study cut short still has every variant of its first seeds)."""
    specs = []
    for s in seeds:
        specs += [dict(name=f"{k}-s{s}", study="table8", pos_embed=k, global_pool="token", seed=s) for k in kinds]
        if gap:
            specs.append(dict(name=f"gap-s{s}", study="gap", pos_embed="learned_1d", global_pool="avg", seed=s))
    return specs


def command(spec: dict, args: argparse.Namespace, out: Path) -> list[str]:
    fields = [f"pos_embed={spec['pos_embed']}", f"global_pool={spec['global_pool']}", f"seed={spec['seed']}",
              f"train_examples={args.train_examples}", f"warmup_epochs={args.warmup_epochs}",
              "eval_split=test", f"eval_every={args.epochs}", "num_workers=0", "threads=1", "progress=false"]
    if args.max_steps:
        fields.append(f"max_steps={args.max_steps}")
    return [sys.executable, "-m", "vitkit.cli", "train", "--recipe", "cifar10_vit_cpu", "--data", args.data,
            "--epochs", str(args.epochs), "--out", str(out), *fields]


def finished(run_dir: Path, epochs: int, max_steps: int) -> dict | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    evals = [r for r in rows if r.get("val_acc1") is not None]
    if not evals or (not max_steps and evals[-1].get("epoch") != epochs):
        return None
    return evals[-1]


def run_one(spec: dict, args: argparse.Namespace) -> dict:
    out = Path(args.runs) / spec["name"]
    cmd = command(spec, args, out)
    last = finished(out, args.epochs, args.max_steps)
    rec = dict(spec, command=" ".join(cmd))
    if last is None:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load0 = os.getloadavg()
        t0 = time.time()
        log = out.parent / f"{spec['name']}.log"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            proc = subprocess.run(["nice", "-n", "10", *cmd], stdout=f, stderr=subprocess.STDOUT, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode:
            raise SystemExit(f"run {spec['name']} failed (exit {proc.returncode}); see {log}")
        last = finished(out, args.epochs, args.max_steps)
        if last is None:
            raise SystemExit(f"run {spec['name']} ended without a final evaluation; see {log}")
        rec.update(wall_s=round(time.time() - t0, 1),
                   cpu_s=round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
                   load_before=[round(v, 2) for v in load0], load_after=[round(v, 2) for v in os.getloadavg()])
    rec.update(top1=round(100 * last["val_acc1"], 2), top5=round(100 * last["val_acc5"], 2),
               val_loss=round(last["val_loss"], 4), steps=last.get("step"))
    return rec


def mean_std(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{xs[0]:.2f}" if xs else "—"
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def per_seed(rs: list[dict]) -> str:
    return ", ".join(f"{r['top1']:.2f}" for r in rs)


def report(records: list[dict], args: argparse.Namespace) -> str:
    by = lambda **kw: [r for r in records if all(r[k] == v for k, v in kw.items())]  # noqa: E731
    seeds = sorted({r["seed"] for r in records})
    lines = ["# Position embeddings (ViT Table 8) and class token vs GAP (ViT App. D.3), CIFAR-10 on a CPU", "",
             "Generated by `benchmarks/pos_embed_study.py` (see its docstring for the command); "
             "raw numbers in `pos_embed_study.json`.", "",
             f"Model `vit_micro_patch4_32` (6 blocks, D=64, 4 heads, 4×4 patches: an 8×8 grid), recipe "
             f"`cifar10_vit_cpu`, {args.train_examples} training images (a seeded subset, the same for every "
             f"variant of a seed), {args.epochs} epoch(s), batch 128, warm-up {args.warmup_epochs} epoch; top-1 on "
             f"the 10,000 test images after the last epoch. Seeds {seeds}; mean ± sample std over seeds.", "",
             "| position embedding | `pos_embed=` | top-1 % (mean ± std) | per seed | Δ vs none, per seed "
             "(same data and seed) | paper Table 8 (ViT-B/16, ImageNet 5-shot) |", "|---|---|---|---|---|---|"]
    none = {r["seed"]: r["top1"] for r in by(study="table8", pos_embed="none")}
    for k in [k for k in KINDS if by(study="table8", pos_embed=k)]:
        rs = by(study="table8", pos_embed=k)
        paper = f"{PAPER_TABLE8[k]:.2f}" if k in PAPER_TABLE8 else "—"
        paired = [f"{r['top1'] - none[r['seed']]:+.2f}" for r in rs if r["seed"] in none and k != "none"]
        delta = ", ".join(paired)
        lines.append(f"| {LABELS[k]} | `{k}` | {mean_std([r['top1'] for r in rs])} | "
                     f"{per_seed(rs)} | {delta or '—'} | {paper} |")
    heads = (("[class] token", by(study="table8", pos_embed="learned_1d")), ("global average pooling", by(study="gap")))
    if by(study="gap"):
        lines += ["", "| head | `global_pool=` | top-1 % (mean ± std) | per seed |", "|---|---|---|---|"]
    for label, rs in heads if by(study="gap") else ():
        gp = rs[0]["global_pool"] if rs else ""
        lines.append(f"| {label} | `{gp}` | {mean_std([r['top1'] for r in rs])} | "
                     f"{per_seed(rs)} |")
    timed = [r for r in records if "wall_s" in r]
    if timed:
        lines += ["", f"Time: {len(timed)} runs, {sum(r['wall_s'] for r in timed) / 60:.1f} min wall, "
                  f"{sum(r['cpu_s'] for r in timed) / 60:.1f} min CPU (one thread, `nice -n 10`), on a 2-core "
                  f"machine shared with other jobs (load average {min(r['load_before'][0] for r in timed):.1f}–"
                  f"{max(r['load_after'][0] for r in timed):.1f}); noisy timings.", "",
                  "| run | top-1 % | wall s | CPU s |", "|---|---|---|---|"]
        lines += [f"| {r['name']} | {r['top1']:.2f} | {r['wall_s']} | {r['cpu_s']} |" for r in timed]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="CIFAR-10 image folder (train/, test/) or its archive")
    p.add_argument("--runs", default="/tmp/vitkit-pos-embed-study", help="where the run folders go")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--train-examples", type=int, default=12000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--warmup-epochs", type=float, default=0.3)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="pos_embed kinds to run")
    p.add_argument("--no-gap", action="store_true", help="skip the class-token / GAP runs")
    p.add_argument("--report", action="store_true", help="rewrite the .md from the saved .json (no runs)")
    p.add_argument("--smoke", action="store_true", help="tiny runs to check the plumbing (results not written)")
    p.add_argument("--name", default="pos_embed_study", help="results file stem under benchmarks/results/")
    args = p.parse_args()
    if args.smoke:
        args.train_examples, args.epochs, args.seeds, args.name = 256, 1, [0], "pos_embed_study_smoke"
        args.runs = args.runs + "-smoke"
    if args.report:
        saved = json.loads((RESULTS / f"{args.name}.json").read_text())
        (RESULTS / f"{args.name}.md").write_text(report(saved["runs"], argparse.Namespace(**saved["settings"])))
        return
    records = []
    RESULTS.mkdir(exist_ok=True)
    for spec in run_specs(args.seeds, tuple(args.kinds), not args.no_gap):
        rec = run_one(spec, args)
        records.append(rec)
        print(f"{rec['name']}: top-1 {rec['top1']:.2f}%  ({rec.get('wall_s', 'cached')} s)", flush=True)
        if not args.smoke:
            (RESULTS / f"{args.name}.json").write_text(json.dumps(
                dict(settings=vars(args), runs=records), indent=1) + "\n")
            (RESULTS / f"{args.name}.md").write_text(report(records, args))
    if args.smoke:
        print(report(records, args))


if __name__ == "__main__":
    main()
