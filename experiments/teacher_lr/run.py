"""Teacher learning-rate sweep (issue 10, items 4 and 5), resumable.

Runs ``mjxmeta train`` once per env with ``--sweep teacher.lr=...``: every
swept value x ``--seeds`` seeds in one vmapped, once-compiled program, with the
main job's defaults otherwise (the ``meta`` teacher, 50k env steps, 10
evaluation episodes). ``results/<env>.json`` keeps, per swept lr: each seed's
final return, the teacher's log sigma at the first and last log point, the
cumulative |Delta log sigma| (``log_std_path``) and |log sigma - log sigma_0|
(``log_std_shift``) from the meta-gradient diagnostics, ||theta_f - theta_f(0)||
and the EMA cosine of successive gradients; plus the command, wall time and the
machine's load. An existing JSON is skipped; a run directory that already holds
a finished run of the same command is summarised without training again.

Usage (from the repository root):
  PYTHONPATH=$PWD python experiments/teacher_lr/run.py train --envs inverted_pendulum
  PYTHONPATH=$PWD python experiments/teacher_lr/run.py train --envs pendulum inverted_double_pendulum --seeds 2
  PYTHONPATH=$PWD python experiments/teacher_lr/run.py summary
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "main_job"))
from run import THRESHOLD, LoadSampler  # noqa: E402  (experiments/main_job/run.py)

LRS = (1e-4, 1e-3, 1e-2, 3e-2)


def command(env: str, lrs, seeds: int, total_steps: int, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "mjxmeta.cli", "train", "--env", env, "--seeds", str(seeds),
            "--total-steps", str(total_steps), "--sweep", "teacher.lr=" + ",".join(f"{x:g}" for x in lrs),
            "--eval-envs", "10", "--run-dir", str(run_dir), "--no-progress"]


def finished(run_dir: Path) -> bool:
    """The run's metrics hold a row at its last iteration (``config.json`` gives the budget)."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        return False
    from mjxmeta.algo.config import executed_iterations
    from mjxmeta.runs.layout import load_config

    last = max(json.loads(line)["iteration"] for line in metrics.read_text().splitlines() if line.strip())
    return last >= executed_iterations(load_config(run_dir))


def summarize(run_dir: Path) -> dict:
    """Per swept lr: per-seed final return and teacher motion (see the module docstring)."""
    from mjxmeta.runs.layout import load_config

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    log_std0 = math.log(load_config(run_dir).teacher.init_std)  # log sigma before the first teacher step
    out: dict = {}
    for lr in sorted({r["hparams"]["teacher.lr"] for r in rows}):
        seeds = {}
        for s in sorted({r["seed"] for r in rows}):
            mine = sorted((r for r in rows if r["seed"] == s and r["hparams"]["teacher.lr"] == lr),
                          key=lambda r: r["iteration"])
            last = mine[-1]
            seeds[s] = dict(final_return=last["eval_return"], env_steps=last["env_steps"],
                            curve=[round(r["eval_return"], 1) for r in mine if "eval_return" in r],
                            log_std_curve=[[r["env_steps"], r["teacher_log_std"]] for r in mine],
                            log_std_init=log_std0, log_std_last=last["teacher_log_std"],
                            **{k: last[k] for k in ("log_std_path", "log_std_shift", "net_path", "net_shift",
                                                     "grad_cosine_ema")})
        finals = [v["final_return"] for v in seeds.values()]
        out[f"{lr:g}"] = dict(seeds=seeds, finals=finals, min_final=min(finals),
                              all_ge_900=all(f >= THRESHOLD for f in finals))
    return out


