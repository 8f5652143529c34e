"""Where a run's log points go: JSONL, TensorBoard, a progress bar, visitation dumps.

The host loop (:func:`mjxmeta.runs.loop.train`) hands every log point to one
callback, ``progress_fn(iteration, rows, visits)``, after Brax's trainers'
``progress_fn(step, metrics)``:

* ``iteration``: iterations done (the end of the chunk just run);
* ``rows``: one dict per run, ``{"env_steps": int, "iteration": int, "seed":
  int, "eval_return": float, "wall_s": float, <metric>: float, ...}`` (the
  scalar metrics of the chunk; see :func:`mjxmeta.runs.loop.metric_rows`);
  ``eval_return`` only at log points that evaluate (``Config.eval_every``);
  in a hyperparameter sweep also ``"run": int`` (the index on the run axis)
  and ``"hparams": {field: float}`` (:func:`mjxmeta.runs.loop.run_coordinates`);
* ``visits``: (R, samples, obs_size) raw D0 observations of the chunk, or None.

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

from mjxmeta.runs.layout import visits_path

Row = dict[str, Any]
KEYS = ("env_steps", "iteration", "seed", "run", "hparams")  # a row's coordinates; every other entry is a scalar


def run_of(row: Row) -> int:
    """The row's index on the run axis: ``run`` in a sweep, else ``seed``."""
    return row.get("run", row["seed"])


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
      runs: rows per log point (R = seeds x sweep combinations); log_every:
        iterations between log points.
      keep_through: None = start an empty file; an iteration = resume at a
        checkpoint of that iteration: :func:`read_rows` keeps the rows up to
        it (dropping the rows logged after it and a torn last line) and every
        malformed, missing or duplicate row is reported on stderr.
    """

    def __init__(self, path: str | Path, runs: int, log_every: int, keep_through: int | None = None):
        self.path = Path(path)
        kept: list[str] = []
        if keep_through is not None:
            kept, problems = read_rows(self.path, keep_through, runs, log_every)
            for problem in problems:
                print(f"mjxmeta: warning: {problem}", file=sys.stderr)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)
        self.file = open(self.path, "a")

    def __call__(self, iteration: int, rows: Sequence[Row], visits: np.ndarray | None = None) -> None:
        self.file.write("".join(json.dumps(row) + "\n" for row in rows))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _numbers(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def parse_row(line: bytes) -> Row | None:
    """A row of ``metrics.jsonl``, or None if ``line`` is not UTF-8 JSON of an object with numeric (not
    bool) values only (and ``hparams``, if present, an object of numbers) and at least ``env_steps`` and
    ``seed`` (a torn or edited line). ``eval_return`` is present only in rows of log points that evaluated."""
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(row, dict) or not {"env_steps", "seed"} <= row.keys():
        return None
    hparams = row.get("hparams", {})
    if not isinstance(hparams, dict) or not _numbers(hparams.values()):
        return None
    if not _numbers(v for k, v in row.items() if k != "hparams"):
        return None
    return row


def read_rows(path: Path, upto: int, runs: int, log_every: int) -> tuple[list[str], list[str]]:
    """The rows of ``metrics.jsonl`` a run resumed at a checkpoint of iteration ``upto`` keeps, checked.

    Args:
      path: the metrics file (may be missing).
      upto: iteration of the checkpoint being resumed.
      runs: R; every log point has one row per run (:func:`run_of`).
      log_every: iterations between log points.

    Returns:
      (lines, problems): the well-formed lines (:func:`parse_row` with
      integer ``iteration``, ``seed`` and ``run`` if present) at or before
      ``upto``, in file order, each (iteration, run) once (the first is
      kept); and one message per kind of problem (malformed lines with their
      numbers, missing and duplicate (iteration, run) rows). Rows after ``upto`` are dropped
      silently: they belong to chunks that were not checkpointed; so is a
      torn last line without its newline (the run was killed writing it).
    """
    raw = path.read_bytes().split(b"\n") if path.exists() else [b""]
    if parse_row(raw[-1]) is None:  # b"" after the last newline, or a line torn by a kill: dropped unreported
        raw.pop()
    keep, seen, malformed, dup = [], set(), [], []
    for n, line in enumerate(raw, 1):
        row = parse_row(line)
        if row is None or not all(isinstance(row.get(k), int) for k in ("iteration", "seed")) or not isinstance(
                row.get("run", 0), int):
            malformed.append(n)
            continue
        key = (row["iteration"], run_of(row))
        if key[0] > upto:
            continue
        if key in seen:
            dup.append(key)
            continue
        seen.add(key)
        keep.append(line.decode("utf-8"))
    missing = sorted({(i, s) for i in range(log_every, upto + 1, log_every) for s in range(runs)} - seen)
    problems = []
    if malformed:
        problems.append(f"{path}: {len(malformed)} malformed line(s) dropped (line {_some(malformed)})")
    if missing:
        problems.append(f"{path}: {len(missing)} row(s) missing at or before the checkpoint at iteration {upto} "
                        f"({_some([f'iteration {i} run {s}' for i, s in missing])}); these log points stay missing")
    if dup:
        problems.append(f"{path}: {len(dup)} duplicate row(s) dropped (first kept), e.g. iteration {dup[0][0]} "
                        f"run {dup[0][1]}")
    return keep, problems


def _some(items: Sequence[Any], limit: int = 10) -> str:
    return ", ".join(map(str, items[:limit])) + (", ..." if len(items) > limit else "")


class TensorBoardSink:
    """Scalars ``seed_<s>/<name>`` (in a sweep ``<field>=<value>,.../seed_<s>/<name>``) against env steps in
    ``logdir`` (tensorboardX event files).

    Args:
      purge_step: on resume, the first env step after the checkpoint; events
        at or after it from the interrupted run are hidden (TensorBoard purge).
    """

    def __init__(self, logdir: str | Path, purge_step: int | None = None):
        from tensorboardX import SummaryWriter
        self.writer = SummaryWriter(str(logdir), purge_step=purge_step)

    def __call__(self, iteration: int, rows: Sequence[Row], visits: np.ndarray | None = None) -> None:
        for row in rows:
            hp = ",".join(f"{k}={v}" for k, v in row.get("hparams", {}).items())
            prefix = (hp + "/" if hp else "") + f"seed_{row['seed']}"
            for k, v in row.items():
                if k not in KEYS:
                    self.writer.add_scalar(f"{prefix}/{k}", v, row["env_steps"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class ProgressBar:
    """A tqdm bar over env steps per seed, with the latest mean eval return, env steps/s (all seeds) and
    meta-reward.

    Args:
      total: env steps per seed the run will reach; ``initial``: where it starts.
      enabled: False = no output.
    """

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, file: IO[str] | None = None):
        from tqdm import tqdm
        self.bar = tqdm(total=total, initial=initial, unit="step", disable=not enabled, dynamic_ncols=True,
                        file=file or sys.stderr)
        self.last = time.time()
        self.ret = "-"  # no evaluation yet

    def __call__(self, iteration: int, rows: Sequence[Row], visits: np.ndarray | None = None) -> None:
        now, steps = time.time(), rows[0]["env_steps"]
        done = steps - self.bar.n
        self.bar.update(done)
        if "eval_return" in rows[0]:
            self.ret = f"{np.mean([r['eval_return'] for r in rows]):.1f}"
        postfix = {"ret": self.ret, "sps": f"{len(rows) * done / max(now - self.last, 1e-9):.0f}"}
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
