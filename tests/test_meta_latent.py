"""``meta_latent`` teacher (after MAESN): the per-episode latent z in real rollouts, its density in
log P(D0), and the meta-gradient in m against its exact value.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from mjxmeta.algo import estimators, teachers
from mjxmeta.algo.config import Config, StudentConfig, TeacherConfig
from mjxmeta.algo.trainer import Trainer

OBS, A, Z = 3, 2, 2


def make(**kw):
    return teachers.make(TeacherConfig(name="meta_latent", latent_size=Z, hidden=(8,), **kw), OBS, A)


def toy_params(teacher):
    """Init params with m, log std_z and log sigma moved off their init values."""
    params = teacher.init(jax.random.PRNGKey(0), 1).params
    params["latent_mean"] = jnp.asarray([0.4, -1.1], jnp.float32)
    params["latent_log_std"] = jnp.asarray(teacher.log_std_param(np.log([0.5, 2.0])), jnp.float32)
    params["log_std"] = jnp.asarray(teacher.log_std_param(np.log([0.3, 0.7])), jnp.float32)
    return params


def test_z_is_held_through_each_episode_and_redrawn_at_every_reset():
    """A real D0 rollout on pendulum with 5-step episodes: u = [s, z, mu, start]."""
    episode, steps = 5, 13
    c = Config(env="pendulum", episode_length=episode, seeds=1, num_envs=3, rollout_steps=steps,
               total_steps=100_000, student=StudentConfig(hidden=(8,), batch_size=8),
               teacher=TeacherConfig(name="meta_latent", latent_size=Z, hidden=(8,)))
    tr = Trainer(c)
    state = tr.init(jax.random.PRNGKey(3))
    _, memory, d0, u, raw = jax.tree.map(np.asarray, jax.jit(tr.rollout_d0)(state, jax.random.PRNGKey(4)))
    obs = tr.obs_size
    z, start = u[..., obs:obs + Z], u[..., -1]               # (K, T, N, Z), (K, T, N)
    assert u.shape == (c.num_candidates, steps, 3, obs + Z + tr.action_size + 1)
    first = np.arange(steps) % episode == 0                   # the run starts at an episode start
    np.testing.assert_array_equal(start, np.broadcast_to(first[None, :, None], start.shape).astype(np.float32))
    for k in range(c.num_candidates):
        for t in range(1, steps):
            same = np.all(z[k, t] == z[k, t - 1], axis=-1)      # (N,)
            assert same.all() != first[t] and (same.all() or not same.any()), (k, t)
    # every episode of every env drew its own z
    zs = z[:, first].reshape(-1, Z)
    assert len(np.unique(zs.round(6), axis=0)) == len(zs)
    # the memory carries each env's current episode's z on (start flag 0 after its first step)
    np.testing.assert_array_equal(memory[:, :Z], z[:, -1].reshape(-1, Z))
    assert np.all(memory[:, Z] == 0.0)
    # the student's mu(s) sits in u where the residual mean reads it
    mu = np.asarray(tr.student.act(state.student, state.normalizer, jnp.asarray(d0.obs)))
    np.testing.assert_allclose(u[..., obs + Z:obs + Z + tr.action_size], mu, rtol=1e-6, atol=1e-6)


def test_fresh_latent_has_the_configured_distribution():
    teacher = make()
    params = toy_params(teacher)
    mem = np.asarray(jax.jit(lambda k: teacher.fresh_memory(params, k, 40_000))(jax.random.PRNGKey(1)), np.float64)
    std = np.exp(np.asarray(teacher.latent_log_std(params), np.float64))
    np.testing.assert_allclose(std, [0.5, 2.0], rtol=1e-5)
    m = np.asarray(params["latent_mean"], np.float64)
    assert np.all(np.abs(mem[:, :Z].mean(0) - m) < 4 * std / math.sqrt(len(mem)))
    np.testing.assert_allclose(mem[:, :Z].std(0), std, rtol=0.03)
    assert np.all(mem[:, Z] == 1.0)


def test_log_prob_counts_the_latent_once_per_episode_and_the_gradient_in_m_is_exact():
    teacher = make()
    params = toy_params(teacher)
    rng = np.random.default_rng(0)
    K, T = 2, 4
    s = rng.normal(size=(K, T, OBS))
    mu = rng.uniform(-0.9, 0.9, size=(K, T, A))
    # candidate 0: one episode starting at t = 0 and one at t = 2; candidate 1: no start inside D0
    z = np.concatenate([np.repeat(rng.normal(size=(1, 1, Z)), 2, axis=1),
                        np.repeat(rng.normal(size=(1, 1, Z)), 2, axis=1)], axis=1)
    z = np.concatenate([z, np.repeat(rng.normal(size=(1, 1, Z)), T, axis=1)])
    start = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], np.float64)
    u = np.concatenate([s, z, mu, start[..., None]], axis=-1).astype(np.float32)
    raw = rng.normal(scale=1.2, size=(K, T, A)).astype(np.float32)
    adv = np.array([1.5, -0.5], np.float32)

    logp, grad = jax.jit(lambda p: (teacher.log_prob(p, u, raw),
                                    estimators.reinforce_gradient(teacher, p, u, raw, adv)))(params)
    m = np.asarray(params["latent_mean"], np.float64)
    sd_z = np.exp(np.asarray(teacher.latent_log_std(params), np.float64))
    sigma = np.exp(np.asarray(teacher.log_std(params), np.float64))
    mean = np.asarray(teacher.mean(params, u), np.float64)
    want = (stats.norm.logpdf(raw, mean, sigma).sum(-1)
            + start * stats.norm.logpdf(z, m, sd_z).sum(-1))
    np.testing.assert_allclose(np.asarray(logp), want, rtol=1e-5, atol=1e-4)
    # d/dm 1/K sum_k adv_k sum_t log pi = 1/K sum_k adv_k sum_{t: start} (z_t - m) / v
    exact = sum(adv[k] * start[k, t] * (z[k, t] - m) / sd_z**2 for k in range(K) for t in range(T)) / K
    np.testing.assert_allclose(np.asarray(grad["latent_mean"]), exact, rtol=1e-5)
    assert np.abs(exact).min() > 0.1
    # log sigma and f get the action terms' gradient as for ``meta``
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grad["net"]))
