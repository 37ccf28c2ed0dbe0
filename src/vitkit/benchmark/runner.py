"""Side-by-side benchmark of vitkit and its peers: configuration in, JSON-able result and markdown out.

For each model: vitkit builds it (seeded random weights), every peer gets the same weights
(:mod:`.peers`) and must reproduce vitkit's logits on the benchmark input; then all run on the
same input tensor in the same process, alternating (:func:`.measure.time_alternating`).
Training steps are forward + cross-entropy + backward + ``torch.optim.AdamW`` (torch's defaults).
"""
from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import create_model
from ..train.allocator import keep_freed_memory
from . import measure
from .onnx import ORT_IMPLS
from .peers import IMPLS, PeerUnsupported, build_peer

MODES = ("inference", "train")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class BenchConfig:
    """What to measure. ``threads`` None keeps torch's default; ``img_size`` None the model's own."""

    models: list[str] = field(default_factory=lambda: ["vit_base_patch16_224", "swin_tiny_patch4_window7_224"])
    impls: list[str] = field(default_factory=lambda: list(IMPLS))
    mode: str = "inference"
    batch_size: int = 8
    img_size: int | None = None
    dtype: str = "float32"
    threads: int | None = None
    channels_last: bool = False
    compile: bool = False
    device: str = "cpu"
    rounds: int = 5
    warmup: int = 1
    memory: bool = False
    grad_checkpointing: bool = False
    matmul_peak: bool = True
    malloc_tune: bool = False
    seed: int = 0

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}; choose one of {', '.join(MODES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r}; choose one of {', '.join(DTYPES)}")
        bad = [i for i in self.impls if i not in IMPLS + ORT_IMPLS]
        if bad or not self.impls:
            raise ValueError(f"implementations {bad or '(none)'} unknown; choose from {', '.join(IMPLS + ORT_IMPLS)}")
        if any(i in ORT_IMPLS for i in self.impls) and (self.mode != "inference" or self.dtype != "float32"
                                                         or self.device != "cpu" or self.compile):
            raise ValueError("the onnxruntime rows measure float32 CPU inference only (no --compile)")
        if self.batch_size < 1 or self.rounds < 1 or self.warmup < 0:
            raise ValueError("batch_size and rounds must be ≥ 1 and warmup ≥ 0")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available here; use --device cpu")


def _input(model: nn.Module, cfg: BenchConfig, device: torch.device) -> torch.Tensor:
    c, h, w = model.pretrained_cfg["input_size"]
    if cfg.img_size:
        h = w = cfg.img_size
    g = torch.Generator().manual_seed(cfg.seed + 1)
    x = torch.randn(cfg.batch_size, c, h, w, generator=g).to(device=device, dtype=DTYPES[cfg.dtype])
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def _vitkit_model(name: str, cfg: BenchConfig) -> nn.Module:
    torch.manual_seed(cfg.seed)
    kwargs = {"img_size": cfg.img_size} if cfg.img_size else {}
    return create_model(name, **kwargs).eval()


def _prepare(model: nn.Module, cfg: BenchConfig, device: torch.device) -> nn.Module:
    model = model.to(device=device, dtype=DTYPES[cfg.dtype])
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.grad_checkpointing:
        inner = getattr(model, "model", model)
        if hasattr(inner, "set_grad_checkpointing"):
            inner.set_grad_checkpointing(True)
        elif hasattr(inner, "gradient_checkpointing_enable"):  # transformers
            inner.gradient_checkpointing_enable()
        else:  # torchvision has no switch: say so rather than measure something else
            raise PeerUnsupported("this implementation has no gradient checkpointing switch")
    return model


def _step(model: nn.Module, x: torch.Tensor, cfg: BenchConfig, num_classes: int) -> Callable[[], Any]:
    """One benchmark call: an inference forward or a full training step."""
    run = torch.compile(model) if cfg.compile else model
    if cfg.mode == "inference":
        model.eval()

        def infer() -> None:
            with torch.inference_mode():
                run(x)
        return infer
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    y = torch.randint(0, num_classes, (x.shape[0],), generator=torch.Generator().manual_seed(cfg.seed + 2)).to(x.device)

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(run(x).float(), y).backward()
        opt.step()
    return train


def _memory_build(name: str, impl: str, cfg_dict: dict[str, Any]) -> Callable[[], Any]:
    """Module-level (picklable) builder for :func:`measure.peak_memory_cpu`."""
    cfg = BenchConfig(**cfg_dict)
    device = torch.device(cfg.device)
    vk = _vitkit_model(name, cfg)
    x = _input(vk, cfg, device)
    model = _prepare(build_peer(impl, vk), cfg, device)
    del vk
    return _step(model, x, cfg, vk_classes(model, x))


def vk_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model.eval()(x[:1]).shape[-1])


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "torch": torch.__version__, "cpu_count": __import__("os").cpu_count(),
                            "torch_threads": torch.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    for pkg in ("timm", "torchvision", "transformers"):
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            info[pkg] = None
    return info


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Measure every model of ``cfg`` for every implementation; see the module docstring."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.malloc_tune and not keep_freed_memory():
        raise ValueError("--malloc-tune needs glibc (Linux); set up jemalloc or tcmalloc instead")
    device = torch.device(cfg.device)
    result: dict[str, Any] = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                              "config": asdict(cfg), "machine": machine_info(device),
                              "load_before": measure.load_average(), "models": []}
    for name in cfg.models:
        result["models"].append(_run_model(name, cfg, device, log))
    result["load_after"] = measure.load_average()
    return result


