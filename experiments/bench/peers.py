"""mjxmeta vs the DDPG trainers people use, side by side on this machine.

Contenders, at matched settings (per preset; see ``PRESETS`` below):

* mjxmeta ``gaussian`` teacher on the MJX ports (``inverted_pendulum``,
  ``hopper``), S seeds vmapped in one program (S from ``--mjx-seeds``);
* Stable-Baselines3 DDPG (torch, CPU, ``OMP_WAIT_POLICY=PASSIVE``) and
  ``sbx-rl`` DDPG (JAX) on gymnasium ``InvertedPendulum-v4`` / ``Hopper-v4``
  (native MuJoCo), one process = one seed;
* the same peers as two concurrent processes (the aggregate that two cores
  give a user of a per-seed trainer);
* the bare envs with random actions: native MuJoCo (gymnasium, one env) vs MJX
  through ``mjxmeta.algo.envs.make`` (auto-reset from a start pool refilled every
  100 steps, as in training) at 1 and 16 envs.

Every measurement is a fresh worker process that reports steady env steps/s
(learning starts and compile excluded: it first warms up, then times whole
``learn``/chunk calls until ``--seconds`` have passed). The contenders of a
(env, preset) pair alternate within each repetition; medians over
``--reps``; ratios are medians of mjxmeta over medians of the peer. Raw rows
go to ``RESULTS/peers/raw.jsonl`` as they come, so a rerun skips what is done.

Peers live in their own environment (``pip install -e '.[bench]'`` or a
separate venv given by ``--peer-python``):

    python experiments/bench/peers.py --peer-python /path/to/venv/bin/python

Matched: network widths, batch size, actor/critic learning rates (SB3 has one
learning rate: the actor's is used for both), tau, gamma, replay capacity
1e6, 1 update per 2 env steps (peers: 50 updates every 100 steps; mjxmeta
``modern``: 200 updates per iteration of 4 envs x 100 steps, as its batch of
256 must fit the rows one iteration inserts), learning starts
100 (mjxmeta's first update comes after its first 100-step rollout), Gaussian
action noise sigma = 0.2 in [-1, 1] action units. LayerNorm (baselines2017):
mjxmeta actor and critic; SBX critic only (its actor has no option); SB3 none.
Not matched: the critic L2 of baselines2017 (neither peer has a critic-only
L2) and observation normalization (mjxmeta only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"

ENVS = {"InvertedPendulum-v4": "inverted_pendulum", "Hopper-v4": "hopper"}
PRESETS = {
    "baselines2017": dict(hidden=[64, 64], batch=64, actor_lr=1e-4, critic_lr=1e-3, tau=0.01, layer_norm=True,
                          num_envs=1),
    # mjxmeta needs a batch <= the rows inserted per iteration: 4 teacher envs x 100 steps (200 updates)
    "modern": dict(hidden=[256, 256], batch=256, actor_lr=3e-4, critic_lr=3e-4, tau=0.005, layer_norm=False,
                   num_envs=4),
}
COMMON = dict(gamma=0.99, buffer=1_000_000, learning_starts=100, train_every=100, updates=50, noise=0.2)


# ------------------------------------------------------------------ workers
def _emit(row: dict) -> None:
    print("RESULT " + json.dumps(row), flush=True)


def _timebox(step, seconds: float) -> tuple[int, float]:
    """Calls ``step() -> steps done`` until ``seconds`` have passed; returns (steps, seconds)."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += step()
    return n, time.perf_counter() - t0


