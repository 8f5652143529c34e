"""The Python API: train a run, load its policy, evaluate and report (what ``mjxmeta/__init__.py`` exports).

>>> import mjxmeta
>>> run = mjxmeta.train(mjxmeta.Config(env="pendulum", total_steps=2_000), "runs/x")
>>> policy = mjxmeta.load("runs/x")            # seed 0 of the newest verified checkpoint
>>> actions = policy(observations)               # (B, obs_size) -> (B, action_size) in [-1, 1]

The command line (:mod:`mjxmeta.cli`) calls the same functions. Heavy imports (JAX, Brax, MJX) happen
inside them, so ``import mjxmeta`` stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from mjxmeta.algo.config import BRAX_STUDENTS, Config, ConfigError, validate
from mjxmeta.runs.layout import METRICS, prepare_run_dir


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished (or stopped and saved) training run.

    Attributes:
      run_dir: its directory (``config.json``, ``metrics.jsonl``, ``checkpoints/``).
      config: the config it ran with.
      final_returns: (R,) final evaluation return per run (seed x sweep combination; mean over
        ``config.eval_envs`` episodes, undiscounted, reward units of the env).
    """

    run_dir: Path
    config: Config
    final_returns: tuple[float, ...]

    def metrics(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl``: one per seed and log point (``iteration``, ``env_steps``, losses,
        ``eval_return`` where evaluated, ...)."""
        with open(self.run_dir / METRICS) as f:
            return [json.loads(line) for line in f if line.strip()]


def train(config: Config, run_dir: str | Path | None = None,
          progress_fn: Callable[[int, list[dict], Any], None] | None = None, *, resume: bool = False,
          progress: bool = False) -> Run:
    """Trains ``config`` (Algorithm 1 of Xu et al., ICML 2018; or Brax's SAC/PPO for those students).

    Args:
      config: the run's settings (:class:`mjxmeta.Config`; presets via :func:`mjxmeta.student_preset`).
      run_dir: where the run lives; None = ``checkpoints/<env>-<teacher>-<time>``. A directory that holds a
        run is refused unless ``resume``.
      progress_fn: called after every chunk as ``progress_fn(iteration, rows, visits)`` (rows: one dict per
        seed, the ``metrics.jsonl`` columns); None = ``metrics.jsonl``, TensorBoard, visitation dumps and a
        progress bar if ``progress``.
      resume: continue the run in ``run_dir`` from its newest verified checkpoint (bit-exact).
      progress: show a progress bar (with the default ``progress_fn``).

    Returns:
      :class:`Run`.

    Raises:
      mjxmeta.ConfigError: an invalid config (names the field and the accepted values), before anything compiles.
      mjxmeta.runs.layout.RunDirError, ResumeError, mjxmeta.runs.loop.NonFiniteError,
      mjxmeta.runs.checkpoint.CheckpointCorrupt / CheckpointWriteError, mjxmeta.runs.preemption.Stopped:
      see :func:`mjxmeta.runs.loop.train`.
    """
    config = validate(config)
    if resume:
        if run_dir is None:
            raise ConfigError("run_dir", None, "the directory of the run to resume")
        run_dir = Path(run_dir)
    else:
        run_dir = prepare_run_dir(run_dir, config)
    if config.student.name in BRAX_STUDENTS:  # SAC/PPO: Brax's own trainers, end to end (the only dispatch)
        from mjxmeta.baselines import brax
        final = brax.train(config, run_dir, resume=resume, progress=progress, progress_fn=progress_fn)
    else:
        from mjxmeta.runs import loop
        final = loop.train(config, run_dir, resume=resume, progress=progress, progress_fn=progress_fn)
    return Run(Path(run_dir), config, tuple(float(x) for x in final))


class Policy:
    """The student's deterministic policy mu(s) of one seed of a checkpoint, with its observation normalizer.

    Call it on a batch of raw observations: ``policy(obs)`` with obs (B, obs_size) (or (obs_size,)) returns
    actions (B, action_size) (or (action_size,)) in [-1, 1], the scale the env takes. One jitted program.

    Attributes:
      config: the run's :class:`mjxmeta.Config`.
      seed: which of the run's R runs (seed index; with a sweep, combination r // S, seed r % S).
      iteration: the checkpoint's iteration.
      env_steps: env steps per seed at that checkpoint.
    """

    def __init__(self, trainer, state, record: dict, seed: int):
        import jax

        self.config: Config = trainer.config
        self.seed, self.iteration, self.env_steps = seed, int(record["iteration"]), int(record["env_steps"])
        self._student = jax.tree.map(lambda x: x[seed], state.student)
        self._normalizer = jax.tree.map(lambda x: x[seed], state.normalizer)
        self._act = jax.jit(trainer.student.act)

    def __call__(self, obs):
        return self._act(self._student, self._normalizer, obs)


def load(run_dir: str | Path, checkpoint: int | None = None, seed: int = 0) -> Policy:
    """The policy of seed ``seed`` in checkpoint ``checkpoint`` of ``run_dir`` (None = newest that verifies).

    Raises:
      FileNotFoundError: no (complete) checkpoint there.
      mjxmeta.runs.checkpoint.CheckpointCorrupt: it (every one, without ``checkpoint``) fails verification.
      mjxmeta.ConfigError: (field ``seed``) outside the run's R runs; (``student.name``) a Brax SAC/PPO run.
    """
    from mjxmeta.runs.loop import load_checkpoint

    trainer, state, record = load_checkpoint(Path(run_dir), checkpoint)
    if not 0 <= seed < trainer.config.num_runs:
        raise ConfigError("seed", seed, f"an index in [0, {trainer.config.num_runs}) (the run's seeds x sweep)")
    return Policy(trainer, state, record, seed)


def evaluate(run_dir: str | Path, checkpoint: int | None = None, episodes: int = 10):
    """Deterministic evaluation of every seed of a checkpoint (``mjxmeta eval``).

    Returns:
      (iteration, returns (R, episodes) numpy array of undiscounted episode returns).
    """
    from mjxmeta.runs.loop import evaluate_checkpoint

    if episodes < 1:
        raise ConfigError("episodes", episodes, "an integer >= 1")
    return evaluate_checkpoint(Path(run_dir), checkpoint, episodes)


def report(runs: Sequence[str | Path], out: str | Path, **options: Any) -> Path:
    """``mjxmeta report``: IQM with stratified-bootstrap CIs, curves and tables of ``runs`` into ``out``
    (:func:`mjxmeta.tools.report.write_report`; ``options``: ``reps``, ``last``, ``seed``). Returns its path."""
    from mjxmeta.tools.report import write_report

    return write_report(list(runs), out, **options)