def _run_model(name: str, cfg: BenchConfig, device: torch.device, log: Callable[[str], None]) -> dict[str, Any]:
    vk = _vitkit_model(name, cfg)
    x = _input(vk, cfg, device)
    entry: dict[str, Any] = {"model": name, "input": list(x.shape), "rows": {}}
    with torch.no_grad():
        ref = _prepare(vk, BenchConfig(dtype=cfg.dtype, channels_last=cfg.channels_last), device)(x).float()
        probe = x[:1]
        fwd = measure.count_flops(lambda: vk(probe))
    entry["flops_per_image_forward"] = fwd
    flops_per_image = fwd * (3 if cfg.mode == "train" else 1)  # backward ≈ 2× forward
    steps: dict[str, Callable[[], Any]] = {}
    for impl in cfg.impls:
        row: dict[str, Any] = {}
        entry["rows"][impl] = row
        if impl in ORT_IMPLS:
            try:
                from .onnx import session_step

                steps[impl], out, row["onnx_shapes"] = session_step(impl, vk, x, cfg.threads,
                                                                    lambda: build_peer("timm", vk))
                row["max_abs_diff_vs_vitkit"] = float((out.float() - ref).abs().max())
            except Exception as e:  # noqa: BLE001  (an export the exporter cannot do is this row's result)
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
                log(f"{name} {impl}: skipped ({row['error']})")
            continue
        try:
            model = _prepare(build_peer(impl, vk) if impl != "vitkit" else vk, cfg, device)
            with torch.no_grad():
                row["max_abs_diff_vs_vitkit"] = float((model.eval()(x).float() - ref).abs().max())
            steps[impl] = _step(model, x, cfg, ref.shape[-1])
        except (PeerUnsupported, ImportError, ValueError, RuntimeError) as e:
            row["error"] = f"{type(e).__name__}: {e}"
            log(f"{name} {impl}: skipped ({row['error']})")
    if cfg.compile:
        for impl, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            entry["rows"][impl]["compile_s"] = time.perf_counter() - t0
    timed = dict(steps)
    if cfg.matmul_peak:  # the peak is measured in the same rounds, under the same load
        timed["matmul peak"] = measure.matmul_call(device, DTYPES[cfg.dtype])
    timings = measure.time_alternating(timed, cfg.rounds, cfg.warmup, device)
    peak = None
    if cfg.matmul_peak:
        peak = entry["matmul_peak_flops"] = 2 * measure.PEAK_N**3 / timings.pop("matmul peak").median
        log(f"matmul peak during these rounds: {peak / 1e9:.1f} GFLOP/s")
    base = timings.get("vitkit")
    for impl, t in timings.items():
        row = entry["rows"][impl]
        row.update(ms_per_batch=t.median * 1e3, img_per_s=cfg.batch_size / t.median, wall_s=t.wall,
                   cpu_share=t.cpu_share())
        if base is not None:
            row["vitkit_speedup"] = measure.paired_speedup(base, t)  # this impl's time / vitkit's
            row["vitkit_speedup_cpu"] = measure.paired_speedup(base, t, cpu=True)
        if peak:
            row["peak_fraction"] = flops_per_image * row["img_per_s"] / peak
        log(f"{name} {impl}: {row['img_per_s']:.2f} img/s ({row['ms_per_batch']:.0f} ms/batch), "
            f"vitkit ×{row.get('vitkit_speedup', float('nan')):.3f}")
    if cfg.memory:
        for impl in steps:
            try:
                if device.type == "cuda":
                    raise NotImplementedError
                build = functools.partial(_memory_build, name, impl, asdict(cfg))
                entry["rows"][impl]["peak_memory_bytes"] = measure.peak_memory_cpu(build, cfg.threads or 1)
            except NotImplementedError:
                entry["rows"][impl]["peak_memory_bytes"] = measure.peak_memory_cuda(steps[impl], device)
            except RuntimeError as e:
                entry["rows"][impl]["memory_error"] = str(e)
    return entry


