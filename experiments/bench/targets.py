"""The throughput targets as measured ratios, and the results README built from all benchmark files.

``measure`` runs the benchmarks behind the targets. Every ratio comes from one
process whose cells alternate round by round (``mjxmeta bench`` with several
cells), except the peer ratio (``peers.py``, alternating worker processes) and
the compile / second-run times (fresh processes by nature). Each measurement
writes ``results/targets/<name>.json`` and is skipped when that file exists.

``report`` reads ``results/targets/``, ``results/scaling/`` and
``results/peers.json`` and writes ``results/README.md``: the targets (measured
value, target, met or not, and for a missed one what the profile says bounds
it), the scaling tables and the peer comparison. ``--readme docs/performance.md``
also rewrites that page's speed section (between its ``speed:begin`` and
``speed:end`` markers) from the same files.

    python experiments/bench/targets.py measure
    python experiments/bench/targets.py report --readme docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT))

from mjxmeta.tools.bench import PIECE_LABELS, PIECES, machine, versions  # noqa: E402

# name -> mjxmeta bench arguments (one process, cells alternating)
BENCHES = {
    "capacity": ["--env", "pendulum", "--teacher", "gaussian", "--seeds", "4", "16",
                 "--buffer-size", "10000", "1000000", "--rounds", "5", "--train-chunks", "0", "--no-cost"],
    "seeds": ["--env", "inverted_pendulum", "--teacher", "gaussian", "--seeds", "1", "16", "--rounds", "5",
              "--train-chunks", "0", "--no-cost"],
    "whole_run": ["--env", "inverted_pendulum", "--teacher", "meta", "--seeds", "4", "--candidates", "2",
                  "--rounds", "2", "--chunks", "2", "--train-chunks", "5", "--no-cost"],
    "meta_k1": ["--env", "inverted_pendulum", "--teacher", "gaussian", "meta", "--candidates", "1", "--seeds", "1",
                "--rounds", "5", "--train-chunks", "0", "--no-cost"],
    "modern_flops": ["--env", "inverted_pendulum", "--teacher", "gaussian", "--preset", "modern", "--seeds", "1",
                     "--num-envs", "4",
                     "--rounds", "3", "--reps", "7", "--train-chunks", "0"],
    "compile_hopper": ["--env", "hopper", "--teacher", "gaussian", "meta", "--cold", "--rounds", "1",
                       "--chunks", "1", "--train-chunks", "0", "--no-profile", "--no-cost"],
}
# mjxmeta train with a fresh compilation cache (first run), then again with that cache (second run), PAIRS times
# alternating. One iteration per chunk (800 env steps), so the first log point comes right after the first chunk.
SECOND_RUN = ["train", "--env", "hopper", "--teacher", "meta", "--seeds", "1", "--log-every", "1",
              "--total-steps", "2400", "--no-progress"]
PAIRS = 2


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def parse_trace(text: str) -> list[tuple[float, str]]:
    """The ``[seconds] what`` lines of ``startup_trace.py``."""
    out = []
    for line in text.splitlines():
        if line.startswith("[") and "]" in line:
            t, _, what = line[1:].partition("]")
            try:
                out.append((float(t), what.strip()))
            except ValueError:
                pass
    return out


def startup_phases(trace: list[tuple[float, str]], until: float) -> dict:
    """Seconds per phase before ``until`` (the first log point) from a start-up trace.

    imports (to ``import mjxmeta``), then, summed over the programs: Python
    tracing, lowering to MLIR, XLA compile or cache load (``backend``), of which
    reading the cached executable (``cache_read``); and the wall time of the
    marked steps (``Trainer.__init__``, ``init_seeds``, ``run_chunk``, ...).
    """
    ph: dict = {"trace_s": 0.0, "lower_s": 0.0, "backend_s": 0.0, "cache_read_s": 0.0, "steps": {}}
    opened: dict = {}
    for t, what in trace:
        if t > until:
            break
        if what == "import mjxmeta":
            ph["imports_s"] = t
        elif what.startswith("event "):
            _, event, dur, *name = what.split()
            d = float(dur.rstrip("s"))
            key = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
                   "/jax/core/compile/backend_compile_duration": "backend_s",
                   "/jax/compilation_cache/cache_retrieval_time_sec": "cache_read_s"}.get(event)
            if key:
                ph[key] += d
                if d > 0.5:
                    ph.setdefault("largest", []).append([key, name[0] if name else "", d])
        elif what[:2] in ("> ", "< "):
            label = what[2:]
            if what[0] == ">":
                opened[label] = t
            elif label in opened:
                ph["steps"][label] = ph["steps"].get(label, 0.0) + t - opened.pop(label)
    return ph


def time_to_first_log(argv: list[str], cache_dir: str) -> dict:
    """Runs ``mjxmeta <argv>`` (under ``startup_trace.py``) in a fresh process until its first metrics row.

    Returns seconds from process start to that row, the load before and after,
    and the start-up phases (:func:`startup_phases`). The process is killed at
    the first row: what follows is not part of the measurement.
    """
    with tempfile.TemporaryDirectory(prefix="mjxmeta-second-run-") as tmp:
        run_dir = Path(tmp) / "run"
        metrics = run_dir / "metrics.jsonl"
        err_path = Path(tmp) / "stderr"
        load = os.getloadavg()[0]
        t0 = time.time()
        env = dict(_env(), JAX_COMPILATION_CACHE_DIR=cache_dir, MJXMETA_TRACE_T0=repr(t0))
        with open(err_path, "w") as err:
            proc = subprocess.Popen([sys.executable, str(HERE / "startup_trace.py"), *argv, "--run-dir", str(run_dir)],
                                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
            first = None
            while proc.poll() is None:
                if metrics.exists() and metrics.stat().st_size > 0:
                    first = time.time() - t0
                    proc.kill()
                    proc.wait()
                    break
                time.sleep(0.01)
        text = err_path.read_text()
        if first is None:
            raise RuntimeError(f"mjxmeta {' '.join(argv)} ended (code {proc.returncode}) before a log point:\n"
                               f"{text[-3000:]}")
    trace = parse_trace(text)
    return {"first_log_s": first, "load_before": load, "load_after": os.getloadavg()[0],
            "phases": startup_phases(trace, first), "trace": [[t, w] for t, w in trace if t <= first]}


def second_run(pairs: int = PAIRS) -> dict:
    """First (empty cache) and second (warm cache) run to the first log point, alternating ``pairs`` times."""
    runs = []
    for _ in range(pairs):
        with tempfile.TemporaryDirectory(prefix="mjxmeta-cache-") as cache:
            runs.append(dict(time_to_first_log(SECOND_RUN, cache), run="first"))
            runs.append(dict(time_to_first_log(SECOND_RUN, cache), run="second"))
    return {"runs": runs, "command": ["mjxmeta"] + SECOND_RUN, "pairs": pairs}


def measure(names: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = out / f"{name}.json"
        if path.exists():
            print(f"[targets] {name}: done", file=sys.stderr)
            continue
        print(f"[targets] {name}", file=sys.stderr, flush=True)
        tmp = path.with_suffix(".partial")
        if name == "second_run":
            before = machine()
            result = dict(second_run(), versions=versions(), machine=before, machine_after=machine())
            tmp.write_text(json.dumps(result, indent=1))
        else:
            cmd = [sys.executable, "-m", "mjxmeta.cli", "bench", *BENCHES[name], "--json", str(tmp)]
            proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(proc.returncode)
        os.replace(tmp, path)


# ------------------------------------------------------------------ report
def _load_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _cell(result: dict | None, **match) -> dict | None:
    """The cell of a bench result whose settings match (None if absent or not measured)."""
    for c in (result or {}).get("cells", []):
        if all(c["cell"][k] == v for k, v in match.items()):
            return c
    return None


def _bound(c: dict) -> str:
    """What the profile says bounds a cell: its largest pieces."""
    if not c or "profile" not in c:
        return "no profile"
    share = sorted(c["profile"]["share"].items(), key=lambda kv: -kv[1])
    return ", ".join(f"{PIECE_LABELS[k]} {100 * v:.0f} %" for k, v in share[:2] if v > 0)


def _round_rates(c: dict) -> list[float]:
    """Env steps/s (all seeds) of each alternating round of a bench cell."""
    steps = c["steps_per_iteration"] * c["log_every"] * c["cell"]["seeds"]
    return [steps / t for t in c["chunk"]["rounds_s_per_chunk"]]


def _spread(num: list[float], den: list[float]) -> tuple[float, float] | None:
    """(min, max) of the per-round ratios num[i] / den[i] (rounds alternate, so round i pairs up)."""
    ratios = [a / b for a, b in zip(num, den)]
    return (min(ratios), max(ratios)) if ratios else None


def _load_avg(result: dict | None) -> float | None:
    """1-minute load average when the measurement started."""
    return result["machine"]["loadavg"][0] if result else None


def _load_end(result: dict | None) -> float | None:
    """1-minute load average when the measurement ended (None if not recorded)."""
    return ((result or {}).get("machine_after") or {}).get("loadavg", [None])[0]


def targets(res: Path) -> list[dict]:
    """Every target of the issue with its measured value (None when not measured yet).

    Each row: target, value (ratio of medians), spread ((min, max) of the
    per-repetition ratios, or None), op, goal, met (None = not measured),
    bound (what the profile says bounds a missed target), load (1-minute load
    average at the start), source.
    """
    t = {name: _load_json(res / "targets" / f"{name}.json") for name in list(BENCHES) + ["second_run"]}
    peers = _load_json(res / "peers.json")
    rows: list[dict] = []

    def add(what, value, op, goal, bound="", source="", spread=None, load=None):
        met = None if value is None else (value <= goal if op == "≤" else value >= goal)
        src = t.get(Path(source).stem) if source.startswith("targets/") else None
        rows.append({"target": what, "value": value, "spread": spread, "op": op, "goal": goal, "met": met,
                     "bound": bound if met is False else "", "load": load, "load_end": _load_end(src),
                     "source": source})

    cap = t["capacity"]
    for s in (4, 16):
        v, bound, spread = None, "", None
        big = _cell(cap, seeds=s, buffer_size=1_000_000)
        small = _cell(cap, seeds=s, buffer_size=10_000)
        if big and small:
            v = small["chunk"]["env_steps_per_s"] / big["chunk"]["env_steps_per_s"]
            spread = _spread(_round_rates(small), _round_rates(big)) if "steps_per_iteration" in big else None
            bound = (f"replay share {100 * big['profile']['share']['replay']:.0f} % at 1e6 vs "
                     f"{100 * small['profile']['share']['replay']:.0f} % at 1e4")
        add(f"time per env step, capacity 1e6 ÷ 1e4 (pendulum gaussian, S = {s})", v, "≤", 1.15, bound,
            "targets/capacity.json", spread, _load_avg(cap))
    sd = t["seeds"]
    v = bound = spread = None
    one, many = _cell(sd, seeds=1), _cell(sd, seeds=16)
    if one and many:
        v = many["chunk"]["env_steps_per_s"] / one["chunk"]["env_steps_per_s"]
        spread = _spread(_round_rates(many), _round_rates(one)) if "steps_per_iteration" in one else None
        bound = f"S = 16: {_bound(many)}"
        if all("update_flop_per_s" in c.get("profile", {}) for c in (one, many)):
            bound += (f"; the student update runs at {one['profile']['update_flop_per_s'] / 1e9:.0f} GFLOP/s for one "
                      f"seed and {many['profile']['update_flop_per_s'] / 1e9:.0f} for 16 vmapped seeds, so 16 seeds "
                      "cost nearly 16x the update work of one on 2 cores; batching only amortizes per-step overhead")
    add("aggregate env steps/s, S = 16 ÷ S = 1 (inverted_pendulum gaussian)", v, "≥", 4.0, bound or "",
        "targets/seeds.json", spread, _load_avg(sd))
    v = spread = None
    bound = "see the peers table: SBX per process vs mjxmeta per seed"
    key_ours = "mjxmeta gaussian inverted_pendulum baselines2017 S=16"
    key_sbx = "sbx InvertedPendulum-v4 baselines2017"
    if peers:
        v = peers["ratios"].get("mjxmeta S=16 / sbx x2 concurrent (InvertedPendulum-v4, baselines2017)")
        med = peers["medians"]
        two, one = med.get(key_sbx + " x2 concurrent"), med.get(key_sbx)
        if key_ours in med and two:
            spread = _spread(med[key_ours]["reps"], two["reps"])
        if key_ours in med and two and one:
            bound = (f"two concurrent SBX processes gave {two['median']:.0f} env steps/s in total, "
                     f"{two['median'] / one['median']:.1f}x one SBX process ({one['median']:.0f}); against twice "
                     f"one process mjxmeta S = 16 is {med[key_ours]['median'] / (2 * one['median']):.1f}x; "
                     "mjxmeta S = 16 is bound by its vmapped student updates (targets/seeds.json)")
            if two["median"] > 2.2 * one["median"]:  # more than two processes on two cores can give
                bound += _concurrent_check(res / "peers" / "raw.jsonl", key_sbx)
    lr = (peers or {}).get("load_range")
    add("mjxmeta S = 16 ÷ two concurrent SBX processes (InvertedPendulum, baselines2017)", v, "≥", 4.0,
        bound, "peers.json", spread, lr[0] if lr else None)
    if lr:  # the range over the repetitions, not start -> end
        rows[-1]["load_range"] = lr
    w = t["whole_run"]
    v = bound = None
    if w:
        c = w["cells"][0]
        v = c["train"]["after_first_over_chunk"]
        tr, pr = c["train"], c.get("profile", {})
        bound = (f"between log points (evaluation, logging) {tr['steady_over_chunk']:.2f} of the chunk; one evaluation "
                 f"= {pr.get('eval_over_chunk', float('nan')):.2f} chunk; final checkpoint and close "
                 f"{tr['after_last_log_s']:.1f} s over {tr['chunks']} chunks")
    add("whole `mjxmeta train` ÷ fused chunk, env steps/s after the first log point (README main job)", v, "≥",
        0.8, bound or "", "targets/whole_run.json", None, _load_avg(w))
    m = t["meta_k1"]
    v = bound = spread = None
    g, me = _cell(m, teacher="gaussian"), _cell(m, teacher="meta")
    if g and me:
        v = g["chunk"]["env_steps_per_s"] / me["chunk"]["env_steps_per_s"]
        spread = _spread(_round_rates(g), _round_rates(me)) if "steps_per_iteration" in g else None
        bound = f"meta: {_bound(me)}"
    add("wall time per env step, meta K = 1 ÷ gaussian (inverted_pendulum, S = 1)", v, "≤", 1.6, bound or "",
        "targets/meta_k1.json", spread, _load_avg(m))
    f = t["modern_flops"]
    v = bound = spread = None
    if f:
        p = f["cells"][0]["profile"]
        v = p["update_over_matmul"]
        mm = f["matmul_flop_per_s_rounds"]
        spread = (p["update_flop_per_s"] / max(mm), p["update_flop_per_s"] / min(mm))
        bound = (f"update {p['update_flop_per_s'] / 1e9:.0f} GFLOP/s vs matmul {f['matmul_flop_per_s'] / 1e9:.0f}: "
                 "the update is a chain of 256-wide matmuls, layer ops and Adam steps, not one large GEMM")
    add("`modern` student update FLOP/s ÷ dense 256³ matmul FLOP/s", v, "≥", 0.5, bound or "",
        "targets/modern_flops.json", spread, _load_avg(f))
    ch = t["compile_hopper"]
    for teacher in ("gaussian", "meta"):
        c = _cell(ch, teacher=teacher)
        cpu = f"; {c['compile_cpu_s']:.0f} CPU s" if c and "compile_cpu_s" in c else ""
        add(f"compile of the fused chunk, hopper {teacher}, cold cache (wall s)", c["compile_s"] if c else None, "≤",
            60.0, f"XLA compile of the MJX step inside nested scans (no cache){cpu}; wall time grows with the load",
            "targets/compile_hopper.json", None, _load_avg(ch))
    sr = t["second_run"]
    v = bound = spread = None
    if sr:
        warm = [r for r in sr["runs"] if r.get("run") == "second"]
        cold = [r for r in sr["runs"] if r.get("run") == "first"]
        v = statistics.median(r["first_log_s"] for r in warm)
        spread = (min(r["first_log_s"] for r in warm), max(r["first_log_s"] for r in warm))
        best = min(warm, key=lambda r: r["first_log_s"])
        firsts = ", ".join(f"{r['first_log_s']:.0f}" for r in cold)
        others = ", ".join(f"{r['first_log_s']:.1f} s at load {r['load_before']:.1f} (imports "
                           f"{r['phases'].get('imports_s', 0):.1f} s, env construction "
                           f"{r['phases']['steps'].get('__init__', 0):.1f} s)" for r in warm if r is not best)
        bound = (f"first runs {firsts} s; fastest second run ({best['first_log_s']:.1f} s, load "
                 f"{best['load_before']:.1f}): {startup_bound(best)}; the other second runs: {others}")
        old = _load_json(res / "targets" / "second_run_before_program_cache.json")
        if old:
            bound += (f" (before the stored programs: {old['runs'][1]['first_log_s']:.0f} s at load "
                      f"{_load_avg(old):.1f})")
    add("second `mjxmeta train` (hopper meta) to the first log point, warm cache (s)", v, "≤", 5.0, bound or "",
        "targets/second_run.json", spread, _load_avg(sr))
    if sr:  # the loads at each run's start and end, not just the file's
        loads = [x for r in sr["runs"] for x in (r["load_before"], r["load_after"])]
        rows[-1]["load_range"] = [min(loads), max(loads)]
    return rows


def startup_bound(run: dict) -> str:
    """Where a second run's seconds to the first log point went (``startup_phases`` of ``time_to_first_log``)."""
    p = run["phases"]
    steps = p["steps"]
    chunk = steps.get("run_chunk", 0.0)
    return (f"Python imports {p.get('imports_s', 0):.1f} s, env construction {steps.get('__init__', 0):.1f} s "
            f"(Brax's MJX env build and a traced reset for the observation width), init "
            f"{steps.get('init_seeds', 0) + steps.get('abstract_state', 0):.1f} s, first chunk {chunk:.1f} s; "
            f"within these, loading the compiled executables from the cache {p['cache_read_s']:.1f} s, Python "
            f"tracing {p['trace_s']:.1f} s, lowering {p['lower_s']:.1f} s")


