"""Graceful stop on SIGTERM / SIGINT (what SLURM and cloud/TPU preemption send first, and Ctrl-C).

While :class:`StopSignals` is active, the first SIGTERM or SIGINT only sets
``signum``: the training loop finishes the chunk in flight, writes a final
checkpoint if the latest one is older, and raises :class:`Stopped`. A second
signal abandons the chunk in flight at once (raises :class:`Stopped` from the
handler). Either way, leaving the context fills in the run directory and the
resume point: the latest checkpoint on disk.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
    """Training stopped on a signal; ``exit_code`` is 128 + signal number (143 SIGTERM, 130 SIGINT).

    Attributes:
      iteration: the iteration of the checkpoint to resume from (None: no checkpoint yet).
      signum: the signal received.
    """

    def __init__(self, signum: int, iteration: int | None = None, run_dir: Path | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.iteration, self.run_dir = signum, iteration, run_dir

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def line(self) -> str:
        """The one line printed on stop."""
        where = "before the first checkpoint" if self.iteration is None else f"at iteration {self.iteration}"
        return f"stopped {where}; resume with: mjxmeta train --resume {self.run_dir}"


class StopSignals:
    """Context manager that turns SIGTERM/SIGINT into a stop request (main thread only; elsewhere a no-op).

    Args:
      run_dir: the run; a :class:`Stopped` leaving the context gets it and, if
        it has none, the iteration of the run's latest checkpoint (read after
        the caller's pending saves finished, i.e. leave the context last).
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise Stopped(signum)  # second signal: abandon the chunk in flight
        self.signum = signum
        print(f"mjxmeta: {signal.Signals(signum).name} received: stopping after the chunk in flight "
              "(send it again to abandon the chunk)", file=sys.stderr, flush=True)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        if isinstance(exc, Stopped):
            from mjxmeta.runs.checkpoint import Checkpointer

            exc.run_dir = self.run_dir
            if exc.iteration is None:
                ckpt = Checkpointer(self.run_dir, read_only=True)
                exc.iteration = ckpt.latest_step()
                ckpt.close()
