"""The host loop of a training run: chunks, evaluation, the non-finite guard, checkpoints.

Python runs only here, between jitted scan chunks of ``config.log_every``
iterations: it evaluates the student, checks every seed for non-finite values,
hands the chunk's metric rows to the sinks (:mod:`mjxmeta.runs.sinks`: JSONL,
TensorBoard, progress bar, visitation dumps) and saves Orbax checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mjxmeta.runs import distributed, sinks
from mjxmeta.algo.config import (BRAX_STUDENTS, STUDENT_NAMES, Config, ConfigError, evaluates_at, num_chunks,
                                 sweep_points, to_dict)
from mjxmeta.runs.layout import (CHECKPOINTS, CONFIG, METRICS, TENSORBOARD, ResumeError,  # noqa: F401 (re-exports)
                                 RunDirError, RunLock, load_config, prepare_run_dir, write_config)
from mjxmeta.runs.resume import check_start, config_of_checkpoints


class NonFiniteError(RuntimeError):
    """A loss, parameter or return became NaN/Inf; the poisoned state was not saved."""


def check_free_space(run_dir: Path, state_bytes: int, keep: int) -> None:
    """Raises ConfigError(run_dir) unless the disk holds ``keep + 1`` checkpoints of ``state_bytes``."""
    need = (keep + 1) * state_bytes
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise ConfigError("run_dir", str(run_dir),
                          f"a directory with at least {need / 2**20:.0f} MiB free for {keep + 1} checkpoints "
                          f"of {state_bytes / 2**20:.0f} MiB (has {free / 2**20:.0f} MiB)")


# ------------------------------------------------------------------ checks
def _finite_flags(state, metrics, returns):
    import jax
    import jax.numpy as jnp

    def all_finite(tree):
        leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
        flags = [jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1) for x in leaves]
        return jnp.all(jnp.stack(flags), axis=0)

    out = {"student parameters": all_finite(state.student), "teacher parameters": all_finite(state.teacher),
           "observation normalizer": all_finite(state.normalizer)}
    if returns is not None:
        out["eval_return"] = jnp.all(jnp.isfinite(returns), axis=1)
    for k, v in metrics.items():
        bad = ~jnp.isfinite(v)
        out[k] = ~jnp.any(bad, axis=1)
        out[k + "@iter"] = jnp.argmax(bad, axis=1)
    return out


_finite_flags_jit = None


def nonfinite_report(state, metrics, returns) -> dict[str, Any]:
    """Per-seed finiteness of parameters, losses and returns (one jitted reduction, compiled once).

    Args:
      returns: (S, eval_envs) evaluation returns, or None at a log point without evaluation.

    Returns:
      {quantity: (S,) bool all-finite} for student/teacher params and
      optimizer states, normalizer, every scalar metric and ``eval_return`` (if evaluated);
      plus {quantity + '@iter': (S,) index of the first non-finite iteration
      in the chunk} for the metrics.
    """
    import jax

    global _finite_flags_jit
    if _finite_flags_jit is None:
        _finite_flags_jit = jax.jit(_finite_flags)
    return distributed.to_host(_finite_flags_jit(state, metrics, returns))


def _first_nonfinite(report: dict[str, Any], names: Sequence[str], chunk_start: int, chunk_end: int) -> str | None:
    for s, name in enumerate(names):
        for q, ok in report.items():
            if q.endswith("@iter") or ok[s]:
                continue
            if q + "@iter" in report:
                where = f"iteration {chunk_start + int(report[q + '@iter'][s]) + 1}"
            else:
                where = f"the chunk of iterations {chunk_start + 1}..{chunk_end}"
            return f"non-finite {q} in {name} at {where}"
    return None


# -------------------------------------------------------------------- loop
def run_coordinates(config: Config) -> list[dict[str, Any]]:
    """The keys naming each of the R runs in a metric row, in run order.

    Without a sweep ``{"seed": s}``; with one ``{"run": r, "seed": s,
    "hparams": {field: value}}`` for run r = v * S + s (combination v of
    :func:`mjxmeta.algo.config.sweep_points`, seed s).
    """
    if not config.sweep:
        return [{"seed": s} for s in range(config.seeds)]
    return [{"run": v * config.seeds + s, "seed": s, "hparams": dict(point)}
            for v, point in enumerate(sweep_points(config)) for s in range(config.seeds)]


def run_name(coordinates: dict[str, Any]) -> str:
    """``seed 1`` or, in a sweep, ``seed 1 (teacher.lr=0.001)``: one run for messages and tables."""
    hp = coordinates.get("hparams")
    return f"seed {coordinates['seed']}" + (f" ({', '.join(f'{k}={v}' for k, v in hp.items())})" if hp else "")


def metric_rows(iteration: int, metrics: dict[str, np.ndarray], returns: np.ndarray | None, env_steps: np.ndarray,
                wall: float, coordinates: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per run from a chunk's host arrays.

    Args:
      metrics: {name: (R, log_every)} per-iteration scalars; a row holds their
        chunk mean (:data:`mjxmeta.algo.diagnostics.SNAPSHOT_METRICS`, e.g. ``teacher_log_std``:
        their last value).
      returns: (R, eval_envs) evaluation returns, a row holds their mean as
        ``eval_return``; None at a log point without evaluation (no ``eval_return``).
      env_steps: (R,) env steps done.
      wall: seconds since the run started (across resumes).
      coordinates: per run, the keys naming it (:func:`run_coordinates`);
        None = ``{"seed": r}``.
    """
    from mjxmeta.algo.diagnostics import SNAPSHOT_METRICS

    rows = []
    for s in range(env_steps.shape[0]):
        row = {"env_steps": int(env_steps[s]), "iteration": iteration, "seed": s,
               **(coordinates[s] if coordinates is not None else {})}
        if returns is not None:
            row["eval_return"] = float(np.mean(returns[s]))
        row["wall_s"] = round(wall, 3)
        for k, v in metrics.items():
            row[k] = float(v[s, -1]) if k in SNAPSHOT_METRICS else float(np.mean(v[s]))
        rows.append(row)
    return rows


