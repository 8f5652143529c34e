"""Meta-policy gradient (eq. 2 with K candidates): REINFORCE against exact gradients.

Toy problem: candidate k draws T actions a^k_t ~ pi_e(.|u_t) from fixed inputs
u_t and earns the meta-reward R_k = -sum_t ||a^k_t - c||^2 (c = the mean action
over t plus (0.2, -0.2): moderate |m - c| keeps the MC error of the log-sigma
gradient near 2 %, so a 10 % relative tolerance is > 4 SE). For a Gaussian
teacher with mean m_t(theta) and std sigma,

    E[R] = -sum_t sum_i [(m_ti - c_i)^2 + sigma_i^2],

so d E[R] / d log sigma_i = -2 T sigma_i^2 and, for the ``meta`` teacher's
output bias b (m = tanh(z + b)), d E[R] / d b_i = sum_t -2 (m_ti - c_i)(1 - m_ti^2).
The estimator ``reinforce_gradient(advantages(R))`` must match these within
Monte-Carlo error (the SE is computed from the per-candidate terms).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmeta.algo import estimators
from mjxmeta.algo.config import TeacherConfig
from mjxmeta.algo import teachers

OBS, A, T = 3, 2, 3
K = 20_000
C_OFFSET = np.array([0.2, -0.2])
LOG_STD = {"meta_variance": np.log([0.35, 0.3]), "meta": np.log([0.3, 0.35])}


def make_teacher(name):
    return teachers.make(TeacherConfig(name=name, hidden=(4,)), OBS, A)


def make_params(teacher, seed=0):
    shapes = jax.eval_shape(lambda k: teacher.init(k, 1).params, jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: jnp.asarray(0.4 * rng.normal(size=s.shape), s.dtype), shapes)
    params["log_std"] = jnp.asarray(teacher.log_std_param(LOG_STD[teacher.name]), jnp.float32)
    return params


def dlogstd_dparam(teacher, log_std):
    """d log sigma / d params['log_std'] of the sigmoid bound: (hi - lo) s (1 - s), s = (log sigma - lo) / (hi - lo)."""
    lo, hi = teacher.config.min_log_std, teacher.config.max_log_std
    s = (np.asarray(log_std, np.float64) - lo) / (hi - lo)
    return (hi - lo) * s * (1.0 - s)


def fixed_inputs(teacher):
    """(T, input_size) inputs u_t: mu(s_t) for meta_variance, s_t for meta."""
    rng = np.random.default_rng(1)
    if teacher.name == "meta_variance":
        return jnp.asarray([[0.1, 0.2], [0.0, 0.1], [0.2, 0.3]], jnp.float32)
    return jnp.asarray(0.3 * rng.normal(size=(T, OBS)), jnp.float32)


def target_c(teacher, params, u):
    """c = mean over t of the teacher's mean action, plus C_OFFSET."""
    if teacher.has_net:  # NumPy forward of GaussianMean (Dense-ReLU, tanh output)
        p, x = params["net"]["params"], np.asarray(u, np.float64)
        x = np.maximum(x @ np.asarray(p["hidden_0"]["Dense_0"]["kernel"]) + np.asarray(
            p["hidden_0"]["Dense_0"]["bias"]), 0.0)
        m = np.tanh(x @ np.asarray(p["output"]["kernel"]) + np.asarray(p["output"]["bias"]))
    else:
        m = np.asarray(u, np.float64)
    return jnp.asarray(m.mean(0) + C_OFFSET, jnp.float32)


def toy_reward(raw, c):
    """R_k = -sum_t ||a^k_t - c||^2 for raw (K, T, A) -> (K,)."""
    return -jnp.sum(jnp.square(raw - c), axis=(-2, -1))


def exact_objective(teacher, params, u, c):
    """E[R] in closed form: -sum_t sum_i ((m_ti - c_i)^2 + sigma_i^2)."""
    m = teacher.mean(params, u)
    sigma2 = jnp.exp(2.0 * teacher.log_std(params))
    return -jnp.sum(jnp.square(m - c)) - u.shape[0] * jnp.sum(sigma2)


def per_candidate_grads(teacher, params, inputs, raw):
    """grad_theta sum_t log pi_e(a^k_t | u^k_t) for every k: leaves (K, ...)."""
    def one(u, a):
        return jax.grad(lambda p: jnp.sum(teacher.log_prob(p, u, a)))(params)
    return jax.vmap(one)(inputs, raw)


def toy_problem(name):
    """(teacher, params, fixed inputs u, reward target c) of the toy meta-reward problem."""
    teacher = make_teacher(name)
    params = make_params(teacher)
    u = fixed_inputs(teacher)
    return teacher, params, u, target_c(teacher, params, u)


