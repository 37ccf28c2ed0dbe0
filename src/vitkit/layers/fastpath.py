"""The one switch for vitkit's speed paths, and the one test each of them asks before it runs.

Every model computes the paper's operations module by module (the *reference* path). Next to it
vitkit has faster ways to the same numbers: ViT's in-place residual sums, [class]-token tail and
chunked inference (:mod:`vitkit.models.vit_fast`), Swin's window-ordered residual stream and
chunked window attention (:mod:`vitkit.models.swin_fast`), Swin's mask and index caches, the MLP's
in-place GELU, the reused activation buffers (:mod:`vitkit.layers.workspace`) and, in training on a
CPU, the allocator setting of :func:`vitkit.train.allocator.keep_freed_memory`.

One switch turns all of them on (the default) or off::

    with vitkit.fast_paths(False):   # the reference computation everywhere, in this thread
        logits = model(x)

:func:`set_fast_paths` sets the process-wide default; :func:`fast_paths` overrides it for the
current thread until the ``with`` block ends (nestable). Each speed path asks :func:`may_take`
with the modules whose calls it changes or skips, and whether it is for inference only.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules import module as _module

_default = True  # set_fast_paths(); a thread's fast_paths() block overrides it
_local = threading.local()


def set_fast_paths(enabled: bool) -> None:
    """Turn the speed paths on or off for the whole process (threads inside a
    :func:`fast_paths` block keep their own setting until it ends)."""
    global _default
    _default = bool(enabled)


def fast_paths_enabled() -> bool:
    """Whether the speed paths are on in this thread."""
    local = getattr(_local, "enabled", None)
    return _default if local is None else local


@contextmanager
def fast_paths(enabled: bool = True) -> Iterator[None]:
    """``with fast_paths(False):`` runs the reference path of every model in this thread;
    ``fast_paths(True)`` turns them back on inside it. The previous setting returns on exit."""
    previous = getattr(_local, "enabled", None)
    _local.enabled = bool(enabled)
    try:
        yield
    finally:
        _local.enabled = previous


def autocast_active() -> bool:
    """True inside ``torch.autocast`` on the CPU or a GPU: the in-place paths need one dtype."""
    return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")


def tracing() -> bool:
    """A graph is being recorded: ``torch.compile``, ``torch.export`` (and the ONNX exporter built
    on it) or ``torch.jit.trace``. Speed paths with Python-side state (caches, reused buffers,
    in-place writes into caller's tensors, loops over the batch) must not run then."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def symbolic(*sizes: object) -> bool:
    """Any of ``sizes`` is a symbolic size (``torch.SymInt``: ``torch.export`` with dynamic shapes,
    ``torch.compile(dynamic=True)``). Shape arithmetic must then not branch on the value (a branch
    would freeze the size, or narrow the sizes the graph accepts); it takes the branch-free form."""
    return any(isinstance(s, torch.SymInt) for s in sizes)


def _watched(modules: tuple, training: bool) -> bool:
    """One walk over the modules' subtrees: a forward (pre-)hook on any (or a global one), or, with
    ``training``, any of them in training mode."""
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    stack = list(modules)
    while stack:
        m = stack.pop()
        if m is None:
            continue
        if m._forward_hooks or m._forward_pre_hooks or (training and m.training):
            return True
        stack.extend(m._modules.values())
    return False


def may_take(*modules: nn.Module, inference: bool = False, traceable: bool = False) -> bool:
    """May a speed path run now in place of the reference path of ``modules``?

    Yes when the switch is on (:func:`fast_paths_enabled`), no graph is being recorded
    (:func:`tracing`: ``torch.compile``, ``torch.export``, ONNX export, ``torch.jit.trace``) unless
    the path is ``traceable`` (plain tensor operations, no Python-side state, no branch or loop on
    a size that may be symbolic), no forward
    or forward-pre hook watches ``modules`` or any of their submodules (nor a global one: hooks
    expect the reference layout and calls), and, for an ``inference`` path, autograd and autocast
    are off and neither ``modules`` nor their submodules are in training mode. Without ``modules``
    (caches, which skip no module call) hooks do not matter.
    """
    if not fast_paths_enabled():
        return False
    if not traceable and tracing():
        return False
    if inference and (torch.is_grad_enabled() or autocast_active()):
        return False
    return not (modules and _watched(modules, inference))


# ------------------------------------------------------------------------- chunked inference
INFERENCE_CHUNK_BYTES = 8 << 20  # inference: MLP activation per chunk of images, about (fits the cache)
MIN_CHUNK_TOKENS = 768  # ... but enough rows per chunk to keep the matmuls efficient

# The one tuning knob of chunked inference (ViT blocks, Swin stages), for the whole process:
# None is automatic (INFERENCE_CHUNK_BYTES with one intra-op thread, else off, see chunk_budget),
# 0 turns chunking off, n > 0 aims at n bytes of MLP activation per chunk.
CHUNK_BYTES: int | None = None


def chunk_budget() -> int:
    """Bytes of MLP activation per inference chunk (0: off), from :data:`CHUNK_BYTES`. Automatic:
    chunk with one intra-op thread only. Each chunk multiplies the kernel calls, and with several
    threads every call is a thread-pool barrier; on a shared CPU (the other core busy) those waits
    cost more than the cache misses and page faults that chunking saves (benchmarks/RESULTS.md)."""
    if CHUNK_BYTES is not None:
        return CHUNK_BYTES
    return INFERENCE_CHUNK_BYTES if torch.get_num_threads() == 1 else 0


def inference_chunk(batch: int, tokens: int, hidden: int, itemsize: int,
                    budget: int = INFERENCE_CHUNK_BYTES, min_tokens: int = MIN_CHUNK_TOKENS) -> int:
    """Images per chunk when an inference forward runs a batch in pieces (0: in one piece).

    Chunks hold about ``budget`` bytes of the widest activation (``hidden`` features a token)
    but at least ``min_tokens`` tokens, and are balanced: 8 images in chunks of at most 6 run
    as 4 + 4, not 6 + 2. Outputs are the same; the big intermediates stay in cache and are not
    allocated afresh (page faults) at full batch size.
    """
    per_image = max(1, tokens * hidden * itemsize)
    chunk = max(-(-min_tokens // max(tokens, 1)), budget // per_image, 1)
    if budget <= 0 or chunk >= batch:
        return 0
    pieces = -(-batch // chunk)
    return -(-batch // pieces)
