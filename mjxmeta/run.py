"""The host loop of a training run: chunks, evaluation, the non-finite guard, checkpoints.

Python runs only here, between jitted scan chunks of ``config.log_every``
iterations: it evaluates the student, checks every seed for non-finite values,
hands the chunk's metric rows to the sinks (:mod:`mjxmeta.sinks`: JSONL,
TensorBoard, progress bar, visitation dumps) and saves Orbax checkpoints.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mjxmeta import sinks
from mjxmeta.config import Config, ConfigError, from_dict, to_dict

METRICS = "metrics.jsonl"
CONFIG = "config.json"
TENSORBOARD = "tensorboard"


class NonFiniteError(RuntimeError):
    """A loss, parameter or return became NaN/Inf; the poisoned state was not saved."""


class ResumeError(RuntimeError):
    """The run cannot be resumed with the given config (message lists the differing fields)."""


# --------------------------------------------------------------------- run dir
def prepare_run_dir(run_dir: str | Path | None, config: Config) -> Path:
    """Creates the run directory and checks it is writable.

    Raises:
      ConfigError: (field ``run_dir``) if it cannot be created or written.
    """
    if run_dir is None:
        run_dir = Path("checkpoints") / f"{config.env}-{config.teacher.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError("run_dir", str(path), f"a writable directory ({e.strerror or e})") from e
    return path


def check_free_space(run_dir: Path, state_bytes: int, keep: int) -> None:
    """Raises ConfigError(run_dir) unless the disk holds ``keep + 1`` checkpoints of ``state_bytes``."""
    need = (keep + 1) * state_bytes
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise ConfigError("run_dir", str(run_dir),
                          f"a directory with at least {need / 2**20:.0f} MiB free for {keep + 1} checkpoints "
                          f"of {state_bytes / 2**20:.0f} MiB (has {free / 2**20:.0f} MiB)")


def config_differences(old: Config, new: Config) -> list[str]:
    """Dotted names of fields that differ, ignoring ``total_steps`` (the budget may grow)."""
    a, b = to_dict(old), to_dict(new)
    out = []
    for k in sorted(set(a) | set(b)):
        if k == "total_steps":
            continue
        if isinstance(a.get(k), dict):
            out += [f"{k}.{kk}: {a[k].get(kk)!r} -> {b[k].get(kk)!r}" for kk in sorted(a[k])
                    if a[k].get(kk) != b[k].get(kk)]
        elif a.get(k) != b.get(k):
            out.append(f"{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return out


def load_config(run_dir: Path) -> Config:
    """The validated config saved in ``run_dir/config.json``."""
    return from_dict(json.loads((run_dir / CONFIG).read_text()))


# ------------------------------------------------------------------ checks
def _finite_flags(state, metrics, returns):
    import jax
    import jax.numpy as jnp

    def all_finite(tree):
        leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
        flags = [jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1) for x in leaves]
        return jnp.all(jnp.stack(flags), axis=0)

    out = {"student parameters": all_finite(state.student), "teacher parameters": all_finite(state.teacher),
           "observation normalizer": all_finite(state.normalizer),
           "eval_return": jnp.all(jnp.isfinite(returns), axis=1)}
    for k, v in metrics.items():
        bad = ~jnp.isfinite(v)
        out[k] = ~jnp.any(bad, axis=1)
        out[k + "@iter"] = jnp.argmax(bad, axis=1)
    return out


_finite_flags_jit = None


def nonfinite_report(state, metrics, returns) -> dict[str, Any]:
    """Per-seed finiteness of parameters, losses and returns (one jitted reduction, compiled once).

    Returns:
      {quantity: (S,) bool all-finite} for student/teacher params and
      optimizer states, normalizer, every scalar metric and ``eval_return``;
      plus {quantity + '@iter': (S,) index of the first non-finite iteration
      in the chunk} for the metrics.
    """
    import jax

    global _finite_flags_jit
    if _finite_flags_jit is None:
        _finite_flags_jit = jax.jit(_finite_flags)
    return jax.device_get(_finite_flags_jit(state, metrics, returns))


def _first_nonfinite(report: dict[str, Any], seeds: int, chunk_start: int, chunk_end: int) -> str | None:
    for s in range(seeds):
        for q, ok in report.items():
            if q.endswith("@iter") or ok[s]:
                continue
            if q + "@iter" in report:
                where = f"iteration {chunk_start + int(report[q + '@iter'][s]) + 1}"
            else:
                where = f"the chunk of iterations {chunk_start + 1}..{chunk_end}"
            return f"non-finite {q} in seed {s} at {where}"
    return None


# -------------------------------------------------------------------- loop
def metric_rows(iteration: int, metrics: dict[str, np.ndarray], returns: np.ndarray, env_steps: np.ndarray,
                wall: float) -> list[dict[str, Any]]:
    """One row per seed from a chunk's host arrays.

    Args:
      metrics: {name: (S, log_every)} per-iteration scalars; a row holds their
        chunk mean (``teacher_log_std``: its last value).
      returns: (S, eval_envs) evaluation returns; a row holds their mean.
      env_steps: (S,) env steps done.
      wall: seconds since the run started (across resumes).
    """
    rows = []
    for s in range(returns.shape[0]):
        row = {"env_steps": int(env_steps[s]), "iteration": iteration, "seed": s,
               "eval_return": float(np.mean(returns[s])), "wall_s": round(wall, 3)}
        for k, v in metrics.items():
            row[k] = float(v[s, -1]) if k == "teacher_log_std" else float(np.mean(v[s]))
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
        sinks.JsonlSink(run_dir / METRICS, keep_through=resumed),
        sinks.TensorBoardSink(run_dir / TENSORBOARD, purge_step=start_chunk * steps_per_chunk + 1 if start_chunk else None),
    ]
    if config.visit_samples:
        out.append(sinks.VisitationSink(run_dir))
    out.append(sinks.ProgressBar(total_chunks * steps_per_chunk, start_chunk * steps_per_chunk, enabled=progress))
    return sinks.Fanout(out)


def train(config: Config, run_dir: Path, *, resume: bool = False, progress: bool = True,
          progress_fn: sinks.Sink | None = None) -> list[float]:
    """Runs (or resumes) a training job in ``run_dir``.

    Writes ``config.json``, hands every log point (one row per seed) to
    ``progress_fn`` (default :func:`default_sinks`: ``metrics.jsonl``,
    TensorBoard, visitation dumps, progress bar), saves checkpoints every
    ``config.checkpoint_every`` iterations and at the end (under
    ``run_dir/checkpoints``).

    Returns:
      final eval return (mean over eval envs) per seed.

    Raises:
      ResumeError: ``resume`` and the saved config differs (besides total_steps).
      NonFiniteError: a seed produced NaN/Inf; the state of that chunk is not
        saved and reaches no sink.
    """
    import jax

    from mjxmeta.checkpoint import Checkpointer
    from mjxmeta.trainer import Trainer

    if resume:
        old = load_config(run_dir)
        diff = config_differences(old, config)
        if diff:
            raise ResumeError(f"cannot resume {run_dir}: config differs from {run_dir / CONFIG} in "
                              + "; ".join(diff))
    trainer = Trainer(config)
    abstract = trainer.abstract_state()
    state_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(abstract))
    check_free_space(run_dir, state_bytes, config.keep)
    (run_dir / CONFIG).write_text(json.dumps(to_dict(config), indent=2))

    ckpt = Checkpointer(run_dir, config.keep)
    start_chunk = 0
    t_offset = 0.0
    if resume and ckpt.latest_step() is not None:
        state, record = ckpt.restore(abstract)
        start_chunk = record["chunk"]
        t_offset = record["wall_s"]
        print(f"resumed {run_dir} at iteration {record['iteration']} ({record['env_steps']} env steps)",
              file=sys.stderr)
    else:
        if resume:
            print(f"no complete checkpoint in {run_dir}; starting from scratch", file=sys.stderr)
        state = trainer.shard(trainer.init_seeds(trainer.seed_keys()))

    n_chunks = trainer.num_chunks
    final: list[float] = []
    if start_chunk >= n_chunks:  # resumed a finished run: no chunk to run; report the checkpoint's evaluation
        returns = trainer.evaluate_seeds(state, trainer.eval_keys(start_chunk * config.log_every))
        final = [float(np.mean(r)) for r in jax.device_get(returns)]
    t0 = time.time() - t_offset
    if progress_fn is None:
        progress_fn = default_sinks(config, run_dir, start_chunk, n_chunks, progress)
    try:
        for chunk in range(start_chunk, n_chunks):
            state, metrics = trainer.run_chunk(state)
            iteration = (chunk + 1) * config.log_every
            returns = trainer.evaluate_seeds(state, trainer.eval_keys(iteration))
            problem = _first_nonfinite(nonfinite_report(state, metrics, returns), config.seeds,
                                       iteration - config.log_every, iteration)
            if problem:
                last = ckpt.latest_step()
                raise NonFiniteError(f"{problem}; stopping without saving this state. Last good checkpoint: "
                                     f"{'none' if last is None else f'iteration {last}'} in {ckpt.directory}")
            metrics, returns, env_steps, visits = jax.device_get(
                (metrics, returns, state.env_steps, state.visits))
            wall = time.time() - t0
            rows = metric_rows(iteration, metrics, returns, env_steps, wall)
            final = [row["eval_return"] for row in rows]
            progress_fn(iteration, rows, visits if config.visit_samples else None)
            if chunk + 1 == n_chunks or (config.checkpoint_every and iteration % config.checkpoint_every == 0):
                ckpt.save(iteration, state, {"iteration": iteration, "chunk": chunk + 1,
                                             "env_steps": int(env_steps[0]), "wall_s": wall})
    finally:
        progress_fn.close()
        ckpt.close()
    return final


def format_table(config: Config, final: Sequence[float]) -> str:
    """Markdown table of final evaluation return per seed and mean ± sd (sample sd)."""
    n = len(final)
    mean = sum(final) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in final) / (n - 1)) if n > 1 else 0.0
    lines = [f"final eval return: env={config.env} teacher={config.teacher.name} student={config.student.name}",
             "| seed | eval_return |", "| ---: | ---: |"]
    lines += [f"| {i} | {x:.2f} |" for i, x in enumerate(final)]
    lines.append(f"| mean ± sd | {mean:.2f} ± {sd:.2f} |")
    return "\n".join(lines)


def load_checkpoint(run_dir: str | Path, step: int | None = None, **overrides: Any):
    """(trainer, batched state, record) of a run's checkpoint (latest by default); no compile.

    ``overrides`` replace top-level config fields that do not change the state's
    structure (e.g. ``eval_envs``). The state is placed with the current
    process's seed sharding, whatever device count saved it.

    Raises:
      FileNotFoundError: no (complete) checkpoint at ``step``.
    """
    import dataclasses

    from mjxmeta.checkpoint import Checkpointer
    from mjxmeta.trainer import Trainer

    run_dir = Path(run_dir)
    config = dataclasses.replace(load_config(run_dir), **overrides)
    trainer = Trainer(config)
    ckpt = Checkpointer(run_dir, config.keep)
    try:
        state, record = ckpt.restore(trainer.abstract_state(), step)
    finally:
        ckpt.close()
    return trainer, state, record


def evaluate_checkpoint(run_dir: Path, step: int | None, episodes: int) -> tuple[int, Any]:
    """Restores a checkpoint of ``run_dir`` and returns (step, returns (S, episodes))."""
    import jax

    trainer, state, record = load_checkpoint(run_dir, step, eval_envs=episodes)
    returns = trainer.evaluate_seeds(state, trainer.eval_keys(record["iteration"]))
    return record["iteration"], jax.device_get(returns)
