"""SAC and PPO baselines from Brax's own trainers: ``mjxmeta train --student sac|ppo``.

Brax's ``brax.training.agents.sac.train`` (Haarnoja et al., *Soft
Actor-Critic*, ICML 2018) and ``brax.training.agents.ppo.train`` (Schulman et
al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, 2017) are
called as they are, not reimplemented. They are not
:class:`mjxmeta.algo.students.Student` implementations: each runs a whole job end to
end (its own acting, replay or rollouts, updates and evaluation) and explores
with its own stochastic policy, so there is no teacher and no meta loop.
:func:`mjxmeta.runs.loop.train` hands every config whose ``student.name`` is in
:data:`mjxmeta.algo.config.BRAX_STUDENTS` to :func:`train` here; nothing else
dispatches on these names.

What is shared with the DDPG runs:

* the env: :func:`mjxmeta.algo.envs.make_base` (MJX ports and the JAX
  ``pendulum``, actions in [-1, 1]) *unwrapped*; Brax wraps it itself
  (``VmapWrapper``, ``EpisodeWrapper`` with ``Config.resolved_episode_length``,
  ``AutoResetWrapper``);
* the run directory (:mod:`mjxmeta.runs.layout`: lock, refusal of a directory
  holding a run, ``config.json``);
* ``metrics.jsonl``: one row per seed per evaluation, written from Brax's
  ``progress_fn`` with the keys of :func:`mjxmeta.runs.loop.metric_rows`
  (``env_steps``, ``iteration`` = index of the evaluation, 0 = before
  training, ``seed``, ``eval_return`` = mean return of ``eval_envs``
  deterministic-policy episodes, ``wall_s``) plus Brax's training metrics
  without their ``training/`` prefix (e.g. ``critic_loss``, ``alpha``), so
  ``mjxmeta report`` tables and plots them beside the DDPG runs;
* the final parameters (per seed, stacked on a leading seed axis) in an Orbax
  checkpoint under ``RUN/checkpoints`` (:class:`mjxmeta.runs.checkpoint.Checkpointer`).

Seeds: Brax's trainers run one seed per call (a host loop with ``pmap`` over
devices inside), so the S seeds run one after another on the host, seed s with
Brax seed :func:`brax_seed` (config.seed, s). Runs are not resumable: the
trainers return only their final policy parameters (no optimizer, replay or
env state), so ``--resume`` is refused.

Config fields read (:data:`mjxmeta.algo.config.BRAX_FIELDS`; any other field given
explicitly is refused before anything compiles) and the Brax argument each
sets: see :func:`brax_arguments`.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mjxmeta.runs import distributed, sinks
from mjxmeta.algo.config import BRAX_STUDENTS, PPO_MINIBATCHES, SAC_LEARNING_STARTS, Config, ConfigError, to_dict
from mjxmeta.runs.layout import CHECKPOINTS, METRICS, TENSORBOARD, ResumeError, RunLock, write_config
from mjxmeta.runs.resume import check_start

PPO_UPDATES_PER_BATCH = 4  # Brax PPO's num_updates_per_batch when student.updates_per_iteration is 0 (auto)
PARAMS = ("normalizer", "policy", "value")  # names of the final parameters Brax returns (SAC: the first two)


def num_evals(config: Config) -> int:
    """Brax's ``num_evals``: one evaluation before training, then one after each of n equal training epochs.

    n = ceil(total_steps / eval_every), or 1 with ``eval_every`` = 0. Brax
    splits the budget into n epochs of whole training steps, so the
    evaluations fall near (not exactly at) multiples of ``eval_every``; the
    last comes after at least ``total_steps`` env steps.
    """
    n = -(-config.total_steps // config.eval_every) if config.eval_every else 1
    return n + 1


def brax_seed(config: Config, s: int) -> int:
    """The integer seed Brax's trainer gets for run s: 31 bits of ``fold_in(PRNGKey(config.seed), s)``.

    Distinct runs get independent streams (as the vmapped DDPG seeds, which
    use the same ``fold_in``), and ``seed=0, seeds=2`` never repeats
    ``seed=1``'s first run.
    """
    import jax

    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), s)
    return int(jax.random.randint(key, (), 0, 2**31 - 1))


def brax_arguments(config: Config) -> tuple[Callable[..., Any], dict[str, Any]]:
    """(Brax's ``train`` function, its keyword arguments) for ``config``, all but ``seed`` and ``progress_fn``.

    Both trainers: ``environment`` = :func:`mjxmeta.algo.envs.make_base` (env),
    ``num_timesteps`` = total_steps (env steps per seed),
    ``episode_length`` = resolved_episode_length, ``num_envs`` = num_envs,
    ``num_eval_envs`` = eval_envs, ``num_evals`` = :func:`num_evals`,
    ``deterministic_eval`` = True (the DDPG runs evaluate their deterministic
    actor too), ``max_devices_per_host`` = 1 (one seed, one device, whatever
    the device count: the same program as on one device), ``learning_rate`` = student.actor_lr (one rate for every
    network), ``discounting`` = student.gamma, ``batch_size`` =
    student.batch_size, ``normalize_observations`` =
    student.normalize_observations, hidden widths = student.hidden.

    SAC also: ``tau`` = student.tau, ``max_replay_size`` =
    min(student.buffer_size, total_steps), ``grad_updates_per_step`` =
    student.updates_per_iteration (0 = auto: 1), ``min_replay_size`` =
    :data:`mjxmeta.algo.config.SAC_LEARNING_STARTS`, LayerNorm in both networks =
    student.layer_norm.

    PPO also: ``unroll_length`` = rollout_steps, ``num_minibatches`` =
    :data:`mjxmeta.algo.config.PPO_MINIBATCHES`, ``num_updates_per_batch`` =
    student.updates_per_iteration (0 = auto: :data:`PPO_UPDATES_PER_BATCH`);
    policy and value networks both ``student.hidden``; Brax's other defaults
    (clip 0.3, GAE lambda 0.95, entropy cost 1e-4). One PPO training step
    uses batch_size x unroll_length x minibatches env steps.

    Raises:
      ValueError: ``config.student.name`` is not in :data:`mjxmeta.algo.config.BRAX_STUDENTS`.
    """
    from mjxmeta.algo.envs import make_base

    c, s = config, config.student
    common = dict(environment=make_base(c.env, integrator=c.integrator), num_timesteps=c.total_steps,
                  episode_length=c.resolved_episode_length, num_envs=c.num_envs, num_eval_envs=c.eval_envs,
                  num_evals=num_evals(c), deterministic_eval=True, learning_rate=s.actor_lr, discounting=s.gamma,
                  batch_size=s.batch_size, normalize_observations=s.normalize_observations, max_devices_per_host=1)
    if s.name == "sac":
        from brax.training.agents.sac import networks, train
        return train.train, dict(
            common, tau=s.tau, max_replay_size=min(s.buffer_size, c.total_steps),
            min_replay_size=SAC_LEARNING_STARTS, grad_updates_per_step=s.updates_per_iteration or 1,
            network_factory=functools.partial(networks.make_sac_networks, hidden_layer_sizes=s.hidden,
                                              policy_network_layer_norm=s.layer_norm,
                                              q_network_layer_norm=s.layer_norm))
    if s.name == "ppo":
        from brax.training.agents.ppo import networks, train
        return train.train, dict(
            common, unroll_length=c.rollout_steps, num_minibatches=PPO_MINIBATCHES,
            num_updates_per_batch=s.updates_per_iteration or PPO_UPDATES_PER_BATCH,
            network_factory=functools.partial(networks.make_ppo_networks, policy_hidden_layer_sizes=s.hidden,
                                              value_hidden_layer_sizes=s.hidden))
    raise ValueError(f"student {s.name!r} is not one of Brax's trainers {BRAX_STUDENTS}")


def metric_row(seed: int, evaluation: int, env_steps: int, wall: float, metrics: dict[str, Any]) -> dict[str, Any]:
    """One ``metrics.jsonl`` row from the ``metrics`` Brax hands its ``progress_fn`` at an evaluation.

    ``eval_return`` = ``eval/episode_reward`` (mean over the eval episodes),
    ``eval_return_std`` = ``eval/episode_reward_std``; every scalar
    ``training/<name>`` becomes ``<name>`` (``walltime`` left out: ``wall_s``
    is the seed's seconds since its train call began, compile included).
    """
    row: dict[str, Any] = {"env_steps": int(env_steps), "iteration": evaluation, "seed": seed,
                           "eval_return": float(metrics["eval/episode_reward"])}
    if "eval/episode_reward_std" in metrics:
        row["eval_return_std"] = float(metrics["eval/episode_reward_std"])
    row["wall_s"] = round(wall, 3)
    for name, value in metrics.items():
        if name.startswith("training/") and name != "training/walltime" and np.ndim(value) == 0:
            row[name[len("training/"):]] = float(value)
    return row


def train(config: Config, run_dir: Path, *, resume: bool = False, progress: bool = True,
          progress_fn: sinks.Sink | None = None) -> list[float]:
    """Runs Brax's SAC or PPO for every seed of ``config`` in ``run_dir`` (:func:`mjxmeta.runs.loop.train`'s contract).

    Returns:
      the last evaluation's return per seed.

    Raises:
      ResumeError: ``resume`` (these runs are not resumable).
      RunDirError: ``run_dir`` is locked by another process or already holds a run.
      ConfigError: (``num_processes``) run with several processes.
      NonFiniteError: an evaluation return or the final parameters of a seed are NaN/inf; nothing of that seed
        is saved, and the run stops.
    """
    import jax

    from mjxmeta.baselines import jax_compat
    from mjxmeta.runs.checkpoint import Checkpointer
    from mjxmeta.runs.loop import NonFiniteError

    if resume:
        raise ResumeError(f"cannot resume {run_dir}: {config.student.name} runs are not resumable (Brax's trainer "
                          "returns only its final policy parameters; start a new run)")
    if distributed.process_count() > 1:
        raise ConfigError("num_processes", distributed.process_count(),
                          f"1 for student {config.student.name!r} (its seeds run one after another on one host)")
    jax_compat.install()
    fn, kwargs = brax_arguments(config)
    with RunLock(run_dir):
        check_start(run_dir, config, resume=False)
        write_config(run_dir, config)
        out = progress_fn or sinks.Fanout([sinks.JsonlSink(run_dir / METRICS, config.seeds, 1),
                                           sinks.TensorBoardSink(run_dir / TENSORBOARD)])
        final: list[float] = []
        params: list[Any] = []
        steps: list[int] = []
        try:
            for s in range(config.seeds):
                bar = sinks.ProgressBar(config.total_steps, enabled=progress and progress_fn is None)
                t0 = time.time()
                rows: list[dict[str, Any]] = []  # this seed's rows so far

                def report(env_steps: int, metrics: dict[str, Any]) -> None:
                    row = metric_row(s, len(rows), env_steps, time.time() - t0, metrics)
                    if not math.isfinite(row["eval_return"]):
                        raise NonFiniteError(f"non-finite eval_return in seed {s} at {env_steps} env steps "
                                             f"({config.student.name}); stopping, nothing of seed {s} is saved")
                    out(len(rows), [row])
                    bar(len(rows), [row])
                    rows.append(row)

                try:
                    _, seed_params, _ = fn(**kwargs, seed=brax_seed(config, s), progress_fn=report)
                finally:
                    bar.close()
                tree = dict(zip(PARAMS, seed_params))
                if not all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree)
                           if np.issubdtype(np.asarray(x).dtype, np.floating)):
                    raise NonFiniteError(f"non-finite final parameters in seed {s} ({config.student.name})")
                params.append(tree)
                final.append(rows[-1]["eval_return"])
                steps.append(rows[-1]["env_steps"])
        finally:
            out.close()
        stacked = jax.tree.map(lambda *x: np.stack([np.asarray(v) for v in x]), *params)
        ckpt = Checkpointer(run_dir, keep=1)
        try:
            last = num_evals(config) - 1
            ckpt.save(last, stacked, {"iteration": last, "config": to_dict(config), "env_steps": min(steps),
                                      "brax_trainer": config.student.name})
            ckpt.wait()
        finally:
            ckpt.close()
    print(f"{config.student.name}: final parameters of {config.seeds} seed(s) in {run_dir / CHECKPOINTS} "
          "(not resumable)", file=sys.stderr)
    return final
