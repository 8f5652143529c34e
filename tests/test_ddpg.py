"""DDPG student: targets, losses, Polyak update and gradients, checked by hand.

Every expected value is recomputed independently: a float64 NumPy
re-implementation of the Flax actor/critic forward pass reads the parameter
arrays directly (``np_actor`` / ``np_critic``), observation normalization is
redone from the normalizer's ``mean``/``std``, and the L2 term is summed from
the raw kernels. Networks are tiny (8-8) and the batch has B = 3 rows.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmeta.config import StudentConfig
from mjxmeta.replay import Transition
from mjxmeta.students.ddpg import DDPG, DDPGState, OBS_CLIP, init_normalizer, update_normalizer

OBS, ACT, B = 3, 2, 3
GAMMA = 0.9
LN_EPS = 1e-6  # flax.linen.LayerNorm default


# --------------------------------------------------------------------------- helpers
def cfg(**kw) -> StudentConfig:
    base = dict(hidden=(8, 8), layer_norm=True, gamma=GAMMA, tau=0.3, critic_l2=0.1,
                actor_lr=1e-3, critic_lr=2e-3, batch_size=B, buffer_size=100)
    base.update(kw)
    return StudentConfig(**base)


def randomize(params, key, scale=0.5):
    """Replaces every leaf by N(0, scale^2) noise, so outputs are O(1) (the
    default U(+-3e-3) output layer would make Q ~ 1e-3 and every check weak)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def make_state(ddpg: DDPG, seed=0) -> DDPGState:
    """Online and target params all different and O(1) (one jit: eager flax init is slow)."""
    @jax.jit
    def build(key):
        k = jax.random.split(key, 4)
        s = ddpg.init(k[0])
        actor, critic = randomize(s.actor, k[0]), randomize(s.critic, k[1])
        t_actor, t_critic = randomize(s.actor, k[2]), randomize(s.critic, k[3])
        return DDPGState(actor, critic, t_actor, t_critic,
                         ddpg.actor_optim.init(actor), ddpg.critic_optim.init(critic))
    return build(jax.random.PRNGKey(seed))


def make_norm(seed=1):
    """Running statistics with a non-trivial mean and std."""
    rng = np.random.default_rng(seed)
    data = rng.normal([1.0, -2.0, 0.5], [2.0, 0.5, 3.0], size=(50, OBS)).astype(np.float32)
    return jax.jit(lambda d: update_normalizer(init_normalizer(OBS), d))(jnp.asarray(data))


def make_batch(seed=2) -> Transition:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(B, OBS)).astype(np.float32)
    obs[0, 2] = 40.0  # far out: exercises the +-5 clip of the normalized obs
    next_obs = rng.normal(size=(B, OBS)).astype(np.float32)
    next_obs[1, 0] = -60.0
    return Transition(obs=jnp.asarray(obs),
                      action=jnp.asarray(rng.uniform(-1, 1, size=(B, ACT)).astype(np.float32)),
                      reward=jnp.asarray([0.5, -1.25, 2.0], jnp.float32),
                      next_obs=jnp.asarray(next_obs),
                      terminated=jnp.asarray([0.0, 1.0, 0.0], jnp.float32))


def np_normalize(norm, obs, on=True):
    obs = np.asarray(obs, np.float64)
    if not on:
        return obs
    z = (obs - np.asarray(norm.mean, np.float64)) / np.asarray(norm.std, np.float64)
    return np.clip(z, -OBS_CLIP, OBS_CLIP)


def _a(x):
    return np.asarray(x, np.float64)


def np_hidden(p, x, layer_norm):
    x = x @ _a(p["Dense_0"]["kernel"]) + _a(p["Dense_0"]["bias"])
    if layer_norm:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        x = (x - mu) / np.sqrt(var + LN_EPS) * _a(p["LayerNorm_0"]["scale"]) + _a(p["LayerNorm_0"]["bias"])
    return np.maximum(x, 0.0)


def np_actor(params, x, hidden, layer_norm):
    p = params["params"]
    for i in range(len(hidden)):
        x = np_hidden(p[f"hidden_{i}"], x, layer_norm)
    return np.tanh(x @ _a(p["output"]["kernel"]) + _a(p["output"]["bias"]))


