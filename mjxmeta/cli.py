"""Command line: ``mjxmeta train | eval``.

``mjxmeta train`` validates the whole config before anything compiles, writes
``RUN/config.json``, runs the fused trainer chunk by chunk with a progress bar,
appends one JSON object per log point per seed to ``RUN/metrics.jsonl``, saves
Orbax checkpoints under ``RUN/checkpoints`` and ends with a table of final
evaluation returns per seed and mean ± sd. ``--resume RUN`` continues a run.

``mjxmeta eval RUN`` restores a checkpoint and prints per-seed deterministic
returns.

Exit codes: 0 done, 2 invalid input (message names the field), 3 non-finite
values (message names seed, iteration and quantity), 4 resume refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from mjxmeta.config import (BASELINE_NAMES, ENV_NAMES, PRESET_NAMES, STUDENT_NAMES, TEACHER_NAMES, Config,
                            ConfigError, student_preset, validate)
from mjxmeta.run import (NonFiniteError, ResumeError, evaluate_checkpoint, format_table, load_config,
                         prepare_run_dir, train)

__all__ = ["build_parser", "config_from_args", "main", "prepare_run_dir", "format_table", "train"]


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
    t.add_argument("--total-steps", type=int, default=50_000,
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
    t.add_argument("--checkpoint-every", type=int, default=0,
                   help="iterations between checkpoints (multiple of --log-every); 0 = only at the end")
    t.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    t.add_argument("--resume", metavar="RUN", default=None,
                   help="continue the run in RUN; flags not given keep RUN's values, only --total-steps may differ")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = sub.add_parser("eval", help="restore a checkpoint and print per-seed deterministic returns")
    e.add_argument("run", help="run directory")
    e.add_argument("--checkpoint", type=int, default=None, help="iteration of the checkpoint; default latest")
    e.add_argument("--episodes", type=int, default=10, help="evaluation episodes per seed")
    return p


# flag dest -> dotted Config field
FLAG_FIELDS = {
    "env": "env", "teacher": "teacher.name", "student": "student.name", "seeds": "seeds", "seed": "seed",
    "candidates": "meta.candidates", "total_steps": "total_steps", "num_envs": "num_envs",
    "rollout_steps": "rollout_steps", "episode_length": "episode_length",
    "updates": "student.updates_per_iteration", "lookahead_updates": "meta.lookahead_updates",
    "return_envs": "meta.return_envs", "return_horizon": "meta.return_horizon", "hidden": "student.hidden",
    "batch_size": "student.batch_size", "buffer_size": "student.buffer_size", "actor_lr": "student.actor_lr",
    "critic_lr": "student.critic_lr", "critic_l2": "student.critic_l2", "tau": "student.tau",
    "gamma": "student.gamma", "layer_norm": "student.layer_norm",
    "normalize_observations": "student.normalize_observations", "teacher_lr": "teacher.lr",
    "teacher_std": "teacher.init_std", "teacher_hidden": "teacher.hidden", "baseline": "teacher.baseline",
    "log_every": "log_every", "eval_envs": "eval_envs", "checkpoint_every": "checkpoint_every", "keep": "keep",
}


def _with_field(config: Config, dotted: str, value: Any) -> Config:
    if "." in dotted:
        sub, name = dotted.split(".")
        return dataclasses.replace(config, **{sub: dataclasses.replace(getattr(config, sub), **{name: value})})
    return dataclasses.replace(config, **{dotted: value})


def config_from_args(a: argparse.Namespace, base: Config | None = None) -> Config:
    """Builds and validates the Config from parsed ``train`` arguments.

    Without ``base``: the ``--preset`` student with every given flag applied.
    With ``base`` (``--resume``): ``base`` with only the flags that differ from
    their parser defaults applied.

    Raises:
      ConfigError: naming the invalid field.
    """
    defaults = build_parser().parse_args(["train"])
    if base is None:
        config = Config(student=student_preset(a.preset))
        given = {d: v for d, v in vars(a).items() if d in FLAG_FIELDS and v is not None}
    else:
        config = base
        if a.preset != defaults.preset:
            config = dataclasses.replace(config, student=student_preset(a.preset, name=config.student.name))
        given = {d: v for d, v in vars(a).items() if d in FLAG_FIELDS and v != getattr(defaults, d)}
    for dest, value in given.items():
        config = _with_field(config, FLAG_FIELDS[dest], value)
    return validate(config)


def _train(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    try:
        if a.resume is not None:
            run_dir = Path(a.resume)
            if not (run_dir / "config.json").exists():
                raise ConfigError("resume", a.resume, "a run directory containing config.json")
            config = config_from_args(a, base=load_config(run_dir))
            old = load_config(run_dir)
            if a.run_dir is not None and Path(a.run_dir).absolute() != run_dir.absolute():
                raise ConfigError("run_dir", a.run_dir, f"omitted or equal to --resume {a.resume}")
        else:
            config = config_from_args(a)
            run_dir = prepare_run_dir(a.run_dir, config)
            old = None
    except ConfigError as e:
        parser.exit(2, f"mjxmeta: error: {e}\n")
    print(f"run dir: {run_dir}  ({config.num_iterations} iterations x {config.steps_per_iteration} env steps, "
          f"{config.seeds} seeds)", file=sys.stderr)
    try:
        final = train(config, run_dir, resume=old is not None, progress=not a.no_progress)
    except ResumeError as e:
        print(f"mjxmeta: error: {e}", file=sys.stderr)
        return 4
    except NonFiniteError as e:
        print(f"mjxmeta: error: {e}", file=sys.stderr)
        return 3
    except ConfigError as e:
        print(f"mjxmeta: error: {e}", file=sys.stderr)
        return 2
    print(format_table(config, final))
    return 0


def _eval(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    run_dir = Path(a.run)
    if not (run_dir / "config.json").exists():
        parser.exit(2, f"mjxmeta: error: {a.run!r} is not a run directory (no config.json)\n")
    if a.episodes < 1:
        parser.exit(2, f"mjxmeta: error: --episodes {a.episodes} is invalid: accepted an integer >= 1\n")
    try:
        step, returns = evaluate_checkpoint(run_dir, a.checkpoint, a.episodes)
    except FileNotFoundError as e:
        print(f"mjxmeta: error: {e}", file=sys.stderr)
        return 2
    config = load_config(run_dir)
    print(f"checkpoint at iteration {step}, {a.episodes} episodes per seed")
    print(format_table(config, [float(r.mean()) for r in returns]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mjxmeta`` console script; returns the exit code."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command == "train":
        return _train(parser, a)
    return _eval(parser, a)


if __name__ == "__main__":
    sys.exit(main())
