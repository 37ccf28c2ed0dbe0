"""The training errors a user can act on (their own module so that the loop's helpers, such as the
run-folder lock, raise them without importing the loop)."""
from __future__ import annotations

import signal


class TrainingError(RuntimeError):
    """A run stopped for a reason the user can act on; the message says what to change."""


class NonFiniteLossError(TrainingError):
    pass


class RunFolderBusy(TrainingError):
    """Another live process holds the run folder's lock."""


class Interrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM reached a training run (a KeyboardInterrupt, so that code which handles
    Ctrl-C handles it). ``signum``: the signal; ``agreed``: every process of a torchrun launch
    stopped at the same step boundary (so that they may all take part in the save)."""

    def __init__(self, signum: int, agreed: bool = False) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum, self.agreed = signum, agreed
