"""Compare teachers on one env at one env-step budget, S seeds each (vmapped).

Runs ``mjxmeta train`` once per teacher (in-process), writing each run to
``OUT/<env>-<teacher>/`` (config.json, metrics.jsonl), then prints a Markdown
table of final eval return mean ± sd over seeds, compile+run wall time and
steady env steps/s.

Usage:
  python experiments/compare_teachers.py --env pendulum --total-steps 20000 --seeds 5 --out checkpoints/compare
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import mjxmeta
from mjxmeta.algo.config import TEACHER_NAMES
from mjxmeta.cli import build_parser, config_from_args
from mjxmeta.runs.layout import claim_fresh


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="pendulum")
    p.add_argument("--teachers", nargs="+", default=list(TEACHER_NAMES))
    p.add_argument("--total-steps", type=int, default=20_000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default="checkpoints/compare")
    p.add_argument("extra", nargs="*", help="extra `mjxmeta train` flags after --")
    a = p.parse_args()
    rows = []
    for teacher in a.teachers:
        args = build_parser().parse_args(["train", "--env", a.env, "--teacher", teacher, "--seeds", str(a.seeds),
                                          "--total-steps", str(a.total_steps), "--no-progress", *a.extra])
        config = config_from_args(args)
        # A fresh run; an earlier run of this cell is moved aside to <dir>.old-<time>, not deleted.
        lock = claim_fresh(Path(a.out) / f"{a.env}-{teacher}", config, overwrite=True)
        run_dir = lock.run_dir
        t0 = time.time()
        try:
            run = mjxmeta.train(config, run_dir)
        finally:
            lock.release()
        wall = time.time() - t0
        final, lines = run.final_returns, run.metrics()
        first = min(r["wall_s"] for r in lines)
        steps = max(r["env_steps"] for r in lines)
        first_steps = min(r["env_steps"] for r in lines)
        sps = config.seeds * (steps - first_steps) / max(1e-9, wall - first)
        n = len(final)
        mean = sum(final) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in final) / (n - 1)) if n > 1 else 0.0
        rows.append((teacher, mean, sd, steps, wall, first, sps))
        print(f"{teacher}: {mean:.1f} ± {sd:.1f}  ({wall:.0f} s)", flush=True)
    print(f"\n{a.env}, budget {a.total_steps} env steps per seed (D0 + D1 + R-hat), {a.seeds} seeds\n")
    print("| teacher | final eval return (mean ± sd) | env steps | wall s | first chunk s (compile) | env steps/s (all seeds) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for t, m, s, steps, wall, first, sps in rows:
        print(f"| {t} | {m:.1f} ± {s:.1f} | {steps} | {wall:.0f} | {first:.0f} | {sps:.0f} |")


if __name__ == "__main__":
    main()
