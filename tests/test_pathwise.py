"""The pathwise meta-gradient (``teacher.estimator = pathwise``, mjxmeta/algo/pathwise.py).

* Against central finite differences of the same seeded objective J(theta) = 1/K sum_k R_grad(pi'_k)
  on ``pendulum`` in float64 (a subprocess with JAX_ENABLE_X64, tests/_pathwise_fd.py): ``full``
  dynamics is the exact gradient of J, so the directional derivative along a random direction and
  the log-sigma derivative agree to 1e-4 relative.
* The config refuses what the estimator cannot do, before anything compiles.
* A non-finite meta-gradient is skipped and counted, never applied.
* The straight-through clip and the Adam second-moment floor.

The toy with a known optimal sigma is in tests/test_meta_options.py (beside REINFORCE's), and the
bit-exact resume of a pathwise TD3 run in tests/test_teacher_resume.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mjxmeta.algo import pathwise
from mjxmeta.algo.acting import straight_through_clip
from mjxmeta.algo.config import Config, ConfigError, MetaConfig, StudentConfig, TeacherConfig, check_explicit_fields, validate

HERE = Path(__file__).resolve().parent


def test_full_dynamics_gradient_matches_central_differences_in_float64():
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_DISABLE_MOST_OPTIMIZATIONS="1",
               PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(HERE / "_pathwise_fd.py"), "meta:full:6"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])["meta:full:6"]
    assert r["dtype"] == "float64" and r["clipped"] == 0  # no D0 action at the clip: J is smooth there
    assert abs(r["analytic"]) > 1e-6  # a real signal, not two zeros agreeing
    np.testing.assert_allclose(r["analytic"], r["fd"], rtol=1e-4)
    np.testing.assert_allclose(r["log_std"], r["log_std_fd"], rtol=1e-4)


# --------------------------------------------------------------------------- config
def pathwise_config(**meta_kw):
    teacher = meta_kw.pop("teacher", "meta_variance")
    return Config(env="pendulum", teacher=TeacherConfig(name=teacher, estimator="pathwise"), meta=MetaConfig(**meta_kw))


def test_config_accepts_pathwise_and_refuses_what_it_cannot_do():
    validate(pathwise_config())
    validate(pathwise_config(teacher="meta", grad_horizon=200, pathwise_dynamics="full"))
    for teacher in ("meta_state", "meta_latent"):
        with pytest.raises(ConfigError, match="pathwise estimator supports") as e:
            validate(pathwise_config(teacher=teacher))
        assert e.value.field == "teacher.estimator"
    with pytest.raises(ConfigError, match="reverse mode") as e:
        validate(dataclasses.replace(pathwise_config(), env="inverted_pendulum"))
    assert e.value.field == "teacher.estimator"
    with pytest.raises(ConfigError, match="meta.return_horizon") as e:
        validate(pathwise_config(grad_horizon=201))
    assert e.value.field == "meta.grad_horizon"
    with pytest.raises(ConfigError, match="one_step") as e:
        validate(pathwise_config(pathwise_dynamics="two_step"))
    assert e.value.field == "meta.pathwise_dynamics"
    with pytest.raises(ConfigError, match="reinforce.*es.*pathwise") as e:
        validate(dataclasses.replace(pathwise_config(), teacher=TeacherConfig(estimator="adjoint")))
    reinforce = Config(env="pendulum", teacher=TeacherConfig(name="meta"))
    with pytest.raises(ConfigError, match="only 'pathwise' reads it") as e:
        check_explicit_fields(reinforce, {"meta.grad_horizon"})
    assert e.value.field == "meta.grad_horizon"
    check_explicit_fields(pathwise_config(), {"meta.grad_horizon", "meta.pathwise_dynamics"})


# --------------------------------------------------------------------------- pieces
def test_straight_through_clip_has_the_clip_value_and_the_identity_gradient():
    raw = jnp.asarray([-1.7, -0.3, 0.0, 0.999, 1.0, 2.5], jnp.float32)
    np.testing.assert_array_equal(np.asarray(straight_through_clip(raw)), np.asarray(jnp.clip(raw, -1.0, 1.0)))
    g = jax.grad(lambda x: jnp.sum(jnp.arange(1.0, 7.0) * straight_through_clip(x)))(raw)
    np.testing.assert_array_equal(np.asarray(g), np.arange(1.0, 7.0))


def test_second_moment_floor_lifts_only_zeros_and_keeps_adam_second_order_terms_finite():
    params = {"w": jnp.asarray([1.0, 2.0]), "b": jnp.asarray([0.5])}
    opt = optax.adam(1e-3)
    state = {"p": params, "opt": opt.init(params)}
    lifted = pathwise.floor_second_moment(state)
    assert np.all(np.asarray(lifted["opt"][0].nu["w"]) == np.float32(pathwise.NU_FLOOR))
    np.testing.assert_array_equal(np.asarray(lifted["p"]["w"]), np.asarray(params["w"]))  # params untouched

    def after_step(x, s):  # one Adam step whose gradient in "b" is exactly 0 (a dead ReLU unit), traced in x
        grads = {"w": x * params["w"], "b": jax.nn.relu(-x) * jnp.ones(1)}
        updates, _ = opt.update(grads, s["opt"], s["p"])
        return jnp.sum(optax.apply_updates(s["p"], updates)["w"]) + jnp.sum(optax.apply_updates(s["p"], updates)["b"])

    # d/dx of the step, then d/dx again (the second-order terms a meta-gradient through Adam contains)
    second = lambda s: jax.grad(jax.grad(lambda x: after_step(x, s) ** 2))(0.3)  # noqa: E731
    assert not np.isfinite(float(second(state)))  # sqrt(v) at v = 0: NaN without the floor
    assert np.isfinite(float(second(lifted)))


def test_nonfinite_meta_gradient_is_skipped_and_counted():
    from mjxmeta.algo.trainer import Trainer

    c = Config(env="pendulum", seeds=1, num_envs=2, rollout_steps=8, total_steps=1000, log_every=1, eval_envs=1,
               visit_samples=0, student=StudentConfig(hidden=(8,), batch_size=8, buffer_size=2000),
               teacher=TeacherConfig(name="meta", hidden=(8,), estimator="pathwise"),
               meta=MetaConfig(return_horizon=8, grad_horizon=4, lookahead_updates=2))
    tr = Trainer(c)
    state = tr.init(jax.random.PRNGKey(0))
    good = jax.tree.map(jnp.ones_like, state.teacher.params)
    bad = dict(good, log_std=good["log_std"].at[0].set(jnp.nan))
    est = lambda g: dict(grad=g, ema=jnp.zeros(()), rewards=jnp.zeros(2), adv=jnp.zeros(2))  # noqa: E731
    update = jax.jit(lambda s, g: tr.teacher_update(s, est(g)))
    new, diag, metrics = update(state, bad)
    for a, b in zip(jax.tree.leaves((state.teacher.params, state.teacher.opt_state)),
                    jax.tree.leaves((new.params, new.opt_state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # nothing applied, Adam untouched
    assert float(metrics["teacher_grad_skipped"]) == 1.0 and float(metrics["teacher_grad_norm"]) == 0.0
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(diag))
    new, _, metrics = update(state, good)
    assert float(metrics["teacher_grad_skipped"]) == 0.0
    assert not np.array_equal(np.asarray(new.params["log_std"]), np.asarray(state.teacher.params["log_std"]))
