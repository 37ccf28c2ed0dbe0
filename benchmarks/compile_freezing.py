"""Eager against torch.compile with inductor's ``freezing`` (weights folded and prepacked, the
CPU inference setting), vitkit and timm on the same weights, one process, alternating rounds.

    python benchmarks/compile_freezing.py swin_tiny_patch4_window7_224 [--rounds 6] [--threads 2]

Compiling takes a minute or more per model on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    import vitkit
    from vitkit.benchmark.measure import load_average, paired_speedup, time_alternating
    from vitkit.benchmark.peers import build_peer

    vk = vitkit.create_model(args.model).eval()
    tm = build_peer("timm", vk).eval()
    x = torch.randn(args.batch_size, *vk.pretrained_cfg["input_size"])

    def call(m):  # noqa: ANN001, ANN202
        def f():  # noqa: ANN202
            with torch.no_grad():
                return m(x)
        return f

    fns = {"vitkit": call(vk), "timm": call(tm)}
    for name, m in (("vitkit compiled+frozen", vk), ("timm compiled+frozen", tm)):
        compiled = torch.compile(m)
        t0 = time.perf_counter()
        call(compiled)()
        print(f"{name}: compile {time.perf_counter() - t0:.0f} s", flush=True)
        fns[name] = call(compiled)
    ref = fns["vitkit"]()
    diffs = {k: float((f() - ref).abs().max()) for k, f in fns.items()}
    load0 = load_average()
    r = time_alternating(fns, args.rounds, 1, torch.device("cpu"))
    print(f"{args.model}, batch {args.batch_size}, {args.threads} threads, {args.rounds} rounds, "
          f"load {load0} -> {load_average()}")
    print("| variant | ms/batch (median) | vs timm eager | vs timm compiled+frozen | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    for k, v in r.items():
        print(f"| {k} | {v.median * 1e3:.0f} | {paired_speedup(v, r['timm']):.3f} | "
              f"{paired_speedup(v, r['timm compiled+frozen']):.3f} | {diffs[k]:.1e} |")


if __name__ == "__main__":
    main()
