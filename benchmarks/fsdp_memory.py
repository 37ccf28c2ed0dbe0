"""Training-state memory per process, DDP against FSDP (``parallel=fsdp``), under torchrun.

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 benchmarks/fsdp_memory.py \\
        --model vit_base_patch16_224 --batch-size 2

Each process builds the model, wraps it as the trainer does (``DistributedDataParallel``, or
:func:`vitkit.train.fsdp.shard_model`), runs ``--steps`` AdamW steps on random images, and reports
the bytes of the parameters, gradients and optimiser state it holds (local shards for FSDP), the
peak resident memory of the process (``ru_maxrss``, which includes everything else: activations,
gathered blocks, the framework) and the median step time. Rank 0 prints one markdown row per mode.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
import torch.distributed as dist
from torch import nn


def local_bytes(tensors) -> int:
    total = 0
    for t in tensors:
        t = t.to_local() if hasattr(t, "to_local") else t
        total += t.numel() * t.element_size()
    return total


def run(mode: str, args: argparse.Namespace) -> dict:
    import vitkit
    from vitkit.train.fsdp import shard_model

    torch.manual_seed(0)
    model = vitkit.create_model(args.model)
    if mode == "fsdp":
        shard_model(model)
        fwd = model
    else:
        fwd = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch_size, 3, 224, 224)
    y = torch.randint(0, 1000, (args.batch_size,))
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = nn.functional.cross_entropy(fwd(x), y)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
        opt.zero_grad(set_to_none=False)  # keep the gradients allocated: they are part of the state
    params = local_bytes(model.parameters())
    grads = local_bytes(p.grad for p in model.parameters() if p.grad is not None)
    state = local_bytes(v for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0)
    return dict(mode=mode, params=params, grads=grads, state=state,
                rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, step=statistics.median(times[1:] or times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vit_base_patch16_224")
    p.add_argument("--batch-size", type=int, default=2, help="per process")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--mode", choices=("ddp", "fsdp"), required=True,
                   help="one mode per launch: peak RSS is per process")
    args = p.parse_args()
    dist.init_process_group("gloo")
    r = run(args.mode, args)
    rows = [None] * dist.get_world_size()
    dist.all_gather_object(rows, r)
    if dist.get_rank() == 0:
        mb = 1 << 20
        for rank, row in enumerate(rows):
            print(f"| {args.model} | {row['mode']} | {rank} | {row['params'] / mb:.0f} | {row['grads'] / mb:.0f} | "
                  f"{row['state'] / mb:.0f} | {(row['params'] + row['grads'] + row['state']) / mb:.0f} | "
                  f"{row['rss'] / mb:.0f} | {row['step']:.2f} |")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
