"""Side-by-side benchmarks of vitkit against timm, torchvision and transformers (``vitkit bench``).

:func:`run_benchmark` measures throughput, FLOPs, the share of the machine's matmul peak and
(optionally) peak memory for each model and implementation; :func:`to_markdown` renders tables.
Peers are imported only when asked for.
"""
from .runner import BenchConfig, run_benchmark, to_markdown

__all__ = ["BenchConfig", "run_benchmark", "to_markdown"]
