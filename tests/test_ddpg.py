"""DDPG student: targets, losses, Polyak update and gradients, checked by hand.

Every expected value is recomputed independently: a float64 NumPy
re-implementation of the Flax actor/critic forward pass reads the parameter
arrays directly (``np_actor`` / ``np_critic``), observation normalization is
redone from the normalizer's ``mean``/``std``, and the L2 term is summed from
the raw kernels. Networks are tiny (8-8) and the batch has B = 3 rows.

To keep XLA compiles few (the machine is shared), every quantity the package
computes for one configuration is produced by a single jitted function
(:func:`package_outputs`), cached per configuration.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmeta.algo.config import StudentConfig
from mjxmeta.algo.replay import Transition
from mjxmeta.algo.students.ddpg import DDPG, DDPGState, OBS_CLIP, init_normalizer, update_normalizer

OBS, ACT, B = 3, 2, 3
GAMMA = 0.9
TAU = 0.3
L2 = 0.5
FD_EPS = 1e-2
LN_EPS = 1e-6  # flax.linen.LayerNorm default


# --------------------------------------------------------------------------- helpers
def cfg(**kw) -> StudentConfig:
    base = dict(hidden=(8, 8), layer_norm=True, gamma=GAMMA, tau=TAU, critic_l2=L2,
                actor_lr=1e-3, critic_lr=2e-3, batch_size=B, buffer_size=100)
    base.update(kw)
    return StudentConfig(**base)


def random_params(module_init, *args, seed=0, scale=0.5):
    """Params of the module's structure, every leaf N(0, scale^2) from NumPy.

    Outputs are then O(1) (the default U(+-3e-3) output layer would make Q ~
    1e-3 and every check weak). The structure comes from ``jax.eval_shape``, so
    nothing is compiled (threefry RNG under jit compiles slowly on CPU).
    """
    shapes = jax.eval_shape(module_init, jax.random.PRNGKey(0), *args)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(scale * rng.normal(size=s.shape), s.dtype), shapes)


def make_state(ddpg: DDPG, seed=0) -> tuple[DDPGState, object]:
    """Online and target params all different and O(1); plus a second actor."""
    obs = jnp.zeros((1, OBS), jnp.float32)
    act = jnp.zeros((1, ddpg.action_size), jnp.float32)
    actors = [random_params(ddpg.actor_net.init, obs, seed=seed + i) for i in (0, 1, 2)]
    critics = [random_params(ddpg.critic_net.init, obs, act, seed=seed + 10 + i) for i in (0, 1, 2)]
    state = DDPGState(actors[0], critics[0], actors[1], critics[1],
                      ddpg.actor_optim.init(actors[0]), ddpg.critic_optim.init(critics[0]))
    return state, actors[2], critics[2]


def make_norm_data(seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal([1.0, -2.0, 0.5], [2.0, 0.5, 3.0], size=(50, OBS)).astype(np.float32)


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


@functools.lru_cache(maxsize=None)
def package_outputs(layer_norm: bool = True, normalize: bool = True):
    """(config, state, alt_actor, norm, batch, outputs) for one configuration; one jit."""
    c = cfg(layer_norm=layer_norm, normalize_observations=normalize)
    ddpg = DDPG(c, OBS, ACT)
    ddpg0 = DDPG(dataclasses.replace(c, critic_l2=0.0), OBS, ACT)
    batch = make_batch()

    state, alt_actor, alt_critic = make_state(ddpg)

    @jax.jit
    def run(state, alt_actor, alt_critic, norm_data, batch):
        norm = update_normalizer(init_normalizer(OBS), norm_data)
        other = state.replace(actor=alt_actor, critic=alt_critic)
        closs = lambda p, d=ddpg: d.critic_loss(p, state, norm, batch)[0]  # noqa: E731

        def loss_of_bias(b):
            p = jax.tree.map(lambda x: x, state.critic)
            p["params"]["output"]["bias"] = b
            return closs(p)

        b0 = state.critic["params"]["output"]["bias"]
        new, metrics = ddpg.update(state, norm, batch)
        out = dict(
            y=ddpg.critic_target(state, norm, batch),
            y_other_online=ddpg.critic_target(other, norm, batch),
            critic_loss=ddpg.critic_loss(state.critic, state, norm, batch),
            critic_loss_no_l2=ddpg0.critic_loss(state.critic, state, norm, batch)[0],
            actor_loss_alt=ddpg.actor_loss(alt_actor, state, norm, batch),
            act_alt=ddpg.mu(alt_actor, norm, batch.obs),
            g_critic=jax.grad(closs)(state.critic),
            g_critic_no_l2=jax.grad(lambda p: closs(p, ddpg0))(state.critic),
            g_actor=jax.grad(lambda p: ddpg.actor_loss(p, state, norm, batch))(state.actor),
            g_bias=jax.grad(loss_of_bias)(b0),
            loss_bias_plus=loss_of_bias(b0 + FD_EPS),
            loss_bias_minus=loss_of_bias(b0 - FD_EPS),
            new=new, metrics=metrics,
        )
        return norm, out

    norm, out = run(state, alt_actor, alt_critic, jnp.asarray(make_norm_data()), batch)
    return c, state, alt_actor, norm, batch, out


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


def np_critic(params, x, a, hidden, layer_norm, action_layer=1):
    p = params["params"]
    for i in range(len(hidden)):
        if i == action_layer:
            x = np.concatenate([x, a], -1)
        x = np_hidden(p[f"hidden_{i}"], x, layer_norm)
    if len(hidden) <= action_layer:
        x = np.concatenate([x, a], -1)
    return (x @ _a(p["output"]["kernel"]) + _a(p["output"]["bias"]))[..., 0]


def np_target(c: StudentConfig, state, norm, batch):
    s2 = np_normalize(norm, batch.next_obs, c.normalize_observations)
    a2 = np_actor(state.target_actor, s2, c.hidden, c.layer_norm)
    q2 = np_critic(state.target_critic, s2, a2, c.hidden, c.layer_norm)
    return _a(batch.reward) + c.gamma * (1.0 - _a(batch.terminated)) * q2


def np_q(c, params, norm, obs, action):
    return np_critic(params, np_normalize(norm, obs, c.normalize_observations), _a(action), c.hidden,
                     c.layer_norm)


def np_hidden_kernel_sq(critic_params):
    p = critic_params["params"]
    return sum(float(np.sum(_a(v["Dense_0"]["kernel"]) ** 2)) for k, v in p.items() if k.startswith("hidden_"))


def close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


# normalize_observations=False is covered (closed form and NumPy forward pass) by
# test_critic_target_without_normalization_constant_params.
CASES = [pytest.param(True, True, id="layernorm-normalized"),
         pytest.param(False, True, id="plain-normalized")]


# --------------------------------------------------------------------------- (a) target
@pytest.mark.parametrize("layer_norm,normalize", CASES)
def test_critic_target(layer_norm, normalize):
    c, state, _, norm, batch, out = package_outputs(layer_norm, normalize)
    y = np.asarray(out["y"])
    assert y.shape == (B,)
    # float64 NumPy forward pass of the *target* nets at s' (normalized by hand if on).
    close(y, np_target(c, state, norm, batch))
    if normalize:
        assert np.abs(np_normalize(norm, batch.next_obs)).max() == OBS_CLIP  # the clip is exercised
        assert not np.allclose(np.asarray(norm.std), 1.0) and not np.allclose(np.asarray(norm.mean), 0.0)
    # The terminated row does not bootstrap at all; the others do (|Q'| is O(1)).
    assert y[1] == float(batch.reward[1])
    assert np.all(np.abs(y - _a(batch.reward))[[0, 2]] > 1e-2)
    # Online params are not used: other online actor/critic, same target.
    close(out["y_other_online"], y, rtol=0, atol=0)


def test_critic_target_matches_flax_apply_by_hand():
    """Same target from ``actor_net.apply`` / ``critic_net.apply`` on a hand-normalized s'."""
    c, state, _, norm, batch, out = package_outputs(True, True)
    ddpg = DDPG(c, OBS, ACT)
    s2 = jnp.asarray(np_normalize(norm, batch.next_obs), jnp.float32)

    @jax.jit
    def by_hand(state, s2):
        a2 = ddpg.actor_net.apply(state.target_actor, s2)
        q2 = ddpg.critic_net.apply(state.target_critic, s2, a2)
        return batch.reward + GAMMA * (1.0 - batch.terminated) * q2

    close(out["y"], by_hand(state, s2))