def worker_peer(lib: str, env_id: str, preset: str, seconds: float) -> None:
    """One SB3 or SBX DDPG process: warm-up (learning starts + compile), then timed ``learn`` calls."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.noise import NormalActionNoise

    p, c = PRESETS[preset], COMMON
    env = gym.make(env_id)
    a = env.action_space.shape[0]
    kw = dict(buffer_size=c["buffer"], learning_starts=c["learning_starts"], batch_size=p["batch"], tau=p["tau"],
              gamma=c["gamma"], train_freq=(c["train_every"], "step"), gradient_steps=c["updates"],
              action_noise=NormalActionNoise(np.zeros(a), c["noise"] * np.ones(a)), seed=0, verbose=0)
    if lib == "sb3":
        import torch
        from stable_baselines3 import DDPG

        model = DDPG("MlpPolicy", env, learning_rate=p["actor_lr"], policy_kwargs=dict(net_arch=p["hidden"]),
                     device="cpu", **kw)
        extra = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                 "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
    else:
        from sbx import DDPG

        model = DDPG("MlpPolicy", env, learning_rate=p["actor_lr"], qf_learning_rate=p["critic_lr"],
                     policy_kwargs=dict(net_arch=p["hidden"], layer_norm=p["layer_norm"]), **kw)
        extra = {}
    import gymnasium
    import mujoco
    import stable_baselines3

    extra["versions"] = {"stable_baselines3": stable_baselines3.__version__, "gymnasium": gymnasium.__version__,
                         "mujoco": mujoco.__version__}
    if lib == "sbx":
        import importlib.metadata

        import jax

        extra["versions"].update(sbx=importlib.metadata.version("sbx-rl"), jax=jax.__version__)
    chunk = 500
    model.learn(total_timesteps=1000)  # learning starts, first updates, jit compile (SBX)

    def step():
        model.learn(total_timesteps=chunk, reset_num_timesteps=False)
        return chunk

    n, dt = _timebox(step, seconds)
    _emit({"env_steps_per_s": n / dt, "steps": n, "seconds": dt, **extra})


def worker_mjx(env: str, preset: str, seeds: int, seconds: float) -> None:
    """mjxmeta ``gaussian``: compile + one warm chunk, then timed fused chunks (1000 env steps per seed each)."""
    from mjxmeta.tools import bench

    cell = bench.Cell(env, "gaussian", preset, seeds, 2, PRESETS[preset]["num_envs"], COMMON["buffer"])
    b = bench.setup(cell, log_every=10)
    steps = b.config.steps_per_iteration * b.config.log_every * seeds
    n, dt = _timebox(lambda: (bench.time_chunks(b, 1), steps)[1], seconds)
    _emit({"env_steps_per_s": n / dt, "steps": n, "seconds": dt, "compile_s": b.result["compile_s"]})


def worker_bare_native(env_id: str, seconds: float) -> None:
    """Random actions on one native MuJoCo gymnasium env (resets included)."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)

    def step():
        for _ in range(1000):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        return 1000

    step()
    n, dt = _timebox(step, seconds)
    _emit({"env_steps_per_s": n / dt, "steps": n, "seconds": dt})


def worker_bare_mjx(env: str, batch: int, seconds: float) -> None:
    """Random actions on ``batch`` MJX envs from ``mjxmeta.algo.envs.make``: a jitted 1000-step scan per call.

    Auto-reset as in a ``gaussian`` training run: a pool of 10 fresh starts per
    env (T = 100 steps / 10), refilled every 100 steps.
    """
    import jax

    from mjxmeta.algo.envs import make

    e = make(env, starts_per_env=10)

    @jax.jit
    def run(state, key):
        def body(s, k):
            a = jax.random.uniform(k, (batch, e.action_size), minval=-1.0, maxval=1.0)
            return e.step(s, a), None

        def iteration(s, k):
            return jax.lax.scan(body, e.refill(s), jax.random.split(k, 100))[0], None
        return jax.lax.scan(iteration, state, jax.random.split(key, 10))[0]

    state = e.reset(jax.random.split(jax.random.PRNGKey(0), batch))
    key = jax.random.PRNGKey(1)
    t0 = time.perf_counter()
    state = jax.block_until_ready(run(state, key))
    compile_s = time.perf_counter() - t0
    # The state from an eager reset and from a step may differ in leaf types, so the second call can
    # compile once more: warm both before timing.
    state = jax.block_until_ready(run(state, key))

    def step():
        nonlocal state, key
        key, sub = jax.random.split(key)
        state = jax.block_until_ready(run(state, sub))
        return 1000 * batch

    n, dt = _timebox(step, seconds)
    _emit({"env_steps_per_s": n / dt, "steps": n, "seconds": dt, "compile_s": compile_s})