def np_critic(params, x, a, hidden, layer_norm):
    p = params["params"]
    for i in range(len(hidden)):
        if i == 1:
            x = np.concatenate([x, a], -1)
        x = np_hidden(p[f"hidden_{i}"], x, layer_norm)
    if len(hidden) == 1:
        x = np.concatenate([x, a], -1)
    return (x @ _a(p["output"]["kernel"]) + _a(p["output"]["bias"]))[..., 0]


def np_target(c: StudentConfig, state, norm, batch):
    s2 = np_normalize(norm, batch.next_obs, c.normalize_observations)
    a2 = np_actor(state.target_actor, s2, c.hidden, c.layer_norm)
    q2 = np_critic(state.target_critic, s2, a2, c.hidden, c.layer_norm)
    return _a(batch.reward) + c.gamma * (1.0 - _a(batch.terminated)) * q2


def np_hidden_kernel_sq(critic_params):
    p = critic_params["params"]
    return sum(float(np.sum(_a(v["Dense_0"]["kernel"]) ** 2)) for k, v in p.items() if k.startswith("hidden_"))


def close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- (a) target
@pytest.mark.parametrize("layer_norm", [True, False])
def test_critic_target_with_normalizer(layer_norm):
    c = cfg(layer_norm=layer_norm)
    ddpg = DDPG(c, OBS, ACT)
    state, norm, batch = make_state(ddpg), make_norm(), make_batch()
    y = np.asarray(jax.jit(ddpg.critic_target)(state, norm, batch))
    assert y.shape == (B,)

    # (i) by hand from the Flax modules, the *target* params and a hand-normalized s'.
    s2 = jnp.asarray(np_normalize(norm, batch.next_obs), jnp.float32)
    assert np.abs(np.asarray(s2)).max() == OBS_CLIP  # the clip is exercised
    a2 = ddpg.actor_net.apply(state.target_actor, s2)
    q2 = ddpg.critic_net.apply(state.target_critic, s2, a2)
    by_hand = batch.reward + GAMMA * (1.0 - batch.terminated) * q2
    close(y, by_hand)
    # (ii) by a float64 NumPy forward pass.
    close(y, np_target(c, state, norm, batch))
    # The terminated row does not bootstrap; the others really do (|Q'| is O(1)).
    assert y[1] == pytest.approx(float(batch.reward[1]), abs=0)
    assert np.all(np.abs(np.asarray(q2)[[0, 2]]) > 1e-2)
    # Online params are not used: changing them leaves the target unchanged.
    other = state.replace(actor=jax.jit(randomize)(state.actor, jax.random.PRNGKey(9)),
                          critic=jax.jit(randomize)(state.critic, jax.random.PRNGKey(10)))
    close(jax.jit(ddpg.critic_target)(other, norm, batch), y, rtol=0, atol=0)


