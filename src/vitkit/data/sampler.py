"""A distributed, resumable sampler that also seeds each sample's augmentation.

Like ``torch.utils.data.DistributedSampler`` — one permutation per epoch from ``(seed, epoch)``,
rank r takes positions r, r+W, r+2W, … — plus two things exact resumption needs:

- ``set_epoch(epoch, start)`` skips the first ``start`` samples of this rank's share, so a run
  resumed mid-epoch sees exactly the samples it had not seen yet;
- it yields ``(index, seed)`` with ``seed = mix(seed, epoch, index)``: the dataset runs the
  random transform under that seed (see :class:`vitkit.data.images.ImageDataset`), so each sample's
  augmentation is the same whatever the number of workers or ranks and whenever the run resumed.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch.utils.data import Sampler

_MASK64 = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """Combine integers into one well-spread 63-bit seed (splitmix64 finaliser over each value)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _MASK64
        h ^= h >> 31
    return h >> 1


def seeded_call(seed: int | None, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with the CPU generator seeded by ``seed`` and restored afterwards (``seed``
    None: plainly). The random transforms (torchvision's included) draw from that generator, so an
    item's augmentation is a function of its seed alone."""
    if seed is None:
        return fn(*args)
    with torch.random.fork_rng(devices=[]):
        # the CPU generator only: torch.manual_seed would also queue a CUDA re-seed,
        # which records a stack trace per call (milliseconds per sample)
        torch.default_generator.manual_seed(seed)
        return fn(*args)


def split_item(item: int | tuple[int, int]) -> tuple[int, int | None]:
    """A dataset key from :class:`ShardedSampler`: ``i`` or ``(i, seed)`` → ``(i, seed or None)``."""
    return item if isinstance(item, tuple) else (item, None)


class ShardedSampler(Sampler):
    """Indices of a dataset of ``size`` items for rank ``rank`` of ``num_replicas``.

    ``shuffle`` draws a new permutation each epoch; without it the order is 0..size-1.
    ``num_samples`` caps this rank's share per epoch (the loop sets it to a whole number of
    optimizer steps); by default every rank gets ⌊size / W⌋ items when ``drop_last`` and
    ⌈size / W⌉ otherwise (the last positions padded from the start, as DistributedSampler does).
    ``seeded`` makes it yield ``(index, seed)``; ``False`` yields plain indices.
    """

    def __init__(self, size: int, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True, num_samples: int | None = None,
                 seeded: bool = True) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.size, self.num_replicas, self.rank = size, num_replicas, rank
        self.shuffle, self.seed, self.drop_last, self.seeded = shuffle, seed, drop_last, seeded
        per_rank = size // num_replicas if drop_last else -(-size // num_replicas)
        if num_samples is not None and num_samples > per_rank:
            raise ValueError(f"num_samples={num_samples} exceeds this rank's share of {per_rank}")
        self.num_samples = per_rank if num_samples is None else num_samples
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and skip this rank's first ``start`` samples."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start={start} is outside 0..{self.num_samples}")
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.num_replicas * (self.size // self.num_replicas if self.drop_last
                                     else -(-self.size // self.num_replicas))
        while len(order) < total:  # pad (only without drop_last)
            order += order[: total - len(order)]
        return order[:total]

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        mine = self._order()[self.rank::self.num_replicas][self.start:self.num_samples]
        for i in mine:
            yield (i, mix_seed(self.seed, self.epoch, i)) if self.seeded else i

    def __len__(self) -> int:
        return self.num_samples - self.start
