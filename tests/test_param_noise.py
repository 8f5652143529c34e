"""``param_noise`` teacher (Plappert et al. 2018): the adaptation rule against hand-computed values,
what is perturbed, and acting with the perturbed actor.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mjxmeta.algo import students, teachers
from mjxmeta.algo.acting import teacher_step
from mjxmeta.algo.config import StudentConfig, TeacherConfig
from mjxmeta.algo.envs import make as make_env
from mjxmeta.algo.students import init_normalizer
from mjxmeta.algo.teachers.param_noise import action_distance, adapted_log_std

OBS, A = 3, 1  # pendulum's sizes


def setup(**kw):
    student = students.make(StudentConfig(hidden=(8, 8)), OBS, A)
    teacher = teachers.make(TeacherConfig(name="param_noise", **kw), OBS, A, 200, student)
    return student, teacher


def test_adaptation_rule_by_hand():
    # sigma <- sigma * alpha if d < delta else sigma / alpha, d the RMS action distance
    log_std = jnp.full((2,), math.log(0.2), jnp.float32)
    up = np.exp(np.asarray(adapted_log_std(log_std, jnp.float32(0.19), 0.2, 1.01)))
    down = np.exp(np.asarray(adapted_log_std(log_std, jnp.float32(0.2), 0.2, 1.01)))   # d = delta: shrink
    np.testing.assert_allclose(up, [0.202, 0.202], rtol=1e-6)
    np.testing.assert_allclose(down, [0.2 / 1.01] * 2, rtol=1e-6)
    # d on two states and two action dims: sqrt(mean([0.1, -0.3, 0.0, 0.2]^2)) = sqrt(0.035)
    mu_fn = lambda actor, obs: obs * actor  # noqa: E731
    obs = jnp.asarray([[1.0, -3.0], [0.0, 2.0]])
    d = action_distance(mu_fn, jnp.float32(1.0), jnp.float32(1.1), obs)
    np.testing.assert_allclose(float(d), math.sqrt(0.035), rtol=1e-6)


def test_adapt_grows_a_small_sigma_and_shrinks_a_large_one_on_the_real_actor():
    student, teacher = setup()
    s_state = student.init(jax.random.PRNGKey(0))
    norm = init_normalizer(OBS)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(64, OBS)), jnp.float32)
    mu_fn = lambda actor, o: student.mu(actor, norm, o)  # noqa: E731

    @jax.jit
    def run(log_sigma, key):
        st = teacher.init(jax.random.PRNGKey(1), 2)
        st = st.replace(params=dict(st.params, log_std=jnp.full((A,), log_sigma)))
        new = teacher.adapt(st, student.actor(s_state), mu_fn, obs, key)
        # the same d by hand: the perturbation adapt draws from this key
        pert = jax.tree.map(jnp.add, student.actor(s_state), teacher.perturbation(st.params["log_std"], key))
        d = jnp.sqrt(jnp.mean((mu_fn(student.actor(s_state), obs) - mu_fn(pert, obs)) ** 2))
        return st.params["log_std"], new.params["log_std"], d

    for sigma, grows in ((1e-3, True), (30.0, False)):
        old, new, d = jax.tree.map(np.asarray, run(jnp.float32(math.log(sigma)), jax.random.PRNGKey(2)))
        assert (d < 0.2) == grows, (sigma, d)
        want = sigma * 1.01 if grows else sigma / 1.01
        np.testing.assert_allclose(np.exp(new), want, rtol=1e-5)


def test_perturbation_spares_layernorm_and_the_perturbed_actor_acts_per_episode():
    student, teacher = setup(init_std=0.3)
    env = make_env("pendulum", 200, starts_per_env=2)
    s_state = student.init(jax.random.PRNGKey(0))
    norm = init_normalizer(OBS)

    @jax.jit
    def run(key):
        t_state = teacher.init(jax.random.PRNGKey(1), 4)
        env_state = env.reset(jax.random.split(key, 4))
        out = teacher_step(env, student, teacher, s_state, norm, t_state.params, env_state, t_state.memory, key)
        return t_state, env_state, out

    t_state, env_state, (_, memory, tr, done, u, raw) = run(jax.random.PRNGKey(3))
    delta = t_state.memory
    flat = jax.tree_util.tree_flatten_with_path(delta)[0]
    for path, x in flat:
        x = np.asarray(x)
        assert x.shape[0] == 4
        if "LayerNorm" in jax.tree_util.keystr(path):
            assert np.all(x == 0), path
        elif x.size >= 4 * 64:  # hidden kernels: N(0, 0.3^2)
            np.testing.assert_allclose(x.std(), 0.3, rtol=0.15)
    assert any("LayerNorm" in jax.tree_util.keystr(p) for p, _ in flat)
    # the action is the perturbed actor's, env by env, with no action noise; delta is held (no episode ended)
    for b in range(4):
        actor_b = jax.tree.map(lambda a, d: a + d[b], student.actor(s_state), delta)
        want = student.mu(actor_b, norm, env_state.obs[b])
        np.testing.assert_allclose(np.asarray(raw[b]), np.asarray(want), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(raw), np.asarray(student.act(s_state, norm, env_state.obs)))
    assert not np.asarray(done).any()
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
               zip(jax.tree.leaves(delta), jax.tree.leaves(memory)))