def test_critic_target_without_normalization_constant_params():
    """normalize_observations=False, LayerNorm off, every param a constant: closed form."""
    c = cfg(hidden=(2, 2), layer_norm=False, normalize_observations=False)
    ddpg = DDPG(c, OBS, 1)
    ca, cq = 0.3, -0.2
    next_obs = np.array([[0.5, 1.0, -0.25], [2.0, -3.0, 4.0], [-1.0, -1.0, -1.0]], np.float32)
    reward = np.array([1.0, -0.5, 0.25], np.float32)
    term = np.array([0.0, 0.0, 1.0], np.float32)
    batch = Transition(obs=jnp.zeros((3, OBS)), action=jnp.zeros((3, 1)), reward=jnp.asarray(reward),
                       next_obs=jnp.asarray(next_obs), terminated=jnp.asarray(term))

    s, _, _ = make_state(ddpg)
    random_state = make_state(ddpg, seed=5)[0]

    @jax.jit
    def run(s, random_state, norm_data):
        state = s.replace(target_actor=jax.tree.map(lambda x: jnp.full_like(x, ca), s.actor),
                          target_critic=jax.tree.map(lambda x: jnp.full_like(x, cq), s.critic))
        wild = update_normalizer(init_normalizer(OBS), norm_data)
        return (ddpg.critic_target(state, init_normalizer(OBS), batch),
                ddpg.critic_target(state, wild, batch),
                ddpg.critic_target(random_state, wild, batch))

    y, y_wild, y_random = run(s, random_state, jnp.asarray(make_norm_data()))
    relu = lambda v: max(v, 0.0)  # noqa: E731
    expected = []
    for s2, r, d in zip(next_obs.astype(np.float64), reward, term):
        h = relu(ca * s2.sum() + ca)           # both hidden_0 units are equal
        h = relu(ca * 2 * h + ca)              # hidden_1
        mu = np.tanh(ca * 2 * h + ca)          # actor output
        g = relu(cq * s2.sum() + cq)           # critic hidden_0 (obs only)
        g = relu(cq * (2 * g + mu) + cq)       # hidden_1 sees [h0, h0, a]
        q = cq * 2 * g + cq                    # critic output
        expected.append(r + GAMMA * (1 - d) * q)
    close(y, expected, rtol=1e-6, atol=1e-6)
    # Not the trivial value: the bootstrap term matters for the first two rows.
    assert abs(expected[0] - reward[0]) > 0.05 and abs(expected[1] - reward[1]) > 0.05
    # The normalizer is ignored when normalization is off.
    close(y_wild, y, rtol=0, atol=0)
    # Random params: a float64 NumPy forward pass on the raw s' agrees.
    close(y_random, np_target(c, random_state, None, batch))
    assert not np.allclose(np.asarray(y_random), reward, atol=1e-2)


