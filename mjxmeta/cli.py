"""Command line: ``mjxmeta train ...``.

``mjxmeta train`` validates the whole config before anything compiles, writes
``RUN/config.json``, runs the fused trainer chunk by chunk with a progress bar,
appends one JSON object per log point per seed to ``RUN/metrics.jsonl`` and
ends with a table of final evaluation returns per seed and mean +- sd.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from mjxmeta.config import (BASELINE_NAMES, ENV_NAMES, PRESET_NAMES, STUDENT_NAMES, TEACHER_NAMES, Config,
                            ConfigError, MetaConfig, TeacherConfig, student_preset, to_dict, validate)


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64, got {text!r}") from e


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mjxmeta", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a student with a teacher (Algorithm 1)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--env", default="inverted_pendulum", choices=ENV_NAMES)
    t.add_argument("--teacher", default="meta", choices=TEACHER_NAMES)
    t.add_argument("--student", default="ddpg", choices=STUDENT_NAMES)
    t.add_argument("--preset", default="baselines2017", choices=PRESET_NAMES,
                   help="student hyperparameter preset; the flags below override it")
    t.add_argument("--seeds", type=int, default=4, help="S, seeds vmapped in one program")
    t.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    t.add_argument("--candidates", type=int, default=2, help="K, candidate D0 batches per iteration (meta)")
    t.add_argument("--total-steps", type=int, default=20_000,
                   help="env-step budget per seed (D0 + D1 + R-hat rollouts)")
    t.add_argument("--run-dir", default=None, help="default: checkpoints/<env>-<teacher>-<time>")
    t.add_argument("--num-envs", type=int, default=1, help="N, teacher envs per candidate")
    t.add_argument("--rollout-steps", type=int, default=100, help="T, teacher steps per env per iteration")
    t.add_argument("--episode-length", type=int, default=0, help="0 = env default")
    t.add_argument("--updates", type=int, default=0,
                   help="U, student updates per iteration; 0 = one per two inserted transitions")
    t.add_argument("--lookahead-updates", type=int, default=0, help="look-ahead updates on each D0; 0 = one per two D0 transitions")
    t.add_argument("--return-envs", type=int, default=1, help="E, envs per R-hat estimate")
    t.add_argument("--return-horizon", type=int, default=200, help="H, steps per R-hat rollout")
    t.add_argument("--hidden", type=_widths, default=None, help="actor/critic widths, e.g. 64,64")
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--buffer-size", type=int, default=1_000_000)
    t.add_argument("--actor-lr", type=float, default=None)
    t.add_argument("--critic-lr", type=float, default=None)
    t.add_argument("--critic-l2", type=float, default=None)
    t.add_argument("--tau", type=float, default=None)
    t.add_argument("--gamma", type=float, default=0.99)
    t.add_argument("--layer-norm", action=argparse.BooleanOptionalAction, default=None)
    t.add_argument("--normalize-observations", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--teacher-lr", type=float, default=1e-3, help="eta, meta-gradient Adam lr")
    t.add_argument("--teacher-std", type=float, default=0.2, help="initial/fixed action-noise std")
    t.add_argument("--teacher-hidden", type=_widths, default=(64, 64))
    t.add_argument("--baseline", default="auto", choices=BASELINE_NAMES)
    t.add_argument("--log-every", type=int, default=10, help="iterations per scan chunk / log point")
    t.add_argument("--eval-envs", type=int, default=5, help="evaluation episodes per seed per log point")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(a: argparse.Namespace) -> Config:
    """Builds and validates the Config from parsed ``train`` arguments.

    Raises:
      ConfigError: naming the invalid field.
    """
    overrides: dict[str, Any] = dict(name=a.student, gamma=a.gamma, buffer_size=a.buffer_size,
                                     normalize_observations=a.normalize_observations,
                                     updates_per_iteration=a.updates)
    for field, value in (("hidden", a.hidden), ("batch_size", a.batch_size), ("actor_lr", a.actor_lr),
                         ("critic_lr", a.critic_lr), ("critic_l2", a.critic_l2), ("tau", a.tau),
                         ("layer_norm", a.layer_norm)):
        if value is not None:
            overrides[field] = value
    config = Config(
        env=a.env, episode_length=a.episode_length, seeds=a.seeds, seed=a.seed, num_envs=a.num_envs,
        rollout_steps=a.rollout_steps, total_steps=a.total_steps, log_every=a.log_every, eval_envs=a.eval_envs,
        student=student_preset(a.preset, **overrides),
        teacher=TeacherConfig(name=a.teacher, init_std=a.teacher_std, lr=a.teacher_lr, hidden=a.teacher_hidden,
                              baseline=a.baseline),
        meta=MetaConfig(candidates=a.candidates, lookahead_updates=a.lookahead_updates,
                        return_envs=a.return_envs, return_horizon=a.return_horizon),
    )
    return validate(config)


def prepare_run_dir(run_dir: str | None, config: Config) -> Path:
    """Creates the run directory and checks it is writable.

    Raises:
      ConfigError: (field ``run_dir``) if it cannot be created or written.
    """
    if run_dir is None:
        run_dir = os.path.join("checkpoints", f"{config.env}-{config.teacher.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    path = Path(run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError("run_dir", str(path), f"a writable directory ({e.strerror or e})") from e
    return path


def format_table(config: Config, final: Sequence[float]) -> str:
    """Markdown table of final evaluation return per seed and mean +- sd (sample sd)."""
    n = len(final)
    mean = sum(final) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in final) / (n - 1)) if n > 1 else 0.0
    lines = [f"final eval return: env={config.env} teacher={config.teacher.name} student={config.student.name}",
             "| seed | eval_return |", "| ---: | ---: |"]
    lines += [f"| {i} | {x:.2f} |" for i, x in enumerate(final)]
    lines.append(f"| mean ± sd | {mean:.2f} ± {sd:.2f} |")
    return "\n".join(lines)


def train(config: Config, run_dir: Path, progress: bool = True) -> list[float]:
    """Runs the whole training job; returns the final eval return (mean over eval envs) per seed."""
    import jax
    import numpy as np
    from tqdm import tqdm

    from mjxmeta.trainer import Trainer

    trainer = Trainer(config)
    (run_dir / "config.json").write_text(json.dumps(to_dict(config), indent=2))
    t0 = time.time()
    state = trainer.shard(trainer.init_seeds(trainer.seed_keys()))
    steps_per_chunk = config.steps_per_iteration * config.log_every
    total = trainer.num_chunks * steps_per_chunk
    final: list[float] = []
    with open(run_dir / "metrics.jsonl", "a") as log, \
            tqdm(total=total, unit="step", disable=not progress, dynamic_ncols=True, file=sys.stderr) as bar:
        for chunk in range(trainer.num_chunks):
            tc = time.time()
            state, metrics = trainer.run_chunk(state)
            iteration = (chunk + 1) * config.log_every
            returns = trainer.evaluate_seeds(state, trainer.eval_keys(iteration))
            metrics, returns, env_steps = jax.device_get((metrics, returns, state.env_steps))
            wall = time.time() - t0
            final = [float(np.mean(r)) for r in returns]
            for s in range(config.seeds):
                row = {"env_steps": int(env_steps[s]), "iteration": iteration, "seed": s,
                       "eval_return": final[s], "wall_s": round(wall, 3)}
                for k, v in metrics.items():
                    row[k] = float(v[s, -1]) if k == "teacher_log_std" else float(np.mean(v[s]))
                log.write(json.dumps(row) + "\n")
            log.flush()
            bar.update(steps_per_chunk)
            bar.set_postfix(ret=f"{np.mean(final):.1f}", sps=f"{config.seeds * steps_per_chunk / (time.time() - tc):.0f}",
                            meta_r=f"{np.mean(metrics['meta_reward']):.2f}")
    return final


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command == "train":
        try:
            config = config_from_args(a)
            run_dir = prepare_run_dir(a.run_dir, config)
        except ConfigError as e:
            parser.exit(2, f"mjxmeta: error: {e}\n")
        print(f"run dir: {run_dir}  ({config.num_iterations} iterations x {config.steps_per_iteration} env steps, "
              f"{config.seeds} seeds)", file=sys.stderr)
        final = train(config, run_dir, progress=not a.no_progress)
        print(format_table(config, final))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