# ------------------------------------------------------------- orchestrator
def _run(cmds: list[list[str]], env: dict, timeout: float) -> list[dict]:
    """Starts the worker commands at once, waits for all; returns their RESULT rows (error rows on failure)."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for c in cmds]
    out = []
    for p in procs:
        try:
            so, se = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            so, se = p.communicate()
        rows = [json.loads(line[7:]) for line in so.splitlines() if line.startswith("RESULT ")]
        out.append(rows[0] if rows else {"error": (se or "")[-2000:], "returncode": p.returncode})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    w.add_argument("kind", choices=("sb3", "sbx", "mjx", "bare-native", "bare-mjx"))
    w.add_argument("--env", required=True)
    w.add_argument("--preset", default="baselines2017")
    w.add_argument("--seeds", type=int, default=1)
    w.add_argument("--batch", type=int, default=1)
    w.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--peer-python", default=sys.executable, help="interpreter with SB3, sbx-rl, gymnasium[mujoco]")
    ap.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--mjx-seeds", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0, help="timed seconds per measurement (after warm-up)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before a worker is killed")
    ap.add_argument("--results", default=str(RESULTS), help="results directory")
    a = ap.parse_args(argv)
    if a.cmd == "worker":
        if a.kind in ("sb3", "sbx"):
            worker_peer(a.kind, a.env, a.preset, a.seconds)
        elif a.kind == "mjx":
            worker_mjx(a.env, a.preset, a.seeds, a.seconds)
        elif a.kind == "bare-native":
            worker_bare_native(a.env, a.seconds)
        else:
            worker_bare_mjx(a.env, a.batch, a.seconds)
        return 0

    results = Path(a.results)
    (results / "peers").mkdir(parents=True, exist_ok=True)
    raw_path = results / "peers" / "raw.jsonl"
    done = set()
    if raw_path.exists():
        for line in raw_path.read_text().splitlines():
            r = json.loads(line)
            if "error" not in r:
                done.add((r["rep"], r["what"]))
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(ROOT))
    me = [sys.executable, str(Path(__file__).resolve()), "worker"]
    peer = [a.peer_python, str(Path(__file__).resolve()), "worker"]
    sec = ["--seconds", str(a.seconds)]

    def jobs():
        """(label, [commands run concurrently]) in the alternating order of one repetition."""
        for gym_id in a.envs:
            mjx = ENVS[gym_id]
            yield f"bare native {gym_id}", [peer + ["bare-native", "--env", gym_id] + sec]
            for batch in (1, 16):
                yield f"bare mjx {mjx} B={batch}", [me + ["bare-mjx", "--env", mjx, "--batch", str(batch)] + sec]
            for preset in a.presets:
                for s in a.mjx_seeds:
                    yield (f"mjxmeta gaussian {mjx} {preset} S={s}",
                           [me + ["mjx", "--env", mjx, "--preset", preset, "--seeds", str(s)] + sec])
                for lib in ("sbx", "sb3"):
                    yield f"{lib} {gym_id} {preset}", [peer + [lib, "--env", gym_id, "--preset", preset] + sec]
                    yield (f"{lib} {gym_id} {preset} x2 concurrent",
                           [peer + [lib, "--env", gym_id, "--preset", preset] + sec] * 2)

    with open(raw_path, "a") as raw:
        for rep in range(a.reps):
            for what, cmds in jobs():
                if (rep, what) in done:
                    continue
                load = os.getloadavg()[0]
                t0 = time.time()
                rows = _run(cmds, env, a.timeout)
                ok = [r for r in rows if "error" not in r]
                row = {"rep": rep, "what": what, "load_before": load, "wall_s": time.time() - t0,
                       "env_steps_per_s": sum(r["env_steps_per_s"] for r in ok) if len(ok) == len(rows) else None,
                       "workers": rows}
                if len(ok) != len(rows):
                    row["error"] = "worker failed"
                raw.write(json.dumps(row) + "\n")
                raw.flush()
                print(f"[peers] rep {rep} {what}: {row['env_steps_per_s']}", file=sys.stderr, flush=True)
    summary = summarize(raw_path, a)
    (results / "peers.json").write_text(json.dumps(summary, indent=1))
    print(summary_table(summary))
    return 0


def summarize(raw_path: Path, a) -> dict:
    """Medians per measurement and ratios of mjxmeta over each peer."""
    sys.path.insert(0, str(ROOT))
    from mjxmeta.tools.bench import machine, versions

    rows = [json.loads(x) for x in raw_path.read_text().splitlines()]
    by: dict[str, list[float]] = {}
    for r in rows:
        if r.get("env_steps_per_s"):
            by.setdefault(r["what"], []).append(r["env_steps_per_s"])
    med = {k: {"median": statistics.median(v), "reps": v} for k, v in by.items()}
    ratios = {}
    measured_seeds = sorted({int(k.rsplit("S=", 1)[1]) for k in med if k.startswith("mjxmeta gaussian ")})
    for gym_id, mjx in ENVS.items():
        for preset in PRESETS:
            for s in measured_seeds:  # every S in the raw rows, whichever invocation measured it
                ours = med.get(f"mjxmeta gaussian {mjx} {preset} S={s}")
                for peer in ("sbx", "sb3"):
                    for suffix in ("", " x2 concurrent"):
                        theirs = med.get(f"{peer} {gym_id} {preset}{suffix}")
                        if ours and theirs:
                            ratios[f"mjxmeta S={s} / {peer}{suffix} ({gym_id}, {preset})"] = \
                                ours["median"] / theirs["median"]
    peer_versions: dict = {}
    for r in rows:
        for w in r["workers"]:
            peer_versions.update(w.get("versions", {}))
            if "torch" in w:
                peer_versions["torch"] = w["torch"]
    loads = [r["load_before"] for r in rows if "load_before" in r]
    return {"medians": med, "ratios": ratios, "versions": versions(), "peer_versions": peer_versions,
            "load_range": [min(loads), max(loads)] if loads else None,
            "machine": machine(), "command": ["python", "experiments/bench/peers.py"] + sys.argv[1:],
            "settings": {"presets": PRESETS, "common": COMMON, "seconds": getattr(a, "seconds", None),
                         "reps": getattr(a, "reps", None)}}


def summary_table(s: dict) -> str:
    lines = ["| measurement | env steps/s (median) | repetitions |", "| --- | ---: | --- |"]
    for k, v in s["medians"].items():
        lines.append(f"| {k} | {v['median']:.0f} | {', '.join(f'{x:.0f}' for x in v['reps'])} |")
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.2f} |" for k, v in s["ratios"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