def _concurrent_check(raw: Path, what: str) -> str:
    """Per-process work of the concurrent peer runs vs the solo runs of the same repetitions (raw rows);
    the caller adds it only when the pair's median exceeds 2.2x one process's (more than two cores can give)."""
    if not raw.exists():
        return ""
    rows = [json.loads(x) for x in raw.read_text().splitlines()]
    solo = [r["env_steps_per_s"] for r in rows if r["what"] == what and r.get("env_steps_per_s")]
    pairs = [r["workers"] for r in rows if r["what"] == what + " x2 concurrent" and r.get("env_steps_per_s")]
    per = [w for ws in pairs for w in ws]
    if not solo or not per:
        return ""
    rates = [w["env_steps_per_s"] for w in per]
    gap = max(abs(a["steps"] - b["steps"]) / max(a["steps"], b["steps"]) for a, b in pairs)
    return (f". Check of the raw rows: each concurrent process timed its own window of "
            f"{min(w['seconds'] for w in per):.1f}–{max(w['seconds'] for w in per):.1f} s after its own warm-up and "
            f"did {min(w['steps'] for w in per)}–{max(w['steps'] for w in per)} env steps (the two of a repetition "
            f"within {100 * gap:.0f} % of each other), i.e. {min(rates):.0f}–{max(rates):.0f} env steps/s per "
            f"process against {min(solo):.0f}–{max(solo):.0f} for the solo process: the pair did the same work in "
            "the same window, so the anomaly is the solo runs' slowness (or the pair's speed), not the bookkeeping; "
            "not explained, treat this target as unsettled")