# --------------------------------------------------------------------------- (b), (c) losses
@pytest.mark.parametrize("layer_norm,normalize", CASES)
def test_critic_loss_matches_numpy(layer_norm, normalize):
    c, state, _, norm, batch, out = package_outputs(layer_norm, normalize)
    loss, q_mean = out["critic_loss"]
    y = np_target(c, state, norm, batch)
    q = np_q(c, state.critic, norm, batch.obs, batch.action)
    l2 = 0.5 * np_hidden_kernel_sq(state.critic)
    close(loss, np.mean((q - y) ** 2) + L2 * l2)
    close(q_mean, q.mean())
    assert L2 * l2 > 0.1  # the L2 term is O(1): a wrong selection of kernels would show
    # critic_l2 = 0: plain mean squared TD error.
    close(out["critic_loss_no_l2"], np.mean((q - y) ** 2))


@pytest.mark.parametrize("layer_norm,normalize", CASES)
def test_actor_loss_is_minus_mean_q_of_mu(layer_norm, normalize):
    c, state, alt_actor, norm, batch, out = package_outputs(layer_norm, normalize)
    # The ``actor`` argument (not state.actor) is differentiated; the critic is state.critic.
    s = np_normalize(norm, batch.obs, normalize)
    mu = np_actor(alt_actor, s, c.hidden, c.layer_norm)
    close(out["act_alt"], mu)
    close(out["actor_loss_alt"], -np.mean(np_critic(state.critic, s, mu, c.hidden, c.layer_norm)))


# --------------------------------------------------------------------------- (d) update
def test_update_polyak_and_pre_update_gradients():
    c, state, _, norm, batch, out = package_outputs(True, True)
    new, metrics = out["new"], out["metrics"]
    for old_t, online, new_t in ((state.target_actor, new.actor, new.target_actor),
                                 (state.target_critic, new.critic, new.target_critic)):
        for o, s, n in zip(jax.tree.leaves(old_t), jax.tree.leaves(online), jax.tree.leaves(new_t)):
            close(n, (1 - TAU) * _a(o) + TAU * _a(s), rtol=1e-6, atol=1e-6)

    # Online params moved by one Adam step; both gradients are taken at the
    # pre-update params (the actor's at the *old* critic). First Adam step:
    # delta = -lr * g / (|g| + eps).
    for lr, old, new_p, g in ((c.critic_lr, state.critic, new.critic, out["g_critic"]),
                              (c.actor_lr, state.actor, new.actor, out["g_actor"])):
        for o, n, gg in zip(jax.tree.leaves(old), jax.tree.leaves(new_p), jax.tree.leaves(g)):
            gg = _a(gg)
            close(_a(n) - _a(o), -lr * gg / (np.abs(gg) + 1e-8), rtol=0, atol=1e-6)
    assert np.abs(_a(new.critic["params"]["output"]["bias"])
                  - _a(state.critic["params"]["output"]["bias"])).max() > 0.5 * c.critic_lr
    close(metrics["critic_loss"], out["critic_loss"][0])
    close(metrics["actor_loss"], -np.mean(np_q(c, state.critic, norm, batch.obs, np_actor(
        state.actor, np_normalize(norm, batch.obs), c.hidden, c.layer_norm))))


