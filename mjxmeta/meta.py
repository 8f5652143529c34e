"""The meta-policy gradient (Xu, Liu, Zhao, Peng, ICML 2018).

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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mjxmeta.replay import Transition
from mjxmeta.rollout import deterministic_returns
from mjxmeta.students.base import Student, StudentState
from mjxmeta.teachers import Teacher, TeacherState


def look_ahead(student: Student, state: StudentState, norm, d0: Transition, key: jax.Array,
               n_updates: int) -> StudentState:
    """pi' = DDPG(pi, D0): a copy of the student after ``n_updates`` steps on D0 only.

    Args:
      student: the student's functions; ``state`` its state (pi).
      d0: transitions of one candidate, flattened to (M, ...).
      key: raw key for minibatch indices (uniform with replacement over D0).

    Returns:
      The updated copy of ``state`` (for DDPG: actor, critic, targets,
      optimizer states); ``state`` itself is unchanged.
    """
    m = d0.reward.shape[0]
    bs = student.config.batch_size

    def sample(k):
        k, sub = jax.random.split(k)
        idx = jax.random.randint(sub, (bs,), 0, m)
        return k, jax.tree.map(lambda x: x[idx], d0)

    new, _, _ = student.update_many(state, norm, sample, key, n_updates)
    return new


def estimate_returns(env, student: Student, policies: StudentState, norm, reset_keys: jax.Array, horizon: int):
    """R-hat of P deterministic students from the *same* start states (common random numbers).

    Args:
      policies: student states stacked on a leading axis of size P (here
        P = K + 1: pi, then pi'_1..pi'_K); only what ``student.act`` reads is used.
      reset_keys: (E, 2) reset keys shared by all P actors.
      horizon: H, steps per rollout.

    Returns:
      (returns (P,) = mean over E envs of the undiscounted first-episode return
      within H steps, transitions with leading (P, H, E)).
    """
    def one(policy):
        rets, trs = deterministic_returns(env, lambda obs: student.act(policy, norm, obs), reset_keys, horizon)
        return jnp.mean(rets), trs

    return jax.vmap(one)(policies)


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


def teacher_step(teacher: Teacher, state: TeacherState, grad) -> TeacherState:
    """theta_e <- theta_e + eta * Adam(grad J): one ascent step on the meta-objective."""
    neg = jax.tree.map(jnp.negative, grad)
    updates, opt_state = teacher.optim.update(neg, state.opt_state, state.params)
    return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)