def _num(v) -> str:
    if v is None:
        return "not measured"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


def targets_table(rows: list[dict]) -> list[str]:
    lines = ["Measured = ratio of medians (or median seconds); range = min–max of the per-round ratios "
             "(rounds alternate, so round i of one cell pairs with round i of the other); load = 1-minute load "
             "average of this 2-core machine when the measurement started → ended, or its range over the "
             "repetitions (a – b); other jobs shared the machine.", "",
             "| target | measured | range | goal | met | load | what bounds it (missed) |",
             "| --- | ---: | ---: | ---: | --- | ---: | --- |"]
    for r in rows:
        met = {True: "met", False: "**not met**", None: "pending"}[r["met"]]
        spread = f"{r['spread'][0]:.2f}–{r['spread'][1]:.2f}" if r.get("spread") else "—"
        load = f"{r['load']:.1f}" if r.get("load") is not None else "—"
        if r.get("load_range"):
            load = f"{r['load_range'][0]:.1f}–{r['load_range'][1]:.1f}"
        elif r.get("load_end") is not None:
            load += f" → {r['load_end']:.1f}"
        lines.append(f"| {r['target']} | {_num(r['value'])} | {spread} | {r['op']} {r['goal']:g} | {met} | {load} | "
                     f"{r['bound']} |")
    return lines


