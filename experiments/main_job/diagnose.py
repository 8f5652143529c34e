"""Why does a seed that balanced the pole fall back? Critic, normalizer and buffer along one run (issue 17, item 1).

Reads every checkpoint of a run made with ``--checkpoint-every 10 --keep 100``
(one per evaluated log point) and, for each seed, computes on fixed held-out
start states of the MJX ``inverted_pendulum``:

* ``centre``: cart at x ~ U(-0.1, 0.1), the pole and velocities ~ U(-0.01, 0.01)
  (the env's own start distribution, widened in x);
* ``edge``: the same with the cart at |x| ~ U(0.6, 0.8) (both sides), where a
  policy that drifts reaches the rail's end (x = +-1) soonest;

the critic's Q(s, mu(s)) against the Monte-Carlo discounted return of the
deterministic student from the same state (gamma of the run, up to 1000 steps,
0 after the pole falls), the undiscounted steps survived, and the cart's
drift velocity; the running observation statistics (mean, std of x and
theta); and the replay buffer's composition (share of transitions with
|x| > 0.5, share that terminated). Writes ``results/diagnose-<run>.json`` and
a PNG figure.

Usage (repository root):
  mjxmeta train --seed 3 --eval-every 8000 --checkpoint-every 10 --keep 100 --run-dir checkpoints/diag/default-seed3
  PYTHONPATH=$PWD python experiments/main_job/diagnose.py checkpoints/diag/default-seed3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
N_STATES = 64
HORIZON = 1000


def held_out_states(kind: str, n: int, seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    """(q (n, 2), qd (n, 2)) start states of kind ``centre`` or ``edge`` (fixed by ``seed``)."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(-0.01, 0.01, (n, 2))
    qd = rng.uniform(-0.01, 0.01, (n, 2))
    if kind == "centre":
        q[:, 0] = rng.uniform(-0.1, 0.1, n)
    else:
        q[:, 0] = rng.choice([-1.0, 1.0], n) * rng.uniform(0.6, 0.8, n)
    return q.astype(np.float32), qd.astype(np.float32)


