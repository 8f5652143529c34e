"""Scaling tables: seeds S, candidates K and envs N, for the ``gaussian`` and ``meta`` teachers.

One factor at a time around a base cell (``baselines2017`` student, replay
capacity 1e6, K = 2, N = 1):

* S in {1, 4, 16, 64} on MJX ``inverted_pendulum``, both teachers;
* K in {1, 2, 4, 8} on ``pendulum``, ``meta``, S = 4;
* N in {1, 4, 16} on ``pendulum``, both teachers, S = 4.

Each cell is one ``mjxmeta bench`` process (so its peak RSS is its own) that
writes ``results/scaling/<cell>.json``; cells whose file exists are skipped, so
an interrupted run loses at most the cell in flight. Cells are separate
processes: compare them as absolute figures under the load noted in each file;
the ratios that are targets are measured in one process by ``targets.py``.

    python experiments/bench/scaling.py            # every missing cell
    python experiments/bench/scaling.py --list     # what would run
    python experiments/bench/scaling.py --rows S   # one row only
    python experiments/bench/scaling.py --rows S --seeds 1 4 16   # S = 64 left out
    python experiments/bench/scaling.py --max-cells 1   # one missing cell, then exit (a quiet gap between cells)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = HERE / "results" / "scaling"

BASE = dict(preset="baselines2017", buffer=1_000_000, K=2, N=1, S=4)
ROWS = {
    "S": [dict(env="inverted_pendulum", teacher=t, S=s) for t in ("gaussian", "meta") for s in (1, 4, 16, 64)],
    "K": [dict(env="pendulum", teacher="meta", K=k) for k in (1, 2, 4, 8)],
    "N": [dict(env="pendulum", teacher=t, N=n) for t in ("gaussian", "meta") for n in (1, 4, 16)],
}


def cells(rows) -> list[dict]:
    """Distinct cells of the given rows, each with every field filled from BASE."""
    out: list[dict] = []
    for r in rows:
        for c in ROWS[r]:
            cell = {**BASE, **c}
            if cell["teacher"] == "gaussian":
                cell["K"] = BASE["K"]  # noise teachers run one D0 batch whatever K is
            if cell not in out:
                out.append(cell)
    return out


def cell_name(c: dict) -> str:
    return f"{c['env']}-{c['teacher']}-{c['preset']}-S{c['S']}-K{c['K']}-N{c['N']}-B{c['buffer']}"


def command(c: dict, path: Path, a) -> list[str]:
    return [sys.executable, "-m", "mjxmeta.cli", "bench", "--env", c["env"], "--teacher", c["teacher"],
            "--preset", c["preset"], "--seeds", str(c["S"]), "--candidates", str(c["K"]),
            "--num-envs", str(c["N"]), "--buffer-size", str(c["buffer"]), "--chunks", str(a.chunks),
            "--rounds", str(a.rounds), "--reps", str(a.reps), "--train-chunks", "0", "--cold", "--json", str(path)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="only the cells with these S (default: all)")
    ap.add_argument("--list", action="store_true", help="print the cells and whether they are done")
    ap.add_argument("--max-cells", type=int, default=None, help="measure at most this many missing cells, then exit")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [c for c in cells(a.rows) if a.seeds is None or c["S"] in a.seeds]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    measured = 0
    for i, c in enumerate(todo):
        path = out / f"{cell_name(c)}.json"
        if a.max_cells is not None and measured >= a.max_cells and not path.exists():
            break
        if a.list or path.exists():
            print(f"{'done' if path.exists() else 'todo'}  {path.name}")
            continue
        tmp = path.with_suffix(".partial")
        cmd = command(c, tmp, a)
        print(f"[scaling] {i + 1}/{len(todo)} {path.name}", file=sys.stderr, flush=True)
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        os.replace(tmp, path)  # only a finished cell counts as done
        measured += 1
        print(f"[scaling]   {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