def scaling_tables(res: Path) -> list[str]:
    files = sorted((res / "scaling").glob("*.json"))
    if not files:
        return ["(scaling cells not measured yet: `python experiments/bench/scaling.py`)"]
    cells = [(json.loads(f.read_text()), f.name) for f in files]
    lines = ["One factor at a time around a base cell (`experiments/bench/scaling.py`: `baselines2017` student, replay "
             "capacity 1e6, S = 4, K = 2, N = 1): S ∈ {1, 4, 16, 64} on MJX `inverted_pendulum`, K ∈ {1, 2, 4, 8} "
             "(`meta`) and N ∈ {1, 4, 16} on `pendulum`, for `gaussian` and `meta` (K does not apply to `gaussian`); "
             "not the full product. A row per measured cell; a missing row was not measured. "
             "Each cell is its own process (`mjxmeta bench`, one cell, cold compile); compare them as absolute "
             "figures. "
             "Meta machinery = look-ahead + R̂/D1/teacher step, as a share of the timed pieces.", "",
             "| env | teacher | S | K | N | env steps/s (total) | per seed | updates/s | compile s | "
             + " | ".join(PIECE_LABELS[p] for p in PIECES) + " | meta machinery | peak RSS MiB | load |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * (len(PIECES) + 3)]
    order = lambda rc: (rc[0]["cells"][0]["cell"]["env"], rc[0]["cells"][0]["cell"]["teacher"],  # noqa: E731
                        rc[0]["cells"][0]["cell"]["seeds"], rc[0]["cells"][0]["cell"]["candidates"],
                        rc[0]["cells"][0]["cell"]["num_envs"])
    for r, _ in sorted(cells, key=order):
        c = r["cells"][0]
        cc, ch = c["cell"], c["chunk"]
        share = c.get("profile", {}).get("share", {})
        k = cc["candidates"] if cc["teacher"] != "gaussian" else "—"
        lines.append(
            f"| {cc['env']} | {cc['teacher']} | {cc['seeds']} | {k} | {cc['num_envs']} | "
            f"{ch['env_steps_per_s']:.0f} | {ch['env_steps_per_s_per_seed']:.0f} | {ch['updates_per_s']:.0f} | "
            f"{c['compile_s']:.0f} | " + " | ".join(f"{100 * share.get(p, 0):.0f} %" for p in PIECES)
            + f" | {100 * (share.get('lookahead', 0) + share.get('rhat_d1', 0)):.0f} % | {c['peak_rss_mib']:.0f} | "
            f"{r['machine']['loadavg'][0]:.1f} |")
    return lines


def peers_tables(res: Path) -> list[str]:
    p = _load_json(res / "peers.json")
    if not p:
        return ["(peers not measured yet: `python experiments/bench/peers.py`)"]
    lines = ["| measurement | env steps/s (median) | repetitions |", "| --- | ---: | --- |"]
    for k, v in p["medians"].items():
        lines.append(f"| {k} | {v['median']:.0f} | {', '.join(f'{x:.0f}' for x in v['reps'])} |")
    lines += ["", "| ratio (medians) | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.2f} |" for k, v in p["ratios"].items()]
    pv = ", ".join(f"{k} {v}" for k, v in sorted(p.get("peer_versions", {}).items()))
    lines += ["", f"Peer versions: {pv}."]
    return lines


def provenance(res: Path) -> list[str]:
    lines = []
    for path in sorted((res / "targets").glob("*.json")) + [res / "peers.json"]:
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        m, v = r["machine"], r["versions"]
        lines.append(f"* `{path.relative_to(res)}`: `{' '.join(r['command'])}` — {m['cpu']}, {m['nproc']} cores, "
                     f"load {m['loadavg'][0]:.1f}; jax {v['jax']}, brax {v['brax']}, mujoco {v['mujoco']}, "
                     f"mujoco-mjx {v.get('mujoco-mjx')}")
    return lines


def report(res: Path, readme: Path | None) -> Path:
    rows = targets(res)
    text = ["# Throughput benchmarks", "",
            "Generated by `python experiments/bench/targets.py report` from the JSON files in this directory. "
            "Ratios come from one process with alternating repetitions (medians), as described in "
            "`experiments/bench/targets.py`; absolute figures depend on the machine's load, noted per file.", "",
            "## Targets", ""] + targets_table(rows) + [
            "", "## Scaling (S, K, N)", ""] + scaling_tables(res) + [
            "", "## Side by side with SB3 and SBX DDPG", ""] + peers_tables(res) + [
            "", "## Provenance", ""] + provenance(res)
    out = res / "README.md"
    res.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text) + "\n")
    if readme is not None:
        write_speed_section(readme, rows, res)
    return out


