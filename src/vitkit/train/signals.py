"""SIGTERM and SIGINT during training: stop at a point the checkpoint can describe exactly.

Cluster schedulers (SLURM, Kubernetes) and torchrun's elastic agent send SIGTERM before they kill a
job; Ctrl-C sends SIGINT; a closed terminal SIGHUP. While :meth:`Trainer.fit` runs, :class:`StopSignals` replaces both
handlers. In one process the handler raises :class:`~vitkit.train.errors.Interrupted` at once
(outside the few lines that update the weights and the run's position together, where it waits
for their end), and the loop saves its last consistent state. Under torchrun a process must not
leave in the middle of a collective, so the handler only records the signal; the loop sums the
record over the processes after every optimiser step and report (:meth:`Trainer._check_stop`) and
every process stops at the same step, even when only one of them received the signal.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

from .errors import Interrupted

# SIGHUP too: torchrun's agent forwards the SIGINT, SIGTERM, SIGHUP (and SIGQUIT) it receives to the
# workers. A signal the process was told to ignore (``nohup`` ignores SIGHUP) stays ignored.
SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class StopSignals:
    """Context manager for the duration of a run; ``raise_now``: raise on the signal (one process)
    instead of only recording it (several processes). ``received`` is the first signal's number."""

    def __init__(self, raise_now: bool) -> None:
        self.raise_now = raise_now
        self.received: int | None = None
        self._critical = 0
        self._pending = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for s in SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:
                    self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
        if not self.raise_now:
            return
        if self._critical:
            self._pending = True
        else:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A stretch that a signal must not cut (an optimiser step and the counters that describe
        it): a signal during it is raised at its end."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if not self._critical and self._pending:
            self._pending = False
            raise Interrupted(self.received or signal.SIGINT)