@functools.lru_cache(maxsize=None)
def mc_estimate(name):
    teacher, params, u, c = toy_problem(name)

    @jax.jit
    def run(params, key):
        inputs = jnp.broadcast_to(u, (K,) + u.shape)               # (K, T, input_size)
        raw, _ = teacher.sample(params, jnp.zeros((1, 1)), key, inputs)  # (K, T, A)
        rewards = toy_reward(raw, c)
        adv, _ = estimators.advantages(rewards, jnp.zeros(()), "leave_one_out", 0.9)
        g = estimators.reinforce_gradient(teacher, params, inputs, raw, adv)
        per_k = per_candidate_grads(teacher, params, inputs, raw)
        terms = jax.tree.map(lambda x: adv.reshape((K,) + (1,) * (x.ndim - 1)) * x, per_k)
        return dict(g=g, term_mean=jax.tree.map(lambda x: x.mean(0), terms),
                    se=jax.tree.map(lambda x: x.std(0) / math.sqrt(K), terms),
                    exact=jax.grad(lambda p: exact_objective(teacher, p, u, c))(params),
                    mean=teacher.mean(params, u), c=c)

    return teacher, params, run(params, jax.random.PRNGKey(42))


def _flat(tree):
    return {jax.tree_util.keystr(p): np.asarray(x, np.float64)
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


# --------------------------------------------------------------------------- (a) vs exact
@pytest.mark.parametrize("name", ["meta_variance", "meta"])
def test_reinforce_matches_exact_gradient(name):
    teacher, params, out = mc_estimate(name)
    g, se, exact = _flat(out["g"]), _flat(out["se"]), _flat(out["exact"])
    # The estimator is the mean of the per-candidate terms (sanity of the SE).
    for key, val in _flat(out["term_mean"]).items():
        np.testing.assert_allclose(g[key], val, rtol=1e-4, atol=1e-6)

    sigma = np.exp(LOG_STD[name])
    # Closed forms of the exact gradient (checks exact_objective itself).
    chain = dlogstd_dparam(teacher, LOG_STD[name])  # the parameter is the sigmoid bound's pre-image
    np.testing.assert_allclose(exact["['log_std']"], -2 * T * sigma**2 * chain, rtol=1e-4)
    if name == "meta_variance":
        assert set(g) == {"['log_std']"}  # the mean mu(s) is held fixed: log sigma is all there is
    else:
        m = np.asarray(out["mean"], np.float64)                # (T, A)
        bias_exact = np.sum(-2 * (m - np.asarray(out["c"], np.float64)) * (1 - m**2), axis=0)
        key = "['net']['params']['output']['bias']"
        np.testing.assert_allclose(exact[key], bias_exact, rtol=1e-4)
        assert np.all(np.abs(bias_exact) > 0.5)

    for key in g:
        err = np.abs(g[key] - exact[key])
        assert np.all(err < 4 * se[key] + 1e-7), (key, g[key], exact[key], se[key])
    # Relative error < 10 % on the components with a closed form.
    checked = ["['log_std']"] + ([] if name == "meta_variance" else ["['net']['params']['output']['bias']"])
    for key in checked:
        np.testing.assert_allclose(g[key], exact[key], rtol=0.10)
        assert np.all(4 * se[key] < 0.15 * np.abs(exact[key]))  # the 4-SE check is sharp too
    # Whole gradient vector (meta: every net parameter too) within 10 % in norm.
    vec = lambda d: np.concatenate([d[k].ravel() for k in sorted(d)])  # noqa: E731
    assert np.linalg.norm(vec(g) - vec(exact)) < 0.1 * np.linalg.norm(vec(exact))


@pytest.mark.parametrize("name", ["meta_variance", "meta"])
def test_single_candidate_no_baseline_is_paper_estimator(name):
    """K = 1, baseline 'none': g = R * grad sum_t log pi_e(a_t | u_t)."""
    teacher, params, u, c = toy_problem(name)

    @jax.jit
    def run(params, key):
        raw, _ = teacher.sample(params, jnp.zeros((1, 1)), key, u[None])  # (1, T, A)
        r = toy_reward(raw, c)
        adv, _ = estimators.advantages(r, jnp.asarray(3.0), "none", 0.9)
        g = estimators.reinforce_gradient(teacher, params, u[None], raw, adv)
        manual = jax.grad(lambda p: jnp.sum(teacher.log_prob(p, u, raw[0])))(params)
        return r, adv, g, manual

    r, adv, g, manual = run(params, jax.random.PRNGKey(0))
    assert float(adv[0]) == float(r[0])  # 'none' ignores the EMA (3.0)
    for (path, gg), mm in zip(jax.tree_util.tree_flatten_with_path(g)[0], jax.tree.leaves(manual)):
        np.testing.assert_allclose(np.asarray(gg), float(r[0]) * np.asarray(mm), rtol=1e-5, atol=1e-7,
                                   err_msg=jax.tree_util.keystr(path))


# --------------------------------------------------------------------------- (b) baselines
REPS, K_SMALL = 4000, 4


@functools.lru_cache(maxsize=None)
def repeated_estimates():
    """Estimator over REPS independent repetitions of K_SMALL candidates (meta_variance, T = 1)."""
    teacher = make_teacher("meta_variance")
    params = {"log_std": jnp.asarray(teacher.log_std_param(LOG_STD["meta_variance"]), jnp.float32)}
    u = jnp.asarray([[0.1, 0.2]], jnp.float32)  # T = 1

    def one(key):
        k_a, k_r = jax.random.split(key)
        inputs = jnp.broadcast_to(u, (K_SMALL, 1, A))
        raw, _ = teacher.sample(params, jnp.zeros((1, 1)), k_a, inputs)
        noise_r = 5.0 + jax.random.normal(k_r, (K_SMALL,))        # independent of the actions
        signal_r = 100.0 + toy_reward(raw, jnp.asarray([0.3, 0.0]))  # large constant offset

        def est(r, mode):
            adv, _ = estimators.advantages(r, jnp.zeros(()), mode, 0.9)
            return estimators.reinforce_gradient(teacher, params, inputs, raw, adv)["log_std"]

        return dict(indep_loo=est(noise_r, "leave_one_out"), indep_none=est(noise_r, "none"),
                    sig_loo=est(signal_r, "leave_one_out"), sig_none=est(signal_r, "none"))

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(7), REPS))


