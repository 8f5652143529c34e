"""Exploration on sparse-reward tasks, as one resumable command.

Students DDPG and TD3, each with the teachers ``gaussian``, ``ou``, ``pink``,
``param_noise``, ``meta`` and ``meta_latent``, and Brax's SAC, on
``mountain_car_continuous`` and ``cartpole_swingup_sparse`` (issue 11, item 6).
One *piece* is one ``mjxmeta train`` run of one (env, student, teacher) with
10 seeds vmapped in one program, at the env's budget of env steps per seed
(:data:`BUDGETS`; every env step counts, D1 and R-hat rollouts included).

A piece whose results exist (``results/<env>/<student>-<teacher>/metrics.jsonl``)
is skipped; a piece whose student or teacher this checkout does not have yet
(``mjxmeta.algo.config.STUDENT_NAMES`` / ``TEACHER_NAMES``), or whose env needs an
extra that is not installed, is listed as unavailable and skipped. With
``--commit`` each finished piece is committed on its own. A piece keeps:
``config.json``, ``metrics.jsonl``, the first and last D0 visitation samples,
and ``piece.json`` (the exact command, wall time, load average during the run,
versions). The run directory itself (checkpoints, TensorBoard) stays under
``--work`` and is not committed.

Reaching the goal. Both tasks pay a positive reward only at the goal
(``mountain_car_continuous``: +100 on the terminating step, every other
step -0.1 a^2 <= 0; ``cartpole_swingup_sparse``: 1 per step in the goal
region, else 0). Per seed, :func:`goal_stats` records

* ``explored``: the teacher's data D0 reached the goal at least once during
  training (some log point has ``d0_max_reward`` > 0; students whose runs do
  not log it, e.g. Brax SAC, have none);
* ``eval_reached``: some evaluation had a positive mean return. On cartpole
  that is exactly "an evaluation episode collected goal reward"; on mountain
  car an episode that misses the goal returns <= 0 and one that reaches it
  > 0, so a positive mean implies at least one goal episode (a lower bound);
* ``solved``: the final evaluation's mean return is positive;
* ``reached``: ``explored`` or ``eval_reached``: the seed ever reached the goal.

``--summarize`` (also run at the end of a normal call) writes
``results/summary.md`` (the fractions per piece) and ``mjxmeta report``'s
tables and curves to ``results/report/``.

Usage:
  python experiments/sparse_exploration/run.py --commit
  python experiments/sparse_exploration/run.py --envs mountain_car_continuous --students ddpg --teachers gaussian
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ENVS = ("mountain_car_continuous", "cartpole_swingup_sparse")
STUDENTS = ("ddpg", "td3", "sac")
TEACHERS = ("gaussian", "ou", "pink", "param_noise", "meta", "meta_latent")
NO_TEACHER = "own"  # the piece name of a student that explores by itself (Brax SAC: entropy-regularized policy)
BUDGETS = {"mountain_car_continuous": 50_000, "cartpole_swingup_sparse": 50_000}  # env steps per seed
SEEDS = 10
LOG_POINTS = 10
EVAL_POINTS = 5
EVAL_ENVS = 5
KEEP = ("config.json", "metrics.jsonl")


def pieces(envs, students, teachers) -> list[tuple[str, str, str]]:
    """(env, student, teacher) in run order: env, then teacher, then student (SAC last, no teacher)."""
    out = []
    for env in envs:
        out += [(env, s, t) for t in teachers for s in students if s != "sac"]
        if "sac" in students:
            out.append((env, "sac", NO_TEACHER))
    return out


def unavailable(env: str, student: str, teacher: str) -> str | None:
    """Why this checkout cannot run the piece, or None."""
    from mjxmeta.algo.config import STUDENT_NAMES, TEACHER_NAMES, Config, ConfigError, validate

    if student not in STUDENT_NAMES:
        return f"student {student!r} not in this checkout (has {STUDENT_NAMES})"
    if teacher != NO_TEACHER and teacher not in TEACHER_NAMES:
        return f"teacher {teacher!r} not in this checkout (has {TEACHER_NAMES})"
    try:
        validate(Config(env=env))
    except ConfigError as e:
        return str(e)
    return None


def piece_dir(env: str, student: str, teacher: str) -> Path:
    return RESULTS / env / f"{student}-{teacher}"


def train_flags(env: str, student: str, teacher: str, seeds: int) -> list[str]:
    """``mjxmeta train`` flags of one piece: ~LOG_POINTS log points, EVAL_POINTS evaluations."""
    from mjxmeta.algo.config import Config, StudentConfig, TeacherConfig

    budget = BUDGETS[env]
    flags = ["--env", env, "--student", student, "--seeds", str(seeds), "--total-steps", str(budget),
             "--eval-every", str(budget // EVAL_POINTS), "--eval-envs", str(EVAL_ENVS), "--no-progress"]
    if teacher != NO_TEACHER:
        per_iter = Config(env=env, student=StudentConfig(name=student),
                          teacher=TeacherConfig(name=teacher)).steps_per_iteration
        flags += ["--teacher", teacher, "--log-every", str(max(1, round(budget / per_iter / LOG_POINTS)))]
    return flags


class LoadSampler:
    """Samples the 1-minute load average every ``period`` s in a thread while a piece runs."""

    def __init__(self, period: float = 15.0):
        self.samples = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(period,), daemon=True)

    def _loop(self, period):
        while not self._stop.wait(period):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict:
        return {"mean": round(float(np.mean(self.samples)), 2), "max": round(float(np.max(self.samples)), 2),
                "samples": len(self.samples)}


def run_piece(env: str, student: str, teacher: str, seeds: int, work: Path) -> Path:
    """Trains one piece in ``work``; copies what is kept to its results directory and returns that."""
    run_dir = work / env / f"{student}-{teacher}"
    cmd = [sys.executable, "-m", "mjxmeta.cli", "train", "--run-dir", str(run_dir), "--overwrite",
           *train_flags(env, student, teacher, seeds)]
    shown = "mjxmeta " + " ".join(cmd[3:])
    print(f"[run]  {shown}", flush=True)
    t0 = time.time()
    with LoadSampler() as load:
        subprocess.run(["nice", "-n", "19", *cmd], check=True)
    wall = round(time.time() - t0, 1)
    out = piece_dir(env, student, teacher)
    out.mkdir(parents=True, exist_ok=True)
    for name in KEEP:
        shutil.copy2(run_dir / name, out / name)
    visits = sorted((run_dir / "visitation").glob("iter_*.npy"))
    if visits:
        (out / "visitation").mkdir(exist_ok=True)
        for v in {visits[0], visits[-1]}:  # early vs late: what the report's visitation figure draws
            shutil.copy2(v, out / "visitation" / v.name)
    versions = {p: importlib.metadata.version(p) for p in ("jax", "brax", "mujoco-mjx", "flax", "optax")}
    record = {"command": shown + f" (run dir: {run_dir}; under nice -n 19)", "wall_s": wall,
              "load_1min": load.summary(), "cpus": os.cpu_count(), "versions": versions,
              "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
              "goal": goal_stats(env, out / "metrics.jsonl")}
    (out / "piece.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"[{wall:.0f} s] {out}  reached {record['goal']['fraction']['reached']:.1f}", flush=True)
    return out


def goal_stats(env: str, metrics: Path) -> dict:
    """Per-seed goal flags (module docstring) and their fractions over the seeds."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    seeds = sorted({int(r["seed"]) for r in rows})
    per = {}
    for s in seeds:
        mine = sorted((r for r in rows if int(r["seed"]) == s), key=lambda r: r["env_steps"])
        evals = [r["eval_return"] for r in mine if "eval_return" in r]
        d0 = [r["d0_max_reward"] for r in mine if "d0_max_reward" in r]
        explored = bool(d0) and max(d0) > 0
        eval_reached = bool(evals) and max(evals) > 0
        first = next((r["env_steps"] for r in mine if r.get("d0_max_reward", 0) > 0 or r.get("eval_return", 0) > 0),
                     None)
        per[s] = {"explored": explored if d0 else None, "eval_reached": eval_reached,
                  "solved": bool(evals) and evals[-1] > 0, "reached": explored or eval_reached,
                  "first_env_steps": first, "final_eval_return": evals[-1] if evals else None}
    frac = {k: (float(np.mean([p[k] for p in per.values()])) if all(p[k] is not None for p in per.values())
                else None) for k in ("explored", "eval_reached", "solved", "reached")}
    return {"seeds": len(seeds), "fraction": frac, "per_seed": per}


