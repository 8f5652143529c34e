"""mjxmeta's DDPG student in SB3's host loop on gymnasium's inverted pendulum (issue 17, item 1).

Separates the student's mathematics (``mjxmeta.algo.students.DDPG``: networks, losses,
Adam, Polyak targets, observation statistics) from everything else the fused
trainer does (MJX physics, auto-reset pool, the scan, the teacher). The loop is
SB3's off-policy loop with the settings of ``sbx_peers.py``: one gymnasium env,
``learning_starts`` uniformly random steps, then actions mu(s) + N(0, 0.2^2)
clipped to [-1, 1], and every 100 env steps 50 gradient steps on minibatches of
64 drawn uniformly from all transitions so far (time-limit truncations
bootstrap). Evaluation: 10 deterministic episodes every 8000 env steps.

If this loop learns where SBX learns, the student is not what keeps the fused
trainer from learning with SBX's settings; if it does not, the student's
networks or update are.

Usage (repository root):
  PYTHONPATH=$PWD python experiments/main_job/host_loop.py --seeds 0-7 --model brax --tag sbx \\
      --no-layer-norm --no-normalize-observations --critic-l2 0
  python experiments/main_job/host_loop.py summary
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "host_loop"
TOTAL, EVAL_EVERY, EPISODES = 50_000, 8_000, 10
TRAIN_EVERY, UPDATES, NOISE = 100, 50, 0.2


def run(seed: int, model: str, student_kw: dict, learning_starts: int) -> dict:
    import gymnasium as gym
    import jax
    import jax.numpy as jnp

    from mjxmeta.algo.config import StudentConfig
    from mjxmeta.algo.replay import Transition
    from mjxmeta.algo.students import DDPG, init_normalizer, update_normalizer

    sys.path.insert(0, str(HERE))
    from sbx_peers import evaluate, model_xml  # noqa: E402  (same env files and evaluation as the SBX runs)

    env = gym.make("InvertedPendulum-v5", xml_file=model_xml(model))
    eval_env = gym.make("InvertedPendulum-v5", xml_file=model_xml(model))
    config = StudentConfig(**student_kw)
    student = DDPG(config, 4, 1)
    state = student.init(jax.random.PRNGKey(seed))
    norm = init_normalizer(4)
    rng = np.random.default_rng(seed)
    buf = {k: np.zeros((TOTAL,) + s, np.float32) for k, s in
           (("obs", (4,)), ("action", (1,)), ("reward", ()), ("next_obs", (4,)), ("terminated", ()))}

    @jax.jit
    def train(state, norm, batches):
        def body(s, b):
            s, m = student.update(s, norm, b)
            return s, m["q"]
        return jax.lax.scan(body, state, batches)

    act = jax.jit(lambda state, norm, obs: student.act(state, norm, obs))

    class Policy:  # sbx_peers.evaluate's interface
        def predict(self, obs, deterministic=True):
            return np.asarray(act(state, norm, jnp.asarray(obs, jnp.float32)[None])[0]) * 3.0, None

    obs, _ = env.reset(seed=seed)
    curve, t0 = [], time.time()
    for t in range(TOTAL):
        if t < learning_starts:
            a = rng.uniform(-1, 1, 1).astype(np.float32)
        else:
            mu = np.asarray(act(state, norm, jnp.asarray(obs, jnp.float32)[None])[0])
            a = np.clip(mu + NOISE * rng.standard_normal(1), -1, 1).astype(np.float32)
        nobs, r, term, trunc, _ = env.step(a * 3.0)  # gymnasium's actions are in [-3, 3]
        for k, v in (("obs", obs), ("action", a), ("reward", r), ("next_obs", nobs), ("terminated", float(term))):
            buf[k][t] = v
        obs = nobs
        if term or trunc:
            obs, _ = env.reset()
        if (t + 1) % TRAIN_EVERY == 0:
            if config.normalize_observations:
                norm = update_normalizer(norm, jnp.asarray(buf["obs"][t + 1 - TRAIN_EVERY:t + 1]))
            if t + 1 >= learning_starts:
                idx = rng.integers(0, t + 1, (UPDATES, config.batch_size))
                batches = Transition(**{k: jnp.asarray(v[idx]) for k, v in buf.items()})
                state, _ = train(state, norm, batches)
        if (t + 1) % EVAL_EVERY == 0 or t + 1 == TOTAL:
            curve.append(round(evaluate(Policy(), eval_env, EPISODES, 10_000 * (seed + 1) + t + 1), 1))
    return dict(seed=seed, model=model, student=student_kw, learning_starts=learning_starts, curve=curve,
                final_return=curve[-1], wall_s=round(time.time() - t0, 1), load_1min=os.getloadavg()[0],
                command=" ".join(["python", *sys.argv]))


def summary() -> str:
    sys.path.insert(0, str(HERE))
    from sbx_peers import relapses
    groups: dict[str, list[dict]] = {}
    for p in sorted(OUT.glob("*.json")):
        r = json.loads(p.read_text())
        groups.setdefault(p.stem.rsplit("-seed", 1)[0], []).append(r)
    lines = ["| host-loop arm | seeds | finals ≥ 900 | finals | relapses | wall s per seed |",
             "| --- | ---: | ---: | --- | ---: | ---: |"]
    for tag, rs in sorted(groups.items()):
        bad, n = map(sum, zip(*(relapses(r["curve"]) for r in rs)))
        lines.append(f"| {tag} | {len(rs)} | {sum(r['final_return'] >= 900 for r in rs)}/{len(rs)} | "
                     f"{', '.join(format(r['final_return'], '.0f') for r in rs)} | {bad}/{n} | "
                     f"{statistics.median(r['wall_s'] for r in rs):.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", default="run", choices=("run", "summary"))
    p.add_argument("--seeds", default="0-7")
    p.add_argument("--model", default="brax", choices=("gym", "brax"))
    p.add_argument("--tag", default="default")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--no-layer-norm", action="store_true")
    p.add_argument("--no-normalize-observations", action="store_true")
    p.add_argument("--critic-l2", type=float, default=1e-2)
    a = p.parse_args()
    if a.what == "summary":
        print(summary())
        return
    OUT.mkdir(parents=True, exist_ok=True)
    kw = dict(layer_norm=not a.no_layer_norm, normalize_observations=not a.no_normalize_observations,
              critic_l2=a.critic_l2)
    lo, _, hi = a.seeds.partition("-")
    for seed in range(int(lo), int(hi or lo) + 1):
        out = OUT / f"{a.tag}-{a.model}-seed{seed}.json"
        if out.exists():
            continue
        res = run(seed, a.model, kw, a.learning_starts)
        out.with_suffix(".tmp").write_text(json.dumps(res, indent=1) + "\n")
        out.with_suffix(".tmp").replace(out)
        print(out.stem, res["curve"], res["wall_s"], flush=True)


if __name__ == "__main__":
    main()
