"""Run in a subprocess with JAX_ENABLE_X64=1 by tests/test_pathwise.py: the pathwise meta-gradient of a tiny
pendulum config against central finite differences of the same seeded objective, all in float64.

Prints one JSON line: {"teacher:dynamics:T": {"analytic": g.v, "fd": (J(+h v) - J(-h v)) / 2h, "log_std":
[...], "log_std_fd": [...], "clipped": D0 actions at the clip, "dtype": ..., "value": J}}.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

import mjxmeta.algo.envs.analytic as analytic
import mjxmeta.algo.envs.pendulum as pendulum


def f64(x):
    return jnp.asarray(x, dtype=jnp.float64)


# the pure-JAX pendulum casts its state to float32 on purpose (scan carries keep their type); here to float64
analytic.f32 = pendulum._f32 = f64

from mjxmeta.algo.config import Config, MetaConfig, StudentConfig, TeacherConfig  # noqa: E402
from mjxmeta.algo.trainer import Trainer  # noqa: E402


def to64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def main(teacher: str, dynamics: str, rollout_steps: int) -> dict:
    """Directional derivative along a random direction and the log-sigma derivative, analytic vs central FD."""
    assert jax.config.jax_enable_x64
    c = Config(env="pendulum", seeds=1, num_envs=2, rollout_steps=rollout_steps, total_steps=1000, log_every=1,
               eval_envs=1, visit_samples=0, student=StudentConfig(hidden=(8, 8), batch_size=4, buffer_size=5000),
               teacher=TeacherConfig(name=teacher, hidden=(8,), estimator="pathwise"),
               meta=MetaConfig(candidates=2, return_horizon=6, lookahead_updates=3, grad_horizon=4, lookahead_lr_scale=30.0,
                               pathwise_dynamics=dynamics))
    tr = Trainer(c)
    state = to64(tr.init(jax.random.PRNGKey(0)))
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    params = state.teacher.params
    # one program for the gradient and every finite-difference value
    value_and_grad = jax.jit(jax.value_and_grad(lambda p: tr.pathwise_objective(state, p, *keys), has_aux=True))
    (value, aux), grad = value_and_grad(params)
    d0 = aux[2]
    J = lambda p: float(value_and_grad(p)[0][0])  # noqa: E731
    rng = np.random.default_rng(0)
    direction = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params)
    h = 1e-4
    shifted = lambda t: jax.tree.map(lambda p, d: p + t * d, params, direction)  # noqa: E731
    fd = (J(shifted(h)) - J(shifted(-h))) / (2 * h)
    analytic_dd = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
    ls = params["log_std"]
    ls_fd = []
    for i in range(ls.shape[0]):
        e = jnp.zeros_like(ls).at[i].set(h)
        ls_fd.append((J(dict(params, log_std=ls + e)) - J(dict(params, log_std=ls - e))) / (2 * h))
    return dict(analytic=analytic_dd, fd=fd, log_std=[float(x) for x in grad["log_std"]], log_std_fd=ls_fd,
                clipped=int(jnp.sum(jnp.abs(d0.action) >= 1.0)), dtype=str(jax.tree.leaves(grad)[0].dtype),
                value=float(value))


if __name__ == "__main__":
    # argv: teacher:dynamics:rollout_steps ...
    out = {}
    for spec in sys.argv[1:]:
        teacher, dynamics, t = spec.split(":")
        out[spec] = main(teacher, dynamics, int(t))
    print(json.dumps(out))