def commit(path: Path, message: str, tries: int = 5) -> None:
    """``git add path && git commit`` of ``path`` only (the repository of this file).

    Retries a few times, 10 s apart: a git command run by hand in the same
    worktree meanwhile holds ``index.lock``. Raises CalledProcessError after the last try.
    """
    for attempt in range(tries):
        add = subprocess.run(["git", "add", str(path)], cwd=HERE)
        if add.returncode == 0 and subprocess.run(["git", "diff", "--cached", "--quiet", "--", str(path)],
                                                  cwd=HERE).returncode == 0:
            return  # nothing changed
        if add.returncode == 0 and subprocess.run(["git", "commit", "-q", "-m", message, "--", str(path)],
                                                  cwd=HERE).returncode == 0:
            return
        if attempt == tries - 1:
            raise subprocess.CalledProcessError(1, f"git commit -- {path}")
        time.sleep(10)


def _ci(fraction: float, n: int) -> str:
    """Exact (Clopper-Pearson) 95 % interval of a fraction of ``n`` seeds, as ``[lo, hi] %``."""
    from scipy.stats import binomtest

    ci = binomtest(round(fraction * n), n).proportion_ci(0.95, method="exact")
    return f"[{100 * ci.low:.0f}, {100 * ci.high:.0f}]"