def default_sinks(config: Config, run_dir: Path, start_chunk: int, total_chunks: int, progress: bool
                  ) -> sinks.Fanout:
    """metrics.jsonl, TensorBoard, visitation dumps (if ``visit_samples``) and the progress bar of a run.

    On resume (``start_chunk`` > 0) the JSONL rows and TensorBoard events
    logged after the checkpoint are dropped.
    """
    steps_per_chunk = config.steps_per_iteration * config.log_every
    resumed = start_chunk * config.log_every if start_chunk else None
    out: list[sinks.Sink] = [
        sinks.JsonlSink(run_dir / METRICS, config.num_runs, config.log_every, keep_through=resumed),
        sinks.TensorBoardSink(run_dir / TENSORBOARD, purge_step=start_chunk * steps_per_chunk + 1 if start_chunk else None),
    ]
    if config.visit_samples:
        out.append(sinks.VisitationSink(run_dir))
    out.append(sinks.ProgressBar(total_chunks * steps_per_chunk, start_chunk * steps_per_chunk, enabled=progress))
    return sinks.Fanout(out)


def train(config: Config, run_dir: Path, *, resume: bool = False, progress: bool = True,
          progress_fn: sinks.Sink | None = None) -> list[float]:
    """Runs (or resumes) a training job in ``run_dir``, holding its lock (:class:`mjxmeta.runs.layout.RunLock`).

    Writes ``config.json``, hands every log point (one row per run: seed, and
    sweep combination, :func:`run_coordinates`) to
    ``progress_fn`` (default :func:`default_sinks`: ``metrics.jsonl``,
    TensorBoard, visitation dumps, progress bar), saves checkpoints (with
    their config and checksums, :mod:`mjxmeta.runs.checkpoint`) every
    ``config.checkpoint_every`` iterations, at the end and on SIGTERM/SIGINT/SIGHUP
    (:mod:`mjxmeta.runs.preemption`, whose handlers are installed first) under ``run_dir/checkpoints``. A resume
    restores the newest checkpoint that verifies.

    A ``sac``/``ppo`` student (:data:`mjxmeta.algo.config.BRAX_STUDENTS`) is
    refused: :func:`mjxmeta.train` hands those to :func:`mjxmeta.baselines.brax.train`.

    Several processes (:mod:`mjxmeta.runs.distributed`; every process calls
    ``train`` with the same arguments): each computes its devices' seeds;
    only process 0 takes the lock, writes ``config.json`` and calls
    ``progress_fn`` (with every seed's row, gathered); checkpoints hold the
    global arrays. A failure of a step process 0 runs alone raises
    :class:`mjxmeta.runs.distributed.PeerFailed` on the others.

    Returns:
      final eval return per run (mean over ``eval_envs`` episodes; the last log
      point always evaluates, :func:`mjxmeta.algo.config.evaluates_at`).

    Raises:
      RunDirError: another process holds ``run_dir``, or it holds a run and ``resume`` is False.
      ResumeError: ``resume`` and the run's config differs (besides total_steps) or does not parse.
      NonFiniteError: a seed produced NaN/Inf; the state of that chunk is not
        saved and reaches no sink; the message names the last verified checkpoint.
      CheckpointWriteError: an OS error while writing a checkpoint (earlier checkpoints stay intact).
      CheckpointCorrupt: resuming, and no checkpoint verifies.
      ConfigError: (``total_steps``) resuming with a budget below the env steps the run has done.
      OSError: (ENOENT, naming ``run_dir``) the run directory was deleted or moved during the run; found
        before a log point's rows or checkpoint are written, so nothing more is written to a vanished run.
      Stopped: SIGTERM/SIGINT/SIGHUP; the final checkpoint is written (unless a second signal abandoned the
        chunk; one arriving while a checkpoint is written lets it finish).
    """
    if config.student.name in BRAX_STUDENTS:
        raise ConfigError("student.name", config.student.name, f"one of {STUDENT_NAMES} here; Brax's SAC/PPO run "
                          "through mjxmeta.train (mjxmeta.baselines.brax)")

    from mjxmeta.runs.preemption import StopSignals, Stopped

    main = distributed.is_main()  # several processes: only process 0 locks and writes the run's files
    # The signal handlers first (before the slow imports and the compile): a signal from here on stops cleanly.
    # StopSignals is left last, once pending saves finished (it reads the resume point).
    with StopSignals(run_dir) as stop, (RunLock(run_dir) if main else contextlib.nullcontext()) as lock:
        import jax

        from mjxmeta.runs.checkpoint import Checkpointer
        from mjxmeta.algo.trainer import Trainer
        from mjxmeta.runs.programs import programs_of

        def still_there() -> None:  # the run directory was not deleted or moved under us (exit 5 if it was)
            if lock is not None:
                lock.check()

        distributed.on_main(lambda: check_start(run_dir, config, resume))
        trainer = Trainer(config)
        programs = programs_of(trainer)
        abstract = programs.abstract_state()
        state_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(abstract))

        def prepare() -> None:
            check_free_space(run_dir, state_bytes, config.keep)
            write_config(run_dir, config)

        distributed.on_main(prepare)

        ckpt = Checkpointer(run_dir, config.keep)
        start_chunk = 0
        t_offset = 0.0
        if resume and ckpt.latest_step() is not None:
            state, record = ckpt.restore_verified(abstract, set_aside=True)
            start_chunk = record["chunk"]
            t_offset = record["wall_s"]
            if main:
                print(f"resumed {run_dir} at iteration {record['iteration']} ({record['env_steps']} env steps)",
                      file=sys.stderr)
        else:
            if resume and main:
                print(f"no complete checkpoint in {run_dir}; starting from scratch", file=sys.stderr)
            state = programs.init_seeds(programs.shard(trainer.seed_keys()))

        n_chunks = num_chunks(config)
        coordinates = run_coordinates(config)
        final: list[float] = []
        if start_chunk >= n_chunks:  # resumed a finished run: no chunk to run; report the checkpoint's evaluation
            returns = programs.evaluate_seeds(state, programs.shard(trainer.eval_keys(start_chunk * config.log_every)))
            final = [float(np.mean(r)) for r in distributed.to_host(returns)]
        t0 = time.time() - t_offset
        if not main:
            progress_fn = sinks.Fanout([])
        elif progress_fn is None:
            progress_fn = default_sinks(config, run_dir, start_chunk, n_chunks, progress)
        try:
            for chunk in range(start_chunk, n_chunks):
                state, metrics = programs.run_chunk(state)
                iteration = (chunk + 1) * config.log_every
                returns = (programs.evaluate_seeds(state, programs.shard(trainer.eval_keys(iteration)))
                           if evaluates_at(config, iteration) else None)
                problem = _first_nonfinite(nonfinite_report(state, metrics, returns),
                                           [run_name(c) for c in coordinates], iteration - config.log_every,
                                           iteration)
                if problem:
                    last = ckpt.latest_verified(abstract)
                    raise NonFiniteError(f"{problem}; stopping without saving this state. Last verified "
                                         f"checkpoint: {'none' if last is None else f'iteration {last}'} in "
                                         f"{ckpt.directory}")
                # Every seed's values on every process (a collective with several processes).
                metrics, returns, env_steps, visits = distributed.to_host(
                    (metrics, returns, state.env_steps, state.visits))
                distributed.on_main(still_there)  # before this chunk's rows and checkpoint go anywhere
                wall = time.time() - t0
                rows = metric_rows(iteration, metrics, returns, env_steps, wall, coordinates)
                if returns is not None:
                    final = [row["eval_return"] for row in rows]
                progress_fn(iteration, rows, visits if config.visit_samples else None)
                stopping = distributed.any_process(stop.signum is not None) and chunk + 1 < n_chunks
                if stopping:
                    stop.hold()  # from here a further signal lets the final checkpoint finish
                if chunk + 1 == n_chunks or stopping or (config.checkpoint_every
                                                         and iteration % config.checkpoint_every == 0):
                    with stop.holding():  # a second signal does not cut a checkpoint short
                        ckpt.save(iteration, state, {"iteration": iteration, "chunk": chunk + 1,
                                                     "config": to_dict(config), "env_steps": int(env_steps[0]),
                                                     "wall_s": wall})
                if stopping:
                    raise Stopped(stop.signum or signal.SIGTERM)  # a peer process got the signal
        finally:
            with stop.holding():  # pending saves finish
                progress_fn.close()
                ckpt.close()
        distributed.on_main(still_there)  # the last rows and checkpoint are where the run is
    return final


