"""Graceful stop on SIGTERM / SIGINT / SIGHUP (what SLURM and cloud/TPU preemption send first, Ctrl-C, and a
closed terminal).

While :class:`StopSignals` is active, the first of these signals only sets
``signum``: the training loop finishes the chunk in flight, writes a final
checkpoint if the latest one is older, and raises :class:`Stopped`. A second
signal abandons the chunk in flight at once (raises :class:`Stopped` from the
handler); while a checkpoint is being written (:meth:`StopSignals.holding`)
that checkpoint is finished first. Either way, leaving the context fills in
the run directory and the resume point: the latest checkpoint on disk.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stopped(Exception):
    """Training stopped on a signal; ``exit_code`` is 128 + signal number (143 SIGTERM, 130 SIGINT, 129 SIGHUP).

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
    """Context manager that turns SIGTERM/SIGINT/SIGHUP into a stop request (main thread only; elsewhere a no-op).

    Re-entrant: entered while another one is active (the CLI enters it before
    its start banner, :func:`mjxmeta.runs.loop.train` again first thing), it
    returns the active one, so a signal that arrived in between is still
    seen by the loop; the outermost exit restores the previous handlers.

    Args:
      run_dir: the run; a :class:`Stopped` leaving the context gets it and, if
        it has none, the iteration of the run's latest checkpoint (read after
        the caller's pending saves finished, i.e. leave the context last).
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.signum: int | None = None
        self._old: dict[int, object] = {}
        self._active: StopSignals | None = None  # what __enter__ returned: self or the outer active instance
        self._holding = 0
        self._repeated = False

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            print(f"mjxmeta: {signal.Signals(signum).name} received: stopping after the chunk in flight "
                  "(send it again to abandon the chunk)", file=sys.stderr, flush=True)
        elif self._holding:  # a checkpoint is being written: it is finished first (holding, hold)
            if not self._repeated:
                print(f"mjxmeta: {signal.Signals(signum).name} received again: finishing the checkpoint being "
                      "written first", file=sys.stderr, flush=True)
            self._repeated = True
        else:
            raise Stopped(signum)  # second signal: abandon the chunk in flight

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """A region a second signal does not interrupt (writing a checkpoint): it raises :class:`Stopped`
        when the region is left, unless the region raised already."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        if self._repeated and not self._holding:
            self._repeated = False
            raise Stopped(self.signum or signal.SIGTERM)

    def hold(self) -> None:
        """From now until the context is left, a further signal is only noted (the run is stopping: its final
        checkpoint is written whole)."""
        self._holding += 1

    def __enter__(self) -> "StopSignals":
        if _ACTIVE:
            self._active = _ACTIVE[0]
        else:
            self._active = self
            if threading.current_thread() is threading.main_thread():
                self._old = {s: signal.signal(s, self._handle) for s in SIGNALS}
                _ACTIVE.append(self)
        return self._active

    def __exit__(self, exc_type, exc, tb) -> None:
        outermost, active = self._active is self, self._active
        self._active = None
        try:
            if isinstance(exc, Stopped):
                exc.run_dir = self.run_dir
                if exc.iteration is None:
                    active._holding += 1  # already stopping: a further signal must not cut this read short
                    try:
                        exc.iteration = latest_checkpoint(self.run_dir)
                    finally:
                        active._holding -= 1
        finally:
            if outermost and self._old:
                for s, h in self._old.items():
                    signal.signal(s, h)
                self._old = {}
                _ACTIVE.clear()
            if outermost:
                self._holding, self._repeated = 0, False


_ACTIVE: list[StopSignals] = []  # the outermost active StopSignals of this process (main thread), if any


def latest_checkpoint(run_dir: Path) -> int | None:
    """The iteration of the run's latest finalized checkpoint (None: none)."""
    from mjxmeta.runs.checkpoint import Checkpointer

    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()
