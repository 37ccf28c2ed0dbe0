"""Before/after of each speed change, in one process, alternating runs (issue 5).

Variants are named on the command line:

- ``timm``: timm's model of the same name (weights copied from vitkit's, as in ``vitkit bench``);
- ``rev:<git rev>``: vitkit as it was at that commit, imported under another package name
  (``git archive`` of ``src/vitkit`` into a temporary folder), e.g. ``rev:54b13ae`` for the core
  models before any speed work;
- ``head``: the working tree's vitkit; ``head:key=value,...`` runs it under other speed settings
  (:mod:`vitkit.layers.fastpath`), applied around each of its calls: ``head:fast_paths=0`` (the
  reference path everywhere: Swin blocks on the spatial map, no chunks, caches, buffers or in-place
  sums, no class-token tail), ``head:CHUNK_BYTES=0`` (``fastpath.CHUNK_BYTES``: no chunked
  inference; ``n`` bytes per chunk, ``None`` automatic).

All variants share one set of weights (vitkit's state dict, seeded) and one input tensor.

    python benchmarks/ablation.py --model swin_tiny_patch4_window7_224 --threads 2 --rounds 15 \\
        timm rev:54b13ae head:fast_paths=0 head:CHUNK_BYTES=0 head
"""
from __future__ import annotations

import argparse
import importlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def import_revision(rev: str, workdir: Path) -> object:
    """vitkit at git revision ``rev`` as a package named ``vitkit_<rev>`` (its imports are relative)."""
    name = "vitkit_" + "".join(c if c.isalnum() else "_" for c in rev)
    blob = subprocess.run(["git", "archive", rev, "src/vitkit"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(workdir / rev, filter="data")
    (workdir / rev / "src" / "vitkit").rename(workdir / rev / "src" / name)
    sys.path.insert(0, str(workdir / rev / "src"))
    return importlib.import_module(name)


class Settings(torch.nn.Module):
    """A model run under its variant's speed settings. The switch is per thread and the chunk
    budget per process, so they are set around each call (variants alternate in one process)."""

    def __init__(self, model: torch.nn.Module, spec: str) -> None:
        super().__init__()
        self.model, self.fast, self.chunk = model, True, None
        for item in filter(None, spec.split(",")):
            key, _, value = item.partition("=")
            if key == "fast_paths":
                self.fast = bool(int(value))
            elif key == "CHUNK_BYTES":
                self.chunk = None if value == "None" else int(value)
            else:
                raise SystemExit(f"unknown head setting {key!r}: fast_paths=0|1, CHUNK_BYTES=<bytes>|None")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from vitkit.layers import fastpath

        saved, fastpath.CHUNK_BYTES = fastpath.CHUNK_BYTES, self.chunk
        try:
            with fastpath.fast_paths(self.fast):
                return self.model(x)
        finally:
            fastpath.CHUNK_BYTES = saved


def build(variant: str, name: str, state: dict, workdir: Path) -> torch.nn.Module:
    import vitkit

    if variant == "timm":
        from vitkit.benchmark.peers import build_peer

        ref = vitkit.create_model(name)
        ref.load_state_dict(state)
        return build_peer("timm", ref)
    if variant.startswith("rev:"):
        pkg = import_revision(variant[4:], workdir)
        model = pkg.create_model(name)
    elif variant.split(":")[0] == "head":
        model = vitkit.create_model(name)
        model.load_state_dict(state)
        return Settings(model, variant.partition(":")[2]).eval()
    else:
        raise SystemExit(f"unknown variant {variant!r}: timm, rev:<git rev>, head[:key=value,...]")
    model.load_state_dict(state)
    return model.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="+")
    p.add_argument("--model", default="swin_tiny_patch4_window7_224")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--mode", choices=("inference", "train"), default="inference")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "src"))
    import vitkit
    from vitkit.benchmark import measure

    torch.manual_seed(0)
    state = vitkit.create_model(args.model).state_dict()
    x = torch.randn(args.batch_size, *vitkit.create_model(args.model).pretrained_cfg["input_size"])
    fns = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {v: build(v, args.model, state, Path(tmp)) for v in args.variants}
        with torch.no_grad():
            ref = models[args.variants[0]](x)
            diffs = {v: float((m(x) - ref).abs().max()) for v, m in models.items()}
        for v, m in models.items():
            if args.mode == "inference":
                fns[v] = (lambda m: lambda: _infer(m, x))(m)
            else:
                fns[v] = _train_step(m, x)
        load0 = measure.load_average()
        timings = measure.time_alternating(fns, args.rounds, warmup=1, device=torch.device("cpu"))
        load1 = measure.load_average()
    base = timings[args.variants[0]]
    print(f"{args.model} {args.mode} batch {args.batch_size}, {args.threads} threads, {args.rounds} rounds, "
          f"load {load0} -> {load1}")
    print(f"| variant | ms/batch (median) | img/s | speedup vs {args.variants[0]} (paired median: wall, CPU time) "
          "| CPU share | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    out = {}
    for v, t in timings.items():
        sp, spc = measure.paired_speedup(t, base), measure.paired_speedup(t, base, cpu=True)
        print(f"| {v} | {t.median * 1e3:.0f} | {args.batch_size / t.median:.2f} | {sp:.3f}, {spc:.3f} | "
              f"{t.cpu_share():.2f} | {diffs[v]:.1e} |")
        out[v] = dict(wall=t.wall, cpu=t.cpu, median_s=t.median, speedup=sp, speedup_cpu=spc, max_abs_diff=diffs[v])
    if args.json:
        args.json.write_text(json.dumps(dict(model=args.model, mode=args.mode, batch=args.batch_size,
                                             threads=args.threads, load=[load0, load1], variants=out), indent=1))


def _infer(m: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        m(x)


def _train_step(m: torch.nn.Module, x: torch.Tensor):  # noqa: ANN202
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    y = torch.arange(x.shape[0]) % 10

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return step


if __name__ == "__main__":
    main()