BEGIN, END = "<!-- speed:begin -->", "<!-- speed:end -->"


def write_speed_section(readme: Path, rows: list[dict], res: Path) -> None:
    """Replaces the text between the speed markers of ``readme`` with the targets and peer tables."""
    s = readme.read_text()
    if BEGIN not in s or END not in s:
        raise SystemExit(f"{readme}: no {BEGIN} ... {END} markers")
    link = os.path.relpath(res / "README.md", readme.resolve().parent)
    body = ["Generated from `experiments/bench/results/` (`python experiments/bench/targets.py report "
            "--readme docs/performance.md`); details, scaling tables and provenance in "
            f"[experiments/bench/results/README.md]({link}). "
            "Run `mjxmeta bench --help` to measure your own machine.", ""] + targets_table(rows) + [
            "", "Side by side (steady env steps/s, medians of alternating repetitions):", ""] + peers_tables(res)
    head, rest = s.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(head + BEGIN + "\n" + "\n".join(body) + "\n" + END + tail)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("names", nargs="*", default=list(BENCHES) + ["second_run"],
                   help=f"subset of {list(BENCHES) + ['second_run']}")
    r = sub.add_parser("report")
    r.add_argument("--readme", default=None, help="also rewrite this README's speed section")
    ap.add_argument("--results", default=str(RESULTS))
    a = ap.parse_args(argv)
    res = Path(a.results)
    if a.cmd == "measure":
        bad = [n for n in a.names if n not in BENCHES and n != "second_run"]
        if bad:
            ap.error(f"unknown measurement(s) {bad}: accepted {list(BENCHES) + ['second_run']}")
        measure(a.names, res / "targets")
    else:
        print(report(res, Path(a.readme) if a.readme else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