# --------------------------------------------------------------------------- (e) gradients
def test_critic_loss_gradient_output_bias_finite_differences():
    c, state, _, norm, batch, out = package_outputs(True, True)
    grad = float(out["g_bias"][0])
    assert grad == pytest.approx(float(out["g_critic"]["params"]["output"]["bias"][0]), rel=1e-6)
    # The loss is quadratic in the output bias, so central differences are exact
    # up to float32 rounding (~1e-7 * |L| / eps).
    fd = (float(out["loss_bias_plus"]) - float(out["loss_bias_minus"])) / (2 * FD_EPS)
    assert fd == pytest.approx(grad, rel=1e-2)
    # Closed form: dL/db = 2 mean(Q - y), y held constant (stop_gradient).
    q = np_q(c, state.critic, norm, batch.obs, batch.action)
    assert grad == pytest.approx(2 * np.mean(q - np_target(c, state, norm, batch)), rel=1e-4)
    assert abs(grad) > 0.1


@pytest.mark.parametrize("layer_norm,normalize", CASES)
def test_critic_l2_touches_only_hidden_kernels(layer_norm, normalize):
    c, state, _, norm, batch, out = package_outputs(layer_norm, normalize)
    n_kernels = 0
    flat = jax.tree_util.tree_flatten_with_path(out["g_critic"])[0]
    for (path, d1), d0, w in zip(flat, jax.tree.leaves(out["g_critic_no_l2"]), jax.tree.leaves(state.critic)):
        names = [getattr(k, "key", str(k)) for k in path]
        diff = _a(d1) - _a(d0)
        if names[-1] == "kernel" and "output" not in names:
            close(diff, L2 * _a(w), rtol=1e-4, atol=1e-5)
            n_kernels += 1
        else:  # output kernel/bias, hidden biases, LayerNorm scale/bias: untouched
            close(diff, 0.0, rtol=0, atol=1e-6)
    assert n_kernels == len(c.hidden)
    # In value: the loss difference is L2/2 * sum of squared hidden kernels only.
    close(out["critic_loss"][0] - out["critic_loss_no_l2"], L2 * 0.5 * np_hidden_kernel_sq(state.critic),
          rtol=1e-5)


@pytest.mark.parametrize("action_layer", [0, 1, 2])
def test_critic_action_layer_and_default_output_init(action_layer):
    """``student.action_layer``: the action joins the critic before hidden layer i (0 = at the input, SB3/SBX;
    2 = after the last hidden layer), checked against the numpy forward pass; ``output_init`` 0 gives Flax's
    default output layer (zero bias, LeCun-normal kernel) and a nonzero scale U(-scale, scale)."""
    from mjxmeta.algo.networks import Actor, Critic
    hidden = (8, 8)
    obs = np.random.default_rng(0).normal(size=(5, OBS)).astype(np.float32)
    act = np.random.default_rng(1).uniform(-1, 1, size=(5, ACT)).astype(np.float32)
    net = Critic(hidden, False, action_layer, 0.0)
    params = random_params(net.init, jnp.zeros((1, OBS)), jnp.zeros((1, ACT)), seed=3)
    close(net.apply(params, obs, act), np_critic(params, obs, act, hidden, False, action_layer))
    first = np.asarray(params["params"]["hidden_0"]["Dense_0"]["kernel"]).shape[0]
    assert first == OBS + (ACT if action_layer == 0 else 0)
    fresh = net.init(jax.random.PRNGKey(0), jnp.zeros((1, OBS)), jnp.zeros((1, ACT)))["params"]["output"]
    assert float(jnp.max(jnp.abs(fresh["bias"]))) == 0.0 and float(jnp.max(jnp.abs(fresh["kernel"]))) > 0.05
    small = Actor(ACT, hidden, True, 1e-3).init(jax.random.PRNGKey(0), jnp.zeros((1, OBS)))["params"]["output"]
    assert 0 < float(jnp.max(jnp.abs(small["kernel"]))) <= 1e-3 and float(jnp.max(jnp.abs(small["bias"]))) <= 1e-3