def test_critic_target_without_normalization_constant_params():
    """normalize_observations=False, LayerNorm off, every param a constant: closed form."""
    c = cfg(hidden=(2, 2), layer_norm=False, normalize_observations=False)
    ddpg = DDPG(c, OBS, 1)
    s = jax.jit(ddpg.init)(jax.random.PRNGKey(0))
    ca, cq = 0.3, -0.2
    t_actor = jax.tree.map(lambda x: jnp.full_like(x, ca), s.actor)
    t_critic = jax.tree.map(lambda x: jnp.full_like(x, cq), s.critic)
    state = s.replace(target_actor=t_actor, target_critic=t_critic)
    relu = lambda v: max(v, 0.0)  # noqa: E731

    next_obs = np.array([[0.5, 1.0, -0.25], [2.0, -3.0, 4.0], [-1.0, -1.0, -1.0]], np.float32)
    reward = np.array([1.0, -0.5, 0.25], np.float32)
    term = np.array([0.0, 0.0, 1.0], np.float32)
    expected = []
    for s2, r, d in zip(next_obs.astype(np.float64), reward, term):
        h = relu(ca * s2.sum() + ca)           # both hidden_0 units equal
        h = relu(ca * 2 * h + ca)              # hidden_1
        mu = np.tanh(ca * 2 * h + ca)          # output
        g = relu(cq * s2.sum() + cq)           # critic hidden_0 (obs only)
        g = relu(cq * (2 * g + mu) + cq)       # hidden_1 sees [h0, h0, a]
        q = cq * 2 * g + cq                    # output
        expected.append(r + GAMMA * (1 - d) * q)
    batch = Transition(obs=jnp.zeros((3, OBS)), action=jnp.zeros((3, 1)), reward=jnp.asarray(reward),
                       next_obs=jnp.asarray(next_obs), terminated=jnp.asarray(term))
    y = jax.jit(ddpg.critic_target)(state, init_normalizer(OBS), batch)
    close(y, expected, rtol=1e-6, atol=1e-6)
    # Not the trivial value: the bootstrap term matters for the first two rows.
    assert abs(expected[0] - reward[0]) > 0.05 and abs(expected[1] - reward[1]) > 0.05
    # Normalizer is ignored when normalization is off (a wild normalizer changes nothing).
    close(jax.jit(ddpg.critic_target)(state, make_norm(), batch), y, rtol=0, atol=0)
    # And a NumPy forward pass agrees on random params too.
    state = make_state(ddpg)
    close(jax.jit(ddpg.critic_target)(state, make_norm(), batch), np_target(c, state, None, batch))


# --------------------------------------------------------------------------- (b), (c) losses
@pytest.mark.parametrize("layer_norm", [True, False])
def test_critic_loss_matches_numpy(layer_norm):
    c = cfg(layer_norm=layer_norm, critic_l2=0.1)
    ddpg = DDPG(c, OBS, ACT)
    state, norm, batch = make_state(ddpg), make_norm(), make_batch()
    loss, q_mean = jax.jit(ddpg.critic_loss)(state.critic, state, norm, batch)

    y = np_target(c, state, norm, batch)
    q = np_critic(state.critic, np_normalize(norm, batch.obs), _a(batch.action), c.hidden, layer_norm)
    l2 = 0.5 * np_hidden_kernel_sq(state.critic)
    expected = np.mean((q - y) ** 2) + 0.1 * l2
    close(loss, expected)
    close(q_mean, q.mean())
    # The L2 term is O(1) here, so a wrong selection of kernels would show.
    assert 0.1 * l2 > 0.05
    # critic_l2 = 0: plain mean squared TD error.
    ddpg0 = DDPG(dataclasses.replace(c, critic_l2=0.0), OBS, ACT)
    close(jax.jit(ddpg0.critic_loss)(state.critic, state, norm, batch)[0], np.mean((q - y) ** 2))


def test_actor_loss_is_minus_mean_q_of_mu():
    c = cfg()
    ddpg = DDPG(c, OBS, ACT)
    state, norm, batch = make_state(ddpg), make_norm(), make_batch()
    actor = jax.jit(randomize)(state.actor, jax.random.PRNGKey(7))  # the argument, not state.actor, is used
    s = np_normalize(norm, batch.obs)
    mu = np_actor(actor, s, c.hidden, c.layer_norm)
    expected = -np.mean(np_critic(state.critic, s, mu, c.hidden, c.layer_norm))
    close(jax.jit(ddpg.actor_loss)(actor, state, norm, batch), expected)
    close(jax.jit(ddpg.act)(actor, norm, batch.obs), mu)


