"""SBX's DDPG, TD3 and SAC on gymnasium's inverted pendulum: the stability reference for the main job (issue 17).

One process per (algorithm, model, seed), resumable: each writes
``results/sbx/<algo>-<model>-seed<S>.json`` (the eval curve, final return, env
steps to first reach 1000, wall time, load, versions); an existing JSON is
skipped, so a stop loses at most the seed in progress.

* ``--model gym``: gymnasium's own ``inverted_pendulum.xml`` (``integrator="RK4"``);
* ``--model brax``: Brax's copy of the same model (no integrator attribute:
  semi-implicit Euler at the same 0.02 s and 2 frames per step), which is what
  the MJX env of ``mjxmeta train`` simulates. Everything else is identical, so
  the pair isolates the port.

Both use ``InvertedPendulum-v5`` (it takes ``xml_file``; v4 does not); v5 gives
reward 0 instead of 1 on the step that terminates, which changes returns by at
most 1.

Settings (``ddpg``): OpenAI Baselines 2017 as SBX exposes them — 64-64 ReLU
networks without LayerNorm, batch 64, actor lr 1e-4, critic lr 1e-3, tau 0.01,
gamma 0.99, 50 gradient steps every 100 env steps, Gaussian action noise
sigma 0.2 in the [-1, 1] action space, 1e6 buffer, 1000 uniformly random
warm-up steps (SB3's ``learning_starts``), no observation normalization, no
critic L2. ``td3`` and ``sac``: SBX's defaults (256-256, one update per step).
Evaluation: 10 deterministic episodes every 8000 env steps and at 50k.

Usage (repository root, the ``bench`` extra installed):
  OMP_WAIT_POLICY=PASSIVE python experiments/main_job/sbx_peers.py --algo ddpg --model gym brax --seeds 0-7
  python experiments/main_job/sbx_peers.py summary
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "sbx"
THRESHOLD = 900.0
TOTAL = 50_000
EVAL_EVERY = 8_000
EVAL_EPISODES = 10


def model_xml(model: str) -> str:
    """Path of the MuJoCo model: gymnasium's (RK4) or Brax's (Euler)."""
    if model == "gym":
        import gymnasium
        return str(Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / "inverted_pendulum.xml")
    import brax
    return str(Path(brax.__file__).parent / "envs" / "assets" / "inverted_pendulum.xml")


def make_model(algo: str, env, seed: int):
    import numpy as np
    from stable_baselines3.common.noise import NormalActionNoise

    if algo == "ddpg":
        from sbx import DDPG
        a = env.action_space.shape[0]
        return DDPG("MlpPolicy", env, learning_rate=1e-4, qf_learning_rate=1e-3, buffer_size=1_000_000,
                    learning_starts=1000, batch_size=64, tau=0.01, gamma=0.99, train_freq=(100, "step"),
                    gradient_steps=50, action_noise=NormalActionNoise(np.zeros(a), 0.2 * np.ones(a)),
                    policy_kwargs=dict(net_arch=[64, 64]), seed=seed, verbose=0)
    if algo == "td3":
        from sbx import TD3
        a = env.action_space.shape[0]
        return TD3("MlpPolicy", env, action_noise=NormalActionNoise(np.zeros(a), 0.1 * np.ones(a)), seed=seed,
                   verbose=0)
    from sbx import SAC
    return SAC("MlpPolicy", env, seed=seed, verbose=0)


def evaluate(model, env, episodes: int, seed: int) -> float:
    """Mean undiscounted return of ``episodes`` deterministic episodes."""
    total = 0.0
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = env.step(action)
            total += float(r)
            done = term or trunc
    return total / episodes


def run_one(algo: str, model_name: str, seed: int) -> dict:
    import gymnasium as gym

    xml = model_xml(model_name)
    env = gym.make("InvertedPendulum-v5", xml_file=xml)
    eval_env = gym.make("InvertedPendulum-v5", xml_file=xml)
    model = make_model(algo, env, seed)
    curve, load = [], [os.getloadavg()[0]]
    t0 = time.time()
    done = 0
    while done < TOTAL:
        n = min(EVAL_EVERY, TOTAL - done)
        model.learn(total_timesteps=n, reset_num_timesteps=done == 0)
        done += n
        curve.append(round(evaluate(model, eval_env, EVAL_EPISODES, 10_000 * (seed + 1) + done), 1))
        load.append(os.getloadavg()[0])
    first = next((EVAL_EVERY * (i + 1) if i < len(curve) - 1 else TOTAL for i, x in enumerate(curve)
                  if x >= 1000 - 1), None)
    import importlib.metadata as md
    return dict(algo=algo, model=model_name, xml=Path(xml).name, integrator=_integrator(env), seed=seed,
                curve=curve, final_return=curve[-1], first_1000_env_steps=first, total_steps=TOTAL,
                wall_s=round(time.time() - t0, 1), load_1min={"mean": round(statistics.mean(load), 2),
                                                             "max": max(load)},
                versions={p: md.version(p) for p in ("sbx-rl", "stable_baselines3", "gymnasium", "mujoco", "jax")},
                command=" ".join([Path(sys.executable).name, *sys.argv]))


def _integrator(env) -> str:
    import mujoco
    return mujoco.mjtIntegrator(env.unwrapped.model.opt.integrator).name


def relapses(curve: list[float]) -> tuple[int, int]:
    """(evaluations below 900 after the curve first reached 900, evaluations after that first time)."""
    first = next((i for i, x in enumerate(curve) if x >= THRESHOLD), len(curve))
    after = curve[first + 1:]
    return sum(x < THRESHOLD for x in after), len(after)


def summary() -> str:
    rows: dict[tuple[str, str], list[dict]] = {}
    for p in sorted(OUT.glob("*.json")):
        r = json.loads(p.read_text())
        rows.setdefault((r["algo"], r["model"]), []).append(r)
    lines = ["| SBX algo | model (integrator) | seeds | finals ≥ 900 | finals | first 1000 at (env steps) | "
             "relapses | wall s per seed (load) |", "| --- | --- | ---: | ---: | --- | --- | ---: | --- |"]
    for (algo, model), rs in sorted(rows.items()):
        bad, n = map(sum, zip(*(relapses(r["curve"]) for r in rs)))
        firsts = [r["first_1000_env_steps"] for r in rs]
        lines.append(
            f"| {algo} | {model} ({rs[0]['integrator']}) | {len(rs)} | "
            f"{sum(r['final_return'] >= THRESHOLD for r in rs)}/{len(rs)} | "
            f"{', '.join(format(r['final_return'], '.0f') for r in rs)} | "
            f"{', '.join('never' if f is None else f'{f // 1000}k' for f in firsts)} | {bad}/{n} | "
            f"{statistics.median(r['wall_s'] for r in rs):.0f} "
            f"({statistics.mean(r['load_1min']['mean'] for r in rs):.1f}) |")
    return "\n".join(lines)


def seed_list(spec: str) -> list[int]:
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", default="run", choices=("run", "summary"))
    p.add_argument("--algo", nargs="+", default=["ddpg"], choices=("ddpg", "td3", "sac"))
    p.add_argument("--model", nargs="+", default=["gym"], choices=("gym", "brax"))
    p.add_argument("--seeds", default="0-7", help="a range such as 0-7")
    a = p.parse_args()
    if a.what == "summary":
        print(summary())
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for algo in a.algo:
        for seed in seed_list(a.seeds):
            for model in a.model:
                out = OUT / f"{algo}-{model}-seed{seed}.json"
                if out.exists():
                    continue
                res = run_one(algo, model, seed)
                tmp = out.with_suffix(".tmp")
                tmp.write_text(json.dumps(res, indent=1) + "\n")
                tmp.replace(out)
                print(f"{algo} {model} seed {seed}: {res['curve']} ({res['wall_s']} s)", flush=True)


if __name__ == "__main__":
    main()