def _num(v: float | None) -> str:
    return "?" if v is None else f"{v:.1f}"


def to_markdown(result: dict[str, Any]) -> str:
    """One table per model: throughput, paired speedup of vitkit, share of the matmul peak."""
    cfg, m = result["config"], result["machine"]
    lines = [f"{cfg['mode']}, batch {cfg['batch_size']}, {cfg['dtype']}, threads {m['torch_threads']}, "
             f"device {cfg['device']}{', channels-last' if cfg['channels_last'] else ''}"
             f"{', torch.compile' if cfg['compile'] else ''}{', grad checkpointing' if cfg['grad_checkpointing'] else ''}"
             f"{', malloc tuned' if cfg.get('malloc_tune') else ''}; "
             f"{cfg['rounds']} alternating rounds; {result['date']}; {m.get('gpu') or m.get('cpu')}, torch {m['torch']}; "
             f"load avg {_num(result['load_before'])} → {_num(result['load_after'])}", ""]
    for e in result["models"]:
        peak = e.get("matmul_peak_flops")
        lines += [f"**{e['model']}** — input {tuple(e['input'])}, forward {e['flops_per_image_forward'] / 1e9:.2f} "
                  "GFLOP/image" + (f"; {cfg['dtype']} matmul peak in the same rounds {peak / 1e9:.1f} GFLOP/s"
                                   if peak else ""), "",
                  "| impl | img/s | ms/batch (median) | vitkit speedup (paired median: wall, CPU time) | "
                  "% of matmul peak | CPU share | peak memory (MB) | max abs diff vs vitkit |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for impl, r in e["rows"].items():
            if "ms_per_batch" not in r:
                lines.append(f"| {impl} | — | — | — | — | — | — | {r.get('error', 'not run')} |")
                continue
            cells = [impl, f"{r['img_per_s']:.2f}", f"{r['ms_per_batch']:.0f}",
                     f"{r['vitkit_speedup']:.3f}, {r['vitkit_speedup_cpu']:.3f}" if "vitkit_speedup" in r else "—",
                     f"{100 * r['peak_fraction']:.0f}%" if "peak_fraction" in r else "—",
                     f"{r['cpu_share']:.2f}",
                     f"{r['peak_memory_bytes'] / 2**20:.0f}" if "peak_memory_bytes" in r else "—",
                     f"{r['max_abs_diff_vs_vitkit']:.1e}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
