"""Where a run's log points go: JSONL, TensorBoard, a progress bar, visitation dumps.

The host loop (:func:`mjxmeta.run.train`) hands every log point to one
callback, ``progress_fn(iteration, rows, visits)``, after Brax's trainers'
``progress_fn(step, metrics)``:

* ``iteration``: iterations done (the end of the chunk just run);
* ``rows``: one dict per seed, ``{"env_steps": int, "iteration": int, "seed":
  int, "eval_return": float, "wall_s": float, <metric>: float, ...}`` (the
  scalar metrics of the chunk; see :func:`mjxmeta.run.metric_rows`);
* ``visits``: (S, samples, obs_size) raw D0 observations of the chunk, or None.

Each sink below is one such callable with a ``close()``; :class:`Fanout`
passes a log point to several. No sink imports JAX.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Protocol, Sequence

import numpy as np

from mjxmeta.visitation import visits_path

Row = dict[str, Any]
KEYS = ("env_steps", "iteration", "seed")  # a row's coordinates; every other entry is a scalar to plot


class Sink(Protocol):
    def __call__(self, iteration: int, rows: Sequence[Row], visits: np.ndarray | None = None) -> None: ...

    def close(self) -> None: ...


class Fanout:
    """Passes each log point to every sink, in order; ``close`` closes them all."""

    def __init__(self, sinks: Sequence[Sink]):
        self.sinks = list(sinks)

    def __call__(self, iteration: int, rows: Sequence[Row], visits: np.ndarray | None = None) -> None:
        for sink in self.sinks:
            sink(iteration, rows, visits)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


class JsonlSink:
    """Appends one JSON object per row to ``path`` (``RUN/metrics.jsonl``).

    Args:
      keep_through: None = start an empty file; an iteration = keep the rows
        already in the file up to that iteration (a resumed run drops the rows
        logged after its checkpoint, and a torn last line).
    """

    def __init__(self, path: str | Path, keep_through: int | None = None):
        self.path = Path(path)
        kept = [] if keep_through is None else read_rows(self.path, keep_through)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)
        self.file = open(self.path, "a")

    def __call__(self, iteration: int, rows: Sequence[Row], visits: np.ndarray | None = None) -> None:
        self.file.write("".join(json.dumps(row) + "\n" for row in rows))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_rows(path: Path, max_iteration: int) -> list[str]:
    """Complete JSON lines of ``path`` with iteration <= ``max_iteration`` (drops a torn last line)."""
    if not path.exists():
        return []
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("iteration", 0) <= max_iteration:
            keep.append(line)
    return keep


class TensorBoardSink:
    """Scalars ``seed_<s>/<name>`` against env steps in ``logdir`` (tensorboardX event files).

    Args:
      purge_step: on resume, the first env step after the checkpoint; events
        at or after it from the interrupted run are hidden (TensorBoard purge).
    """

    def __init__(self, logdir: str | Path, purge_step: int | None = None):
        from tensorboardX import SummaryWriter
        self.writer = SummaryWriter(str(logdir), purge_step=purge_step)

    def __call__(self, iteration: int, rows: Sequence[Row], visits: np.ndarray | None = None) -> None:
        for row in rows:
            for k, v in row.items():
                if k not in KEYS:
                    self.writer.add_scalar(f"seed_{row['seed']}/{k}", v, row["env_steps"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class ProgressBar:
    """A tqdm bar over env steps per seed, with mean eval return, env steps/s (all seeds) and meta-reward.

    Args:
      total: env steps per seed the run will reach; ``initial``: where it starts.
      enabled: False = no output.
    """

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, file: IO[str] | None = None):
        from tqdm import tqdm
        self.bar = tqdm(total=total, initial=initial, unit="step", disable=not enabled, dynamic_ncols=True,
                        file=file or sys.stderr)
        self.last = time.time()

    def __call__(self, iteration: int, rows: Sequence[Row], visits: np.ndarray | None = None) -> None:
        now, steps = time.time(), rows[0]["env_steps"]
        done = steps - self.bar.n
        self.bar.update(done)
        postfix = {"ret": f"{np.mean([r['eval_return'] for r in rows]):.1f}",
                   "sps": f"{len(rows) * done / max(now - self.last, 1e-9):.0f}"}
        if "meta_reward" in rows[0]:
            postfix["meta_r"] = f"{np.mean([r['meta_reward'] for r in rows]):.2f}"
        self.bar.set_postfix(postfix)
        self.last = now

    def close(self) -> None:
        self.bar.close()


class VisitationSink:
    """Saves each chunk's D0 sample to ``RUN/visitation/iter_<iteration>.npy`` as float32 (S, samples, obs_size)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)

    def __call__(self, iteration: int, rows: Sequence[Row], visits: np.ndarray | None = None) -> None:
        if visits is None:
            return
        path = visits_path(self.run_dir, iteration)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.asarray(visits, np.float32))

    def close(self) -> None:
        pass