# --------------------------------------------------------------------------- (d) update
def test_update_polyak_and_pre_update_gradients():
    c = cfg(tau=0.3)
    ddpg = DDPG(c, OBS, ACT)
    state, norm, batch = make_state(ddpg), make_norm(), make_batch()
    new, metrics = jax.jit(ddpg.update)(state, norm, batch)

    tau = c.tau
    for old_t, online, new_t in ((state.target_actor, new.actor, new.target_actor),
                                 (state.target_critic, new.critic, new.target_critic)):
        for o, s, n in zip(jax.tree.leaves(old_t), jax.tree.leaves(online), jax.tree.leaves(new_t)):
            close(n, (1 - tau) * _a(o) + tau * _a(s), rtol=1e-6, atol=1e-6)

    # Online params moved by one Adam step; both gradients are taken at the
    # pre-update params (the actor's at the *old* critic). First Adam step:
    # delta = -lr * g / (|g| + eps).
    g_c = jax.grad(lambda p: jax.jit(ddpg.critic_loss)(p, state, norm, batch)[0])(state.critic)
    g_a = jax.grad(lambda p: jax.jit(ddpg.actor_loss)(p, state, norm, batch))(state.actor)
    for lr, old, new_p, g in ((c.critic_lr, state.critic, new.critic, g_c),
                              (c.actor_lr, state.actor, new.actor, g_a)):
        for o, n, gg in zip(jax.tree.leaves(old), jax.tree.leaves(new_p), jax.tree.leaves(g)):
            gg = _a(gg)
            close(_a(n) - _a(o), -lr * gg / (np.abs(gg) + 1e-8), rtol=0, atol=2e-6 * lr / 1e-3)
    assert not np.allclose(_a(new.critic["params"]["output"]["bias"]),
                           _a(state.critic["params"]["output"]["bias"]))
    close(metrics["critic_loss"], jax.jit(ddpg.critic_loss)(state.critic, state, norm, batch)[0])
    close(metrics["actor_loss"], jax.jit(ddpg.actor_loss)(state.actor, state, norm, batch))


# --------------------------------------------------------------------------- (e) gradients
def test_critic_loss_gradient_output_bias_finite_differences():
    c = cfg(critic_l2=0.1)
    ddpg = DDPG(c, OBS, ACT)
    state, norm, batch = make_state(ddpg), make_norm(), make_batch()

    def loss_of_bias(b):
        p = jax.tree.map(lambda x: x, state.critic)
        p["params"]["output"]["bias"] = b
        return jax.jit(ddpg.critic_loss)(p, state, norm, batch)[0]

    b0 = state.critic["params"]["output"]["bias"]
    grad = float(jax.grad(loss_of_bias)(b0)[0])
    eps = 1e-2  # the loss is quadratic in the output bias: central differences are exact up to rounding
    fd = (float(loss_of_bias(b0 + eps)) - float(loss_of_bias(b0 - eps))) / (2 * eps)
    assert fd == pytest.approx(grad, rel=1e-2)
    # Closed form: dL/db = 2 mean(Q - y) (y held constant by stop_gradient).
    y = np_target(c, state, norm, batch)
    q = np_critic(state.critic, np_normalize(norm, batch.obs), _a(batch.action), c.hidden, c.layer_norm)
    assert grad == pytest.approx(2 * np.mean(q - y), rel=1e-4)


def test_critic_l2_touches_only_hidden_kernels():
    lam = 0.5
    with_l2 = DDPG(cfg(critic_l2=lam), OBS, ACT)
    without = DDPG(cfg(critic_l2=0.0), OBS, ACT)
    state, norm, batch = make_state(with_l2), make_norm(), make_batch()
    g1 = jax.grad(lambda p: jax.jit(with_l2.critic_loss)(p, state, norm, batch)[0])(state.critic)
    g0 = jax.grad(lambda p: jax.jit(without.critic_loss)(p, state, norm, batch)[0])(state.critic)
    n_kernels = 0
    for (path, d1), d0, w in zip(jax.tree_util.tree_flatten_with_path(g1)[0], jax.tree.leaves(g0),
                                 jax.tree.leaves(state.critic)):
        names = [getattr(k, "key", str(k)) for k in path]
        diff = _a(d1) - _a(d0)
        if names[-1] == "kernel" and "output" not in names:
            close(diff, lam * _a(w), rtol=1e-4, atol=1e-5)
            n_kernels += 1
        else:  # output kernel/bias, hidden biases, LayerNorm scale/bias: untouched
            close(diff, 0.0, rtol=0, atol=1e-6)
    assert n_kernels == 2
    # In value: the loss difference is lam/2 * sum of hidden kernels squared only.
    d = (jax.jit(with_l2.critic_loss)(state.critic, state, norm, batch)[0]
         - jax.jit(without.critic_loss)(state.critic, state, norm, batch)[0])
    close(d, lam * 0.5 * np_hidden_kernel_sq(state.critic), rtol=1e-5)