def train(env: str, lrs, seeds: int, total_steps: int, runs: Path) -> None:
    out = RESULTS / f"{env}.json"
    if out.exists():
        print(f"skip {out} (exists)")
        return
    run_dir = runs / env
    cmd = command(env, lrs, seeds, total_steps, run_dir)
    t0, load = time.time(), None
    if finished(run_dir):
        print(f"summarising the finished run in {run_dir}")
    else:
        print("+", " ".join(cmd), flush=True)
        with LoadSampler() as sampler:
            proc = subprocess.run([*cmd, "--overwrite"], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{env}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
        load = {"start": sampler.samples[0], "end": sampler.samples[-1],
                "mean": round(statistics.mean(sampler.samples), 2), "max": max(sampler.samples)}
    res = dict(env=env, command="mjxmeta train " + " ".join(cmd[4:]), seeds=seeds, total_steps=total_steps,
               by_lr=summarize(run_dir), wall_s=round(time.time() - t0, 1) if load else None,
               train_wall_s=max(json.loads(line)["wall_s"] for line in (run_dir / "metrics.jsonl").open()),
               load_1min=load, cpus=os.cpu_count())
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(env, {lr: (v["finals"], round(max(s["log_std_path"] for s in v["seeds"].values()), 3))
                for lr, v in res["by_lr"].items()}, flush=True)


def reached(env: str, by_lr: dict) -> str:
    """'yes'/'no' for every seed's final return >= 900 on inverted_pendulum (the main job's bar); '—' elsewhere."""
    if env != "inverted_pendulum":
        return "—"
    return "yes" if by_lr["all_ge_900"] else "no"


def summary() -> None:
    """``results/table.md`` and ``results/log_std.png`` from the JSONs."""
    from matplotlib.figure import Figure

    data = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    lines = ["| env | teacher lr | final return per seed (10 episodes) | min | all ≥ 900 (inverted_pendulum) | log σ₀ | log σ at end "
             "(per seed) | Σ|Δ log σ| (max over seeds) | |log σ − log σ₀| (max) | σ_end / σ₀ (range) | "
             "‖θ_f − θ_f(0)‖ (max) | grad cosine EMA (mean) |",
             "| --- | ---: | --- | ---: | --- | ---: | --- | ---: | ---: | --- | ---: | ---: |"]
    fig = Figure(figsize=(6 * len(data), 4.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(data)), squeeze=False)[0]
    for ax, d in zip(axes, data):
        for i, (lr, v) in enumerate(d["by_lr"].items()):
            seeds = list(v["seeds"].values())
            ratio = [math.exp(s["log_std_last"] - s["log_std_init"]) for s in seeds]
            lines.append(
                f"| {d['env']} | {lr} | {', '.join(f'{f:.0f}' for f in v['finals'])} | {v['min_final']:.0f} | "
                f"{reached(d['env'], v)} | {seeds[0]['log_std_init']:.3f} | "
                f"{', '.join(format(s['log_std_last'], '.3f') for s in seeds)} | "
                f"{max(s['log_std_path'] for s in seeds):.3f} | {max(s['log_std_shift'] for s in seeds):.3f} | "
                f"{min(ratio):.3f} … {max(ratio):.3f} | {max(s['net_shift'] for s in seeds):.2f} | "
                f"{statistics.mean(s['grad_cosine_ema'] for s in seeds):.3f} |")
            for j, s in enumerate(seeds):
                xs, ys = zip(*[[0, s["log_std_init"]], *s["log_std_curve"]])
                ax.plot(xs, ys, color=f"C{i}", lw=1, label=f"lr {lr}" if j == 0 else None)
        ax.set_xlabel("env steps per seed")
        ax.set_ylabel("teacher log σ (mean over action dims)")
        ax.set_title(f"{d['env']}: {d['seeds']} seeds per lr")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.savefig(RESULTS / "log_std.png", dpi=100)
    meta = [f"- {d['env']}: `{d['command']}`; {d['train_wall_s']:.0f} s to the last log point (metrics.jsonl), "
            f"1-min load {d['load_1min'] or 'not sampled (run by hand, before the driver existed)'}" for d in data]
    head = ("# Teacher lr sweep\n\nFindings and the default decided from them: section \"Teacher lr sweep\" of "
            "`experiments/meta_gradient/results/README.md`. Plot: `log_std.png`. Σ|Δ log σ|, |log σ − log σ₀|, "
            "‖θ_f − θ_f(0)‖ and the gradient cosine EMA are the diagnostics columns of `metrics.jsonl` at the last "
            "log point.\n\n")
    (RESULTS / "table.md").write_text(head + "\n".join(lines) + "\n\n" + "\n".join(meta) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=("train", "summary"))
    p.add_argument("--envs", nargs="+", default=["inverted_pendulum"])
    p.add_argument("--lrs", type=float, nargs="+", default=list(LRS))
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--total-steps", type=int, default=50_000)
    p.add_argument("--runs", type=Path, default=Path("checkpoints") / "teacher_lr")
    a = p.parse_args()
    if a.stage == "summary":
        summary()
        return
    for env in a.envs:
        train(env, a.lrs, a.seeds, a.total_steps, a.runs)


if __name__ == "__main__":
    main()
