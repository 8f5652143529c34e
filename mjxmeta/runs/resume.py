"""Resuming a run: the config its checkpoints record, checked against ``config.json`` and the caller's.

A resume uses the config the newest readable checkpoint was made with
(:func:`resume_config`); ``config.json`` and the flags of ``train --resume`` must
agree with it field by field (``total_steps`` aside: a resume may extend the
budget, :func:`check_budget`, not cut it). :func:`check_start` is the guard :func:`mjxmeta.runs.loop.train` and
:func:`mjxmeta.baselines.brax.train` run before they touch a directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mjxmeta.algo.config import BRAX_STUDENTS, Config, ConfigError, executed_iterations, from_dict
from mjxmeta.runs.checkpoint import CheckpointCorrupt, Checkpointer
from mjxmeta.runs.layout import (CONFIG, ResumeError, RunDirError, plain_dict, config_differences, dict_differences,
                                 holds_run, read_config_json)


def check_start(run_dir: Path, config: Config, resume: bool) -> None:
    """The guard of :func:`mjxmeta.runs.loop.train`: a new run needs a directory without a run; a resumed run the
    config it was made with (:func:`resume_config`; ``total_steps`` may differ).

    Raises:
      RunDirError: not ``resume`` and ``run_dir`` holds a run.
      ResumeError: ``resume`` and the config differs (every differing field named) or cannot be read.
      ConfigError: ``resume`` with a ``total_steps`` below what the run has done (:func:`check_budget`).
    """
    if not resume and holds_run(run_dir):
        raise RunDirError(f"run directory {run_dir} already holds a run; use resume=True or a new directory")
    if resume:
        diff = config_differences(resume_config(run_dir), config)
        if diff:
            raise ResumeError(f"cannot resume {run_dir}: config differs from the run's (checkpoint -> flags) in "
                              + "; ".join(diff))
        check_budget(run_dir, config)


def newest_record(ckpt, say=None) -> dict | None:
    """The record of the newest checkpoint of ``ckpt`` whose record reads and verifies (None: no checkpoint).

    A damaged one is reported through ``say`` (default: one line on stderr)
    and skipped; the state restore will report it again and fall back the
    same way.
    """
    say = say or (lambda m: print(f"mjxmeta: {m}", file=sys.stderr))
    for s in reversed(ckpt.all_steps()):
        try:
            return ckpt.read_record(s)
        except CheckpointCorrupt as e:
            say(str(e))
    return None


def config_of_checkpoints(ckpt, step: int | None = None):
    """The Config recorded in checkpoint ``step`` of ``ckpt`` (a :class:`mjxmeta.runs.checkpoint.Checkpointer`).

    Without ``step``: that of :func:`newest_record`. None if there is no
    checkpoint or it predates configs in checkpoints.
    """
    record = newest_record(ckpt) if step is None else ckpt.read_record(step)
    return from_dict(record["config"]) if record is not None and "config" in record else None


def check_budget(run_dir: Path, config: Config) -> None:
    """A resume may extend ``total_steps``, never cut it below the env steps per seed the run has done.

    Compares with the newest readable checkpoint's record (damaged ones are
    skipped quietly: :func:`resume_config` reported them).

    Raises:
      ConfigError: (field ``total_steps``) naming the new budget and the env steps done.
    """
    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        record = newest_record(ckpt, say=lambda m: None)
    finally:
        ckpt.close()
    if record is None or "env_steps" not in record:
        return
    done = int(record["env_steps"])
    if config.student.name in BRAX_STUDENTS:
        short = config.total_steps < done
    else:  # the loop runs whole chunks: compare what this budget executes with the checkpoint's iteration
        short = executed_iterations(config) < int(record["iteration"])
    if short:
        raise ConfigError("total_steps", config.total_steps,
                          f"at least {done}, the env steps per seed {run_dir} has already done (its checkpoint at "
                          f"iteration {record['iteration']}); a resume can extend the budget, not cut it")


def resume_config(run_dir: Path):
    """The config to resume ``run_dir`` with: the one its newest readable checkpoint was made with.

    ``config.json`` must agree with it (``total_steps`` aside); it is never
    used silently. Without a checkpoint (or one of an older version without a
    config) ``config.json`` itself is used.

    Raises:
      ResumeError: ``config.json`` does not parse, or differs from the
        checkpoint's config (the message names every differing field).
    """
    try:
        raw = read_config_json(run_dir)
    except ConfigError as e:
        raw, problem = None, str(e)
    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        base = config_of_checkpoints(ckpt)
    finally:
        ckpt.close()
    if raw is None:
        raise ResumeError(f"cannot resume {run_dir}: {problem}" + (
            "; the checkpoint records its config: restore config.json to it (e.g. from a copy) or start a new run"
            if base is not None else ""))
    if base is None:
        try:
            return from_dict(raw)
        except ConfigError as e:
            raise ResumeError(f"cannot resume {run_dir}: {run_dir / CONFIG}: {e}") from None
    diff = dict_differences(plain_dict(base), raw)
    if diff:
        raise ResumeError(f"cannot resume {run_dir}: {run_dir / CONFIG} differs from the config the checkpoint was "
                          f"made with (checkpoint -> file) in " + "; ".join(diff)
                          + " (undo the edit, or start a new run for new settings)")
    return base