def format_table(config: Config, final: Sequence[float]) -> str:
    """Markdown table of final evaluation return per seed and mean ± sd (sample sd); one block per sweep
    combination (``final``: one value per run, :func:`run_coordinates` order)."""
    lines = [f"final eval return: env={config.env} teacher={config.teacher.name} student={config.student.name}"]
    for v, point in enumerate(sweep_points(config)):
        block = list(final[v * config.seeds:(v + 1) * config.seeds])
        n = len(block)
        mean = sum(block) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in block) / (n - 1)) if n > 1 else 0.0
        if point:
            lines.append("\n" + ", ".join(f"{k}={x}" for k, x in point.items()))
        lines += ["| seed | eval_return |", "| ---: | ---: |"]
        lines += [f"| {i} | {x:.2f} |" for i, x in enumerate(block)]
        lines.append(f"| mean ± sd | {mean:.2f} ± {sd:.2f} |")
    return "\n".join(lines)


def load_checkpoint(run_dir: str | Path, step: int | None = None, **overrides: Any):
    """(trainer, batched state, record) of a run's checkpoint (latest by default); no compile.

    ``overrides`` replace top-level config fields that do not change the state's
    structure (e.g. ``eval_envs``). The state is placed with the current
    process's seed sharding, whatever device count saved it.

    The config is the one saved in the checkpoint (``config.json`` only for
    checkpoints of older versions). Without ``step`` the newest checkpoint that
    verifies is used (each failing one is reported on stderr).

    Raises:
      FileNotFoundError: no (complete) checkpoint at ``step``.
      CheckpointCorrupt: the checkpoint (every checkpoint, without ``step``) fails verification.
    """
    import dataclasses

    from mjxmeta.runs.checkpoint import Checkpointer
    from mjxmeta.algo.trainer import Trainer
    from mjxmeta.runs.programs import programs_of

    run_dir = Path(run_dir)
    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        config = config_of_checkpoints(ckpt, step) or load_config(run_dir)
        if config.student.name in BRAX_STUDENTS:
            raise ConfigError("student.name", config.student.name,
                              f"a Student of mjxmeta.algo.students for eval/render: {run_dir} holds Brax "
                              f"{config.student.name} parameters only (its metrics.jsonl has its evaluations)")
        trainer = Trainer(dataclasses.replace(config, **overrides))
        programs = programs_of(trainer)
        if step is None:
            state, record = ckpt.restore_verified(programs.abstract_state())
        else:
            state, record = ckpt.restore(programs.abstract_state(), step)
    finally:
        ckpt.close()
    return trainer, state, record


def evaluate_checkpoint(run_dir: Path, step: int | None, episodes: int) -> tuple[int, Any]:
    """Restores a checkpoint of ``run_dir`` and returns (step, returns (S, episodes))."""
    import jax

    from mjxmeta.runs.programs import programs_of

    trainer, state, record = load_checkpoint(run_dir, step, eval_envs=episodes)
    returns = programs_of(trainer).evaluate_seeds(state, trainer.eval_keys(record["iteration"]))
    return record["iteration"], jax.device_get(returns)