def _fmt(x, pct=True):
    if x is None:
        return "n/a"
    return f"{100 * x:.0f} %" if pct else f"{x:.1f}"


def summarize(run_report: bool = True) -> Path:
    """``results/summary.md`` from every finished piece and, with ``run_report``, ``mjxmeta report``."""
    lines = ["# Sparse exploration: goal reaching per piece", "",
             "Generated by `python experiments/sparse_exploration/run.py --summarize` from each piece's "
             "`piece.json`. Fractions are over the piece's seeds (definitions: `run.py` docstring), the reached "
             "fraction with its exact (Clopper-Pearson) 95 % interval; the first reach is at log-point resolution; "
             "`final eval` is the mean ± sd over seeds of the last evaluation's mean return.", ""]
    dirs = []
    for env in ENVS:
        found = [piece_dir(*x) / "piece.json" for x in pieces([env], STUDENTS, TEACHERS)]
        found = [p for p in found if p.exists()]
        if not found:
            continue
        lines += [f"## {env} ({BUDGETS[env]} env steps per seed)", "",
                  "| student | teacher | seeds | explored (D0) | reached at eval | solved at end | reached (either) [95 % CI] "
                  "| first reach (median env steps) | final eval | wall s | load (mean) |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for p in found:
            rec = json.loads(p.read_text())
            g = goal_stats(env, p.parent / "metrics.jsonl")
            finals = [v["final_eval_return"] for v in g["per_seed"].values() if v["final_eval_return"] is not None]
            student, teacher = p.parent.name.split("-", 1)
            f = g["fraction"]
            firsts = [v["first_env_steps"] for v in g["per_seed"].values() if v["first_env_steps"] is not None]
            first = f"{np.median(firsts):.0f} ({len(firsts)} seeds)" if firsts else "never"
            lines.append(f"| {student} | {teacher} | {g['seeds']} | {_fmt(f['explored'])} | {_fmt(f['eval_reached'])} "
                         f"| {_fmt(f['solved'])} | {_fmt(f['reached'])} {_ci(f['reached'], g['seeds'])} | {first} "
                         f"| {np.mean(finals):.1f} ± "
                         f"{np.std(finals, ddof=1):.1f} | {rec['wall_s']:.0f} | {rec['load_1min']['mean']} |")
            dirs.append(p.parent)
        lines.append("")
    out = RESULTS / "summary.md"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    if run_report and dirs:
        subprocess.run(["nice", "-n", "19", sys.executable, "-m", "mjxmeta.cli", "report", *map(str, dirs),
                        "--out", str(RESULTS / "report"), "--reps", "1000"], check=True)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", choices=ENVS, default=list(ENVS))
    p.add_argument("--students", nargs="+", choices=STUDENTS, default=list(STUDENTS))
    p.add_argument("--teachers", nargs="+", choices=TEACHERS, default=list(TEACHERS))
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument("--work", type=Path, default=Path("checkpoints/sparse_exploration"),
                   help="where the run directories go (not committed)")
    p.add_argument("--commit", action="store_true", help="git commit each finished piece and the summary")
    p.add_argument("--summarize", action="store_true", help="only write summary.md and the report")
    p.add_argument("--list", action="store_true", help="only list the pieces: done, to run, unavailable")
    a = p.parse_args(argv)
    if a.summarize:
        print(summarize())
        return
    for env, student, teacher in pieces(a.envs, a.students, a.teachers):
        name = f"{env} {student}-{teacher}"
        if (piece_dir(env, student, teacher) / "piece.json").exists():
            print(f"[done] {name}", flush=True)
            continue
        why = unavailable(env, student, teacher)
        if why:
            print(f"[skip] {name}: {why}", flush=True)
            continue
        if a.list:
            print(f"[todo] {name}", flush=True)
            continue
        out = run_piece(env, student, teacher, a.seeds, a.work)
        if a.commit:
            rec = json.loads((out / "piece.json").read_text())
            commit(out, f"sparse_exploration: {name}, {a.seeds} seeds x {BUDGETS[env]} env steps in "
                        f"{rec['wall_s']:.0f} s (load {rec['load_1min']['mean']}); goal reached by "
                        f"{100 * rec['goal']['fraction']['reached']:.0f} % of seeds")
    if not a.list:
        summary = summarize()
        if a.commit:
            commit(RESULTS / "summary.md", "sparse_exploration: summary")
            if (RESULTS / "report").exists():
                commit(RESULTS / "report", "sparse_exploration: report tables and curves")
        print(summary)


if __name__ == "__main__":
    main()
