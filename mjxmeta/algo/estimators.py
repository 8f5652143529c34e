"""The meta-policy gradient's estimators: REINFORCE and ES (Xu, Liu, Zhao, Peng, ICML 2018); the pathwise
one is :mod:`mjxmeta.algo.pathwise`.

Equation numbers follow the authors' ICML 2018 slides (docs/algorithm.md):

* look-ahead          pi' = DDPG(pi, D0)                      (Algorithm 1, line 3)
* meta-reward         R(pi, D0) = R-hat(pi') - R-hat(pi)       (eq. 1)
* meta-gradient       grad J = E_{D0 ~ pi_e}[R(pi, D0) sum_t grad log pi_e(a_t|s_t)]   (eq. 2)

With K candidate D0 batches (docs/algorithm.md, "The estimator: K
candidate D0 batches"):

    g = 1/K sum_k (R_k - b_k) sum_t grad log pi_e(a^k_t | s^k_t),
    b_k = mean_{j != k} R_j           (leave-one-out, K >= 2),

or, for K = 1, b = an exponential moving average of past meta-rewards; with
baseline ``none`` and K = 1 this is the paper's one-sample estimator.

Parameter-perturbation (evolution-strategies) estimator, antithetic (Salimans
et al. 2017, "Evolution Strategies as a Scalable Alternative to RL", eq. 1 with
mirrored sampling): candidates k < K/2 run theta + s delta_k, candidate
k + K/2 runs theta - s delta_k, delta_k ~ N(0, I), with everything else common;

    g_ES = 1/(K s) sum_k R_k delta_k = 1/(K s) sum_{k < K/2} (R_k - R_{k+K/2}) delta_k,

an unbiased estimate of grad_theta E_delta[J(theta + s delta)] (the gradient of
the Gaussian-smoothed objective; exact in expectation for quadratic J).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mjxmeta.algo.teachers import Teacher, TeacherState


def meta_rewards(returns: jax.Array) -> jax.Array:
    """Eq. 1: R_k = R-hat(pi'_k) - R-hat(pi) from ``returns`` = [R-hat(pi), R-hat(pi'_1..K)] -> (K,)."""
    return returns[1:] - returns[0]


def advantages(rewards: jax.Array, ema: jax.Array, mode: str, decay: float):
    """Meta-rewards minus a baseline.

    Args:
      rewards: (K,) meta-rewards R_k.
      ema: scalar moving average of past meta-rewards.
      mode: ``leave_one_out`` (b_k = mean_{j != k} R_j; needs K >= 2), ``ema``
        (b = ema, then ema <- decay ema + (1 - decay) mean R), ``none`` (b = 0)
        or ``auto`` (leave_one_out if K >= 2 else ema).

    Returns:
      (advantages (K,), new ema).

    Raises:
      ValueError: on an unknown mode or leave_one_out with K < 2.
    """
    k = rewards.shape[0]
    if mode == "auto":
        mode = "leave_one_out" if k >= 2 else "ema"
    new_ema = decay * ema + (1.0 - decay) * jnp.mean(rewards)
    if mode == "leave_one_out":
        if k < 2:
            raise ValueError("teacher.baseline 'leave_one_out' needs meta.candidates >= 2")
        baseline = (jnp.sum(rewards) - rewards) / (k - 1)
        return rewards - baseline, new_ema
    if mode == "ema":
        return rewards - ema, new_ema
    if mode == "none":
        return rewards, new_ema
    raise ValueError(f"unknown baseline {mode!r}: accepted 'auto', 'leave_one_out', 'ema', 'none'")


def reinforce_gradient(teacher: Teacher, params, inputs: jax.Array, raw_actions: jax.Array, adv: jax.Array):
    """Eq. 2 with K candidates: g = 1/K sum_k adv_k sum_t grad log pi_e(a^k_t | u^k_t).

    Args:
      inputs: (K, ..., input_size) teacher inputs u stored with D0.
      raw_actions: (K, ..., A) unclipped sampled actions.
      adv: (K,) advantages (treated as constants).

    Returns:
      Gradient of J (ascent direction), same structure as ``params``.
    """
    adv = jax.lax.stop_gradient(adv)

    def surrogate(p):
        logp = teacher.log_prob(p, inputs, raw_actions)  # (K, ...)
        per_candidate = jnp.sum(logp.reshape(logp.shape[0], -1), axis=1)
        return jnp.mean(adv * per_candidate)

    return jax.grad(surrogate)(params)


def meta_gradient(teacher: Teacher, state: TeacherState, rewards: jax.Array, inputs: jax.Array,
                  raw_actions: jax.Array, deltas=None):
    """The teacher's meta-gradient with the estimator of ``teacher.config``.

    Args:
      state: teacher state (params and the meta-reward EMA).
      rewards: (K,) meta-rewards.
      inputs, raw_actions: (K, ...) teacher inputs and unclipped actions of D0
        (REINFORCE).
      deltas: antithetic parameter directions, leaves (K, ...) (``es``).

    Returns:
      (gradient of J (ascent), advantages (K,), new EMA). For ``es`` the
      advantages are R_k - mean R (diagnostics only; the antithetic
      differences need no baseline).
    """
    c = teacher.config
    adv, ema = advantages(rewards, state.baseline, c.baseline, c.ema_decay)
    if c.estimator == "es":
        return es_gradient(deltas, rewards, c.es_sigma), rewards - jnp.mean(rewards), ema
    return reinforce_gradient(teacher, state.params, inputs, raw_actions, adv), adv, ema


def finite_or_zero(grad):
    """(``grad``, True) if every entry of the pytree ``grad`` is finite, else (zeros like ``grad``, False).

    The flag is a scalar bool array (traceable); the trainer skips the teacher step where it is False.
    """
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(grad)]))
    return jax.tree.map(lambda x: jnp.where(finite, x, jnp.zeros_like(x)), grad), finite


def teacher_step(teacher: Teacher, state: TeacherState, grad, lr=None) -> TeacherState:
    """theta_e <- theta_e + eta * Adam(grad J): one ascent step on the meta-objective.

    ``lr``: eta, a float or traced scalar (``TeacherHyper.lr``); None = ``teacher.lr`` of the config.
    """
    neg = jax.tree.map(jnp.negative, grad)
    optim = teacher.optimizer(teacher.config.lr if lr is None else lr)
    updates, opt_state = optim.update(neg, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)


# ----------------------------------------------------------------------------- paired candidates, ES
def candidate_noise(key: jax.Array, k: int, shape: tuple[int, ...], mode: str) -> jax.Array:
    """Standard-normal action noise for K candidates, (K,) + shape.

    Args:
      mode: ``independent`` (K independent draws), ``antithetic`` (eps for
        k < K/2, exactly -eps for candidate k + K/2; K even) or ``common``
        (one draw shared by all K).

    Raises:
      ValueError: unknown mode, or ``antithetic`` with an odd K.
    """
    if mode == "independent":
        return jax.random.normal(key, (k,) + shape, jnp.float32)
    if mode == "common":
        return jnp.broadcast_to(jax.random.normal(key, shape, jnp.float32), (k,) + shape)
    if mode == "antithetic":
        if k % 2:
            raise ValueError(f"antithetic noise needs an even number of candidates, got K = {k}")
        half = jax.random.normal(key, (k // 2,) + shape, jnp.float32)
        return jnp.concatenate([half, -half])
    raise ValueError(f"unknown noise mode {mode!r}: accepted 'independent', 'antithetic', 'common'")


def perturbations(key: jax.Array, params, k: int):
    """Antithetic parameter directions delta (leaves (K, ...)): delta_{k+K/2} = -delta_k ~ N(0, I).

    Raises:
      ValueError: on an odd K.
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [candidate_noise(kk, k, x.shape, "antithetic")
                                        for kk, x in zip(keys, leaves)])


def perturb(params, deltas, es_sigma: float):
    """theta_k = theta + es_sigma delta_k for every candidate: leaves (K, ...)."""
    return jax.tree.map(lambda p, d: p[None] + es_sigma * d, params, deltas)


def es_gradient(deltas, rewards: jax.Array, es_sigma: float):
    """g_ES = 1/(K s) sum_k R_k delta_k (ascent direction; see the module docstring).

    With antithetic deltas any constant baseline cancels exactly, so the raw
    meta-rewards are used.

    Args:
      deltas: leaves (K, ...) from :func:`perturbations`.
      rewards: (K,) meta-rewards R_k of the perturbed candidates.
    """
    k = rewards.shape[0]
    r = jax.lax.stop_gradient(rewards)
    return jax.tree.map(lambda d: jnp.tensordot(r, d, axes=1) / (k * es_sigma), deltas)