def test_leave_one_out_is_unbiased_when_rewards_ignore_actions():
    out = repeated_estimates()
    for key in ("indep_loo", "indep_none"):
        x = np.asarray(out[key], np.float64)                  # (REPS, A)
        se = x.std(0) / math.sqrt(REPS)
        assert np.all(np.abs(x.mean(0)) < 4 * se), (key, x.mean(0), se)
        assert np.all(se > 0)


def test_leave_one_out_has_lower_variance_with_offset_rewards():
    out = repeated_estimates()
    loo, none = np.asarray(out["sig_loo"], np.float64), np.asarray(out["sig_none"], np.float64)
    exact = -2 * np.exp(2 * LOG_STD["meta_variance"]) * dlogstd_dparam(make_teacher("meta_variance"),
                                                                        LOG_STD["meta_variance"])  # T = 1
    # Both unbiased ...
    for x in (loo, none):
        assert np.all(np.abs(x.mean(0) - exact) < 4 * x.std(0) / math.sqrt(REPS))
    # ... but the offset of 100 inflates the no-baseline variance by orders of magnitude.
    assert np.all(loo.var(0) * 100 < none.var(0)), (loo.var(0), none.var(0))


def test_advantages_by_hand():
    r = jnp.asarray([1.0, 2.0, 6.0])
    adv, ema = estimators.advantages(r, jnp.asarray(2.0), "leave_one_out", 0.9)
    # b_k = mean of the others: [4, 3.5, 1.5]
    np.testing.assert_allclose(np.asarray(adv), [-3.0, -1.5, 4.5], rtol=1e-6)
    np.testing.assert_allclose(float(ema), 0.9 * 2.0 + 0.1 * 3.0, rtol=1e-6)
    adv_auto, _ = estimators.advantages(r, jnp.asarray(2.0), "auto", 0.9)
    np.testing.assert_array_equal(np.asarray(adv_auto), np.asarray(adv))

    # ema: advantage uses the *old* ema; ema <- decay ema + (1 - decay) mean R.
    adv, ema = estimators.advantages(r, jnp.asarray(2.0), "ema", 0.9)
    np.testing.assert_allclose(np.asarray(adv), [-1.0, 0.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(float(ema), 2.1, rtol=1e-6)
    # K = 1: auto falls back to ema.
    adv, ema = estimators.advantages(jnp.asarray([5.0]), jnp.asarray(1.0), "auto", 0.5)
    np.testing.assert_allclose(np.asarray(adv), [4.0])
    np.testing.assert_allclose(float(ema), 3.0)
    # none: the rewards themselves.
    adv, _ = estimators.advantages(r, jnp.asarray(2.0), "none", 0.9)
    np.testing.assert_array_equal(np.asarray(adv), np.asarray(r))

    with pytest.raises(ValueError, match="leave_one_out"):
        estimators.advantages(jnp.asarray([1.0]), jnp.zeros(()), "leave_one_out", 0.9)
    with pytest.raises(ValueError, match="unknown baseline"):
        estimators.advantages(r, jnp.zeros(()), "mean", 0.9)


def test_ema_recursion_over_iterations():
    rs = [np.array([1.0, 3.0]), np.array([-2.0, 0.0]), np.array([10.0, 4.0])]
    ema, want = jnp.zeros(()), 0.0
    for r in rs:
        adv, ema = estimators.advantages(jnp.asarray(r), ema, "ema", 0.8)
        np.testing.assert_allclose(np.asarray(adv), r - want, rtol=1e-6, atol=1e-6)
        want = 0.8 * want + 0.2 * r.mean()
        np.testing.assert_allclose(float(ema), want, rtol=1e-6)


# --------------------------------------------------------------------------- (c) meta-rewards
def test_meta_rewards():
    returns = jnp.asarray([10.0, 12.5, 7.0, 10.0])  # [R(pi), R(pi'_1), R(pi'_2), R(pi'_3)]
    np.testing.assert_allclose(np.asarray(estimators.meta_rewards(returns)), [2.5, -3.0, 0.0])
    assert estimators.meta_rewards(jnp.asarray([1.0, 4.0])).shape == (1,)
