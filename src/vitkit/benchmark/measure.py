"""Measurements: alternating timed runs, forward FLOPs, the machine's matrix-multiply peak, peak memory.

Shared machines are noisy, so every implementation runs in the same process on the same inputs,
in rounds whose order rotates; the medians and the per-round (paired) ratios are what to read.
Each timed call also records the process CPU time it used, so contention from other jobs shows
up as a CPU share below the thread count.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.utils import flop_counter

_CPU_FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_CPU_FLASH_BWD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def _register_cpu_flash_flops() -> None:
    """torch's counter knows the CUDA attention kernels but not the CPU flash kernel: without this,
    implementations using it would be credited no attention FLOPs at all."""
    if _CPU_FLASH not in flop_counter.flop_registry:
        @flop_counter.register_flop_formula(_CPU_FLASH, get_raw=True)
        def _fwd(query, key, value, *args, out_val=None, **kwargs) -> int:  # noqa: ANN001
            return flop_counter.sdpa_flop_count(query.shape, key.shape, value.shape)

    if _CPU_FLASH_BWD not in flop_counter.flop_registry:
        @flop_counter.register_flop_formula(_CPU_FLASH_BWD, get_raw=True)
        def _bwd(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:  # noqa: ANN001
            return flop_counter.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call (2 per multiply-add; matmuls, convolutions and attention kernels)."""
    _register_cpu_flash_flops()
    with flop_counter.FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PEAK_N = 2048  # side of the square matmul that measures the machine's peak


def matmul_call(device: torch.device, dtype: torch.dtype = torch.float32, n: int = PEAK_N) -> Callable[[], Any]:
    """One n×n by n×n matmul (2n³ FLOPs): timed among the models' calls, it gives the machine's
    practical peak under the same load (see :func:`time_alternating`)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return lambda: a @ b


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, n: int = PEAK_N, reps: int = 5) -> float:
    """Median FLOP/s of an n×n by n×n matmul: the machine's practical peak at the current threads."""
    return 2 * n**3 / time_alternating({"mm": matmul_call(device, dtype, n)}, reps, 1, device)["mm"].median


@dataclass
class Timing:
    """Per-call wall seconds and process CPU seconds of one implementation."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    def cpu_share(self) -> float:
        """Mean CPU seconds per wall second: the cores this process really got (≤ threads)."""
        return sum(self.cpu) / max(sum(self.wall), 1e-12)


def time_alternating(fns: dict[str, Callable[[], Any]], rounds: int, warmup: int, device: torch.device,
                     calls_per_round: int = 1) -> dict[str, Timing]:
    """Run each function ``warmup`` times, then ``rounds`` rounds of ``calls_per_round`` timed calls
    each, the order of the implementations rotating from round to round."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    synchronize(device)
    out = {name: Timing() for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            for _ in range(calls_per_round):
                synchronize(device)
                c0, t0 = time.process_time(), time.perf_counter()
                fns[name]()
                synchronize(device)
                out[name].wall.append(time.perf_counter() - t0)
                out[name].cpu.append(time.process_time() - c0)
    return out


def paired_speedup(base: Timing, other: Timing, cpu: bool = False) -> float:
    """Median over rounds of other/base time (> 1: ``base`` is faster); calls pair by index.
    ``cpu`` compares process CPU time instead of wall time: less sensitive to other jobs taking
    the cores away (with 1 thread it is the work done), but it counts threads' spin-waits."""
    a, b = (base.cpu, other.cpu) if cpu else (base.wall, other.wall)
    return statistics.median(o / t for t, o in zip(a, b))


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# ---------------------------------------------------------------------------------------- memory
def _rss_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not found in /proc/self/status")


def _release_free_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _memory_child(queue: Any, build: Callable[[], Callable[[], Any]], threads: int) -> None:
    try:
        torch.set_num_threads(threads)
        step = build()
        import gc

        gc.collect()
        _release_free_memory()
        before = _rss_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS watermark (VmHWM) to the current RSS
        step()
        queue.put(("ok", (_rss_kib("VmHWM") - before) * 1024))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises
        queue.put(("error", f"{type(e).__name__}: {e}"))


def peak_memory_cpu(build: Callable[[], Callable[[], Any]], threads: int = 1, timeout: float = 1800) -> int:
    """Bytes by which the resident set grows during the first call of ``build()``'s step, measured
    in a fresh subprocess (peak RSS via /proc: VmHWM reset after the model is built, free heap
    returned to the OS first). ``build`` must be picklable (a module-level function or partial)."""
    if not os.path.exists("/proc/self/clear_refs"):
        raise RuntimeError("CPU peak memory needs Linux /proc (VmHWM and clear_refs)")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(queue, build, threads))
    proc.start()
    try:
        status, value = queue.get(timeout=timeout)
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
    if status != "ok":
        raise RuntimeError(f"memory measurement failed in the subprocess: {value}")
    return int(value)


def peak_memory_cuda(step: Callable[[], Any], device: torch.device) -> int:
    """Bytes allocated above the current level at the peak of one call (CUDA allocator stats)."""
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    step()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base
