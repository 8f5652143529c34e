"""The paper's comparison (Xu et al., ICML 2018, Table 1) as one resumable command.

Teachers ``gaussian``, ``ou``, ``meta_variance``, ``meta``, ``meta_state`` with a
DDPG student on the six environments, S >= 10 seeds per cell (vmapped in one
program per cell), at a stated env-step budget per env (all env steps count:
D0, D1 and the R-hat rollouts). Each cell is a normal ``mjxmeta train`` run in
``OUT/<profile>/<env>-<teacher>``; rerunning the script resumes unfinished
cells from their last checkpoint and skips finished ones. At the end it calls
``mjxmeta report`` on every finished cell.

Profiles:
  cpu    budgets this 2-core CPU machine can finish (see results/README.md for
         the wall time); baselines2017 student preset.
  paper  1M env steps per env (the Baselines default), for an accelerator.

Usage:
  python experiments/paper_table/run.py --profile cpu --envs pendulum inverted_pendulum inverted_double_pendulum
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from mjxmeta.algo.config import ENV_NAMES as ENVS
from mjxmeta.algo.config import TEACHER_NAMES as TEACHERS
from mjxmeta.runs.loop import CHECKPOINTS, CONFIG
PROFILES = {
    # env -> env-step budget per seed
    "cpu": {"pendulum": 20_000, "inverted_pendulum": 30_000, "inverted_double_pendulum": 20_000,
            "reacher": 50_000, "hopper": 100_000, "halfcheetah": 100_000},
    "paper": {env: 1_000_000 for env in ENVS},
}
LOG_POINTS = 12  # log points per run (chunks), whatever the teacher's steps per iteration
EVAL_ENVS = {"cpu": 3, "paper": 10}


def cell_flags(profile: str, env: str, teacher: str, seeds: int) -> list[str]:
    """``mjxmeta train`` flags of one cell; log_every gives ~LOG_POINTS log points."""
    from mjxmeta.algo.config import Config, TeacherConfig

    budget = PROFILES[profile][env]
    per_iter = Config(env=env, teacher=TeacherConfig(name=teacher)).steps_per_iteration
    log_every = max(1, round(budget / per_iter / LOG_POINTS))
    return ["--env", env, "--teacher", teacher, "--seeds", str(seeds), "--total-steps", str(budget),
            "--log-every", str(log_every), "--checkpoint-every", str(log_every),
            "--eval-envs", str(EVAL_ENVS[profile]), "--no-progress"]


def finished(run_dir: Path) -> bool:
    """True when the run's last checkpoint covers its whole budget."""
    from mjxmeta.runs.loop import load_config

    ckpts = run_dir / CHECKPOINTS
    if not (run_dir / CONFIG).exists() or not ckpts.exists():
        return False
    config = load_config(run_dir)
    steps = [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()]
    n_iter = -(-config.num_iterations // config.log_every) * config.log_every
    return bool(steps) and max(steps) >= n_iter


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    p.add_argument("--envs", nargs="+", choices=ENVS, default=list(ENVS))
    p.add_argument("--teachers", nargs="+", choices=TEACHERS, default=list(TEACHERS))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--out", default="checkpoints/paper_table")
    p.add_argument("--report", default=None, help="report directory; default OUT/<profile>/report")
    a = p.parse_args()
    if a.seeds < 10:
        p.error("--seeds must be >= 10 for the paper table (the issue asks for >= 10 seeds per cell)")
    root = Path(a.out) / a.profile
    mjxmeta = [sys.executable, "-m", "mjxmeta.cli"]
    timings = {}
    for env in a.envs:
        for teacher in a.teachers:
            run_dir = root / f"{env}-{teacher}"
            if finished(run_dir):
                print(f"[done]   {run_dir}", flush=True)
                continue
            flags = cell_flags(a.profile, env, teacher, a.seeds)
            if (run_dir / CONFIG).exists():
                cmd = mjxmeta + ["train", "--resume", str(run_dir), *flags]
            else:
                cmd = mjxmeta + ["train", "--run-dir", str(run_dir), *flags]
            print(f"[run]    {' '.join(cmd[2:])}", flush=True)
            t0 = time.time()
            subprocess.run(cmd, check=True)
            timings[f"{env}-{teacher}"] = round(time.time() - t0, 1)
            print(f"[{timings[f'{env}-{teacher}']:.0f} s] {run_dir}", flush=True)
    if timings:
        log = root / "timings.json"
        old = json.loads(log.read_text()) if log.exists() else {}
        log.write_text(json.dumps({**old, **timings}, indent=2))
    runs = [str(root / f"{e}-{t}") for e in a.envs for t in a.teachers if finished(root / f"{e}-{t}")]
    report = a.report or str(root / "report")
    subprocess.run(mjxmeta + ["report", *runs, "--out", report], check=True)
    print(f"report: {report}")


if __name__ == "__main__":
    main()