def monte_carlo(base, act, q, qd, gamma: float):
    """Deterministic rollouts from (q, qd): (discounted return, steps alive, mean cart velocity), each (n,)."""
    state = jax.vmap(lambda a, b: base.reset(jax.random.PRNGKey(0)).replace(
        pipeline_state=base.pipeline_init(a, b), obs=jnp.concatenate([a, b])))(q, qd)

    def body(carry, t):
        s, alive, ret, steps = carry
        s = jax.vmap(base.step)(s, act(s.obs))
        ret = ret + alive * gamma ** t * s.reward
        steps = steps + alive
        alive = alive * (1.0 - s.done)
        return (s, alive, ret, steps), s.obs[:, 2] * alive
    n = q.shape[0]
    init = (state, jnp.ones(n), jnp.zeros(n), jnp.zeros(n))
    (_, _, ret, steps), vel = jax.lax.scan(body, init, jnp.arange(HORIZON, dtype=jnp.float32))
    return ret, steps, jnp.sum(vel, 0) / jnp.maximum(steps, 1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=HERE / "results")
    a = p.parse_args()

    from mjxmeta.runs.checkpoint import Checkpointer
    from mjxmeta.algo.envs import make_base
    from mjxmeta.runs.loop import load_checkpoint

    ckpt = Checkpointer(a.run_dir, read_only=True)
    steps = sorted(ckpt.all_steps())
    ckpt.close()
    rows = [json.loads(x) for x in (a.run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    evals = {(r["iteration"], r["seed"]): r["eval_return"] for r in rows if "eval_return" in r}
    out = {"run_dir": str(a.run_dir), "points": []}
    sets = {k: held_out_states(k, N_STATES) for k in ("centre", "edge")}
    probe = None
    for step in steps:
        trainer, state, record = load_checkpoint(a.run_dir, step)
        c = trainer.config
        if probe is None:  # one compiled program for every checkpoint: (student, normalizer) of one seed -> figures
            base = make_base(c.env, integrator=c.integrator)

            def one_seed(student, norm):
                act = lambda obs: trainer.student.act(student, norm, obs)  # noqa: E731
                res = {}
                for kind, (q, qd) in sets.items():
                    obs = jnp.concatenate([q, qd], 1)
                    qval = trainer.student.q(student, norm, obs, act(obs))
                    ret, alive, vel = monte_carlo(base, act, q, qd, c.student.gamma)
                    res[kind] = {"q_mean": jnp.mean(qval), "mc_mean": jnp.mean(ret),
                                 "q_minus_mc": jnp.mean(qval - ret), "alive_mean": jnp.mean(alive),
                                 "survive_1000": jnp.mean(alive >= HORIZON), "abs_velocity": jnp.mean(jnp.abs(vel))}
                return res
            probe = jax.jit(jax.vmap(one_seed))
        figures = jax.device_get(probe(state.student, state.normalizer))
        point = {"iteration": record["iteration"], "env_steps": record["iteration"] * c.steps_per_iteration,
                 "seeds": []}
        for s in range(c.num_runs):
            one = jax.tree.map(lambda x: x[s], state)
            seed_row = {"seed": s, "eval_return": evals.get((record["iteration"], s))}
            for kind in sets:
                seed_row[kind] = {k: float(v[s]) for k, v in figures[kind].items()}
            size = int(trainer.replay.size(one.buffer))
            rows_ = jax.vmap(trainer.replay._unravel)(one.buffer.data.experience[0, :size])
            seed_row["norm_mean"] = np.asarray(one.normalizer.mean).round(4).tolist()
            seed_row["norm_std"] = np.asarray(one.normalizer.std).round(4).tolist()
            seed_row["buffer"] = {"size": size, "share_abs_x_gt_0.5": float(jnp.mean(jnp.abs(rows_.obs[:, 0]) > 0.5)),
                                  "share_terminated": float(jnp.mean(rows_.terminated))}
            point["seeds"].append(seed_row)
        out["points"].append(point)
        print(step, [(r["seed"], r["eval_return"], round(r["centre"]["mc_mean"], 1), round(r["edge"]["mc_mean"], 1),
                      round(r["edge"]["q_mean"], 1)) for r in point["seeds"]], flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    name = a.run_dir.name
    (a.out / f"diagnose-{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    plot(out, a.out / f"diagnose-{name}.png")


def plot(out: dict, path: Path) -> None:
    """One column per seed: eval return; Q vs MC on centre and edge states; buffer share at |x| > 0.5."""
    from matplotlib.figure import Figure

    pts = out["points"]
    seeds = len(pts[0]["seeds"])
    fig = Figure(figsize=(3.2 * seeds, 7.5))
    axes = fig.subplots(3, seeds, squeeze=False, sharex=True)
    x = [p["env_steps"] / 1000 for p in pts]
    for s in range(seeds):
        r = [p["seeds"][s] for p in pts]
        ax = axes[0, s]
        ax.plot(x, [v["eval_return"] or np.nan for v in r], "k.-", label="eval return")
        ax.plot(x, [v["centre"]["alive_mean"] for v in r], "b.--", label="steps alive, centre")
        ax.plot(x, [v["edge"]["alive_mean"] for v in r], "r.--", label="steps alive, edge")
        ax.set_title(f"seed {s}")
        ax.set_ylim(0, 1050)
        ax = axes[1, s]
        for kind, col in (("centre", "b"), ("edge", "r")):
            ax.plot(x, [v[kind]["q_mean"] for v in r], col + "-", label=f"Q(s, mu(s)) {kind}")
            ax.plot(x, [v[kind]["mc_mean"] for v in r], col + ":", label=f"MC return {kind}")
        ax = axes[2, s]
        ax.plot(x, [v["buffer"]["share_abs_x_gt_0.5"] for v in r], "g.-", label="buffer share |x| > 0.5")
        ax.plot(x, [v["norm_std"][0] for v in r], "m.-", label="normalizer std of x")
        ax.set_xlabel("env steps (k)")
    for i in range(3):
        axes[i, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
