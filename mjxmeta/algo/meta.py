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

Parameter-perturbation (evolution-strategies) estimator, antithetic (Salimans
et al. 2017, "Evolution Strategies as a Scalable Alternative to RL", eq. 1 with
mirrored sampling): candidates k < K/2 run theta + s delta_k, candidate
k + K/2 runs theta - s delta_k, delta_k ~ N(0, I), with everything else common;

    g_ES = 1/(K s) sum_k R_k delta_k = 1/(K s) sum_{k < K/2} (R_k - R_{k+K/2}) delta_k,

an unbiased estimate of grad_theta E_delta[J(theta + s delta)] (the gradient of
the Gaussian-smoothed objective; exact in expectation for quadratic J).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjxmeta.algo.replay import Transition
from mjxmeta.algo.rollout import deterministic_returns
from mjxmeta.algo.students.base import Student, StudentState
from mjxmeta.algo.teachers import Teacher, TeacherState


def lookahead_sampler(d0: Transition, batch_size: int, n_d0: int,
                      buffer_rows: Callable[[jax.Array], tuple[Transition, jax.Array]] | None = None):
    """Minibatch sampler of the look-ahead: ``sample(carry) -> (carry, batch (batch_size, ...))``.

    The carry is ``(key_d0, key_buffer)``. Each minibatch holds ``n_d0`` rows of
    D0 (uniform with replacement) followed by ``batch_size - n_d0`` rows of the
    replay buffer B from ``buffer_rows(key)``; with ``key_buffer`` shared by all
    candidates (not vmapped) every candidate sees the same buffer rows.

    Args:
      d0: one candidate's D0, flattened to (M, ...).
      batch_size: rows per minibatch.
      n_d0: rows from D0, 1 <= n_d0 <= batch_size (= batch_size: D0 only).
      buffer_rows: ``key -> (rows (>= batch_size - n_d0, ...), valid scalar
        bool)``; where ``valid`` is False (an empty buffer) the buffer share
        is drawn from D0 instead. Needed when n_d0 < batch_size.
    """
    m = d0.reward.shape[0]
    n_b = batch_size - n_d0

    def sample(carry):
        k0, kb = carry
        k0, s0 = jax.random.split(k0)
        batch = jax.tree.map(lambda x: x[jax.random.randint(s0, (n_d0,), 0, m)], d0)
        if n_b:
            kb, sb = jax.random.split(kb)
            rows, valid = buffer_rows(sb)
            fallback = jax.tree.map(lambda x: x[jax.random.randint(sb, (n_b,), 0, m)], d0)
            rows = jax.tree.map(lambda r, f: jnp.where(valid, r[:n_b], f), rows, fallback)
            batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), batch, rows)
        return (k0, kb), batch

    return sample


def look_ahead(student: Student, state: StudentState, norm, d0: Transition, key: jax.Array, n_updates: int,
               n_d0: int | None = None, buffer_rows=None, buffer_key: jax.Array | None = None,
               hyper: Any = None) -> StudentState:
    """pi' = DDPG(pi, D0): a copy of the student after ``n_updates`` steps with D0 as the new data.

    Args:
      student: the student's functions; ``state`` its state (pi).
      hyper: the look-ahead's hyperparameters (``student.hyper``, e.g. its
        learning rates); None = the student config's.
      d0: transitions of one candidate, flattened to (M, ...).
      key: raw key for the D0 minibatch indices (uniform with replacement).
      n_d0: D0 rows per minibatch; None = all (the paper's D0-only look-ahead).
      buffer_rows, buffer_key: the replay-buffer share of each minibatch, see
        :func:`lookahead_sampler`.

    Returns:
      The updated copy of ``state`` (for DDPG: actor, critic, targets,
      optimizer states); ``state`` itself is unchanged.
    """
    bs = student.config.batch_size
    sample = lookahead_sampler(d0, bs, bs if n_d0 is None else n_d0, buffer_rows)
    carry = (key, key if buffer_key is None else buffer_key)
    new, _, _ = student.update_many(state, norm, sample, carry, n_updates, hyper)
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


# ----------------------------------------------------------------------------- diagnostics
COSINE_EMA_DECAY = 0.9
DIAGNOSTIC_METRICS = ("teacher_grad_norm", "teacher_grad_log_std", "advantage_rms", "meta_reward_sd",
                      "grad_cosine_ema", "log_std_path", "log_std_shift", "net_path", "net_shift")
"""Keys of the per-iteration meta-gradient diagnostics (:func:`diagnose`)."""
SNAPSHOT_METRICS = ("teacher_log_std", "grad_cosine_ema", "log_std_path", "log_std_shift", "net_path", "net_shift")
"""Metrics that are a state at the end of a chunk (logged as the last value, not the chunk mean)."""


@struct.dataclass
class GradientDiagnostics:
    """Running quantities of the meta-gradient and the teacher's motion (one seed).

    Attributes:
      prev_grad: the previous iteration's teacher gradient (zeros before the first).
      cosine_ema: EMA (decay :data:`COSINE_EMA_DECAY`) of cos(g_t, g_{t-1}).
      log_std0: (A,) log sigma at the start.
      log_std_path: sum over iterations of mean_i |Delta log sigma_i|.
      net0: the teacher network f's initial parameters (empty dict without f).
      net_path: sum over iterations of ||Delta theta_f||_2.
    """

    prev_grad: Any
    cosine_ema: jax.Array
    log_std0: jax.Array
    log_std_path: jax.Array
    net0: Any
    net_path: jax.Array


def init_diagnostics(teacher: Teacher, params) -> GradientDiagnostics:
    z = jnp.zeros((), jnp.float32)
    return GradientDiagnostics(jax.tree.map(jnp.zeros_like, params), z, teacher.log_std(params), z,
                               params.get("net", {}), z)


def _norm(tree) -> jax.Array:
    return optax.global_norm(tree) if jax.tree.leaves(tree) else jnp.zeros((), jnp.float32)


def diagnose(teacher: Teacher, diag: GradientDiagnostics, old_params, new_params, grad, rewards: jax.Array,
             adv: jax.Array):
    """Updates the diagnostics after one teacher step; returns (diagnostics, metrics of scalars).

    Metrics: ``teacher_grad_norm`` ||g||_2; ``teacher_grad_log_std`` mean_i
    g_i of the log sigma parameter; ``advantage_rms`` sqrt(mean_k adv_k^2) (the
    spread of the candidates' advantages; |adv| for K = 1);
    ``meta_reward_sd`` sd_k R_k (0 for K = 1); ``grad_cosine_ema``;
    ``log_std_path`` cumulative mean_i |Delta log sigma_i|; ``log_std_shift``
    mean_i |log sigma_i - log sigma_i(0)|; ``net_path`` cumulative
    ||Delta theta_f||; ``net_shift`` ||theta_f - theta_f(0)|| (0 without f).
    A cosine with a zero vector counts as 0.
    """
    g_norm, p_norm = _norm(grad), _norm(diag.prev_grad)
    dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(diag.prev_grad)))
    cos = jnp.where(g_norm * p_norm > 0, dot / jnp.maximum(g_norm * p_norm, 1e-30), 0.0)
    cos_ema = COSINE_EMA_DECAY * diag.cosine_ema + (1.0 - COSINE_EMA_DECAY) * cos
    old_ls, new_ls = teacher.log_std(old_params), teacher.log_std(new_params)
    net_old, net_new = old_params.get("net", {}), new_params.get("net", {})
    new = GradientDiagnostics(
        prev_grad=grad, cosine_ema=cos_ema, log_std0=diag.log_std0,
        log_std_path=diag.log_std_path + jnp.mean(jnp.abs(new_ls - old_ls)), net0=diag.net0,
        net_path=diag.net_path + _norm(jax.tree.map(jnp.subtract, net_new, net_old)))
    metrics = dict(
        teacher_grad_norm=g_norm, teacher_grad_log_std=jnp.mean(grad["log_std"]),
        advantage_rms=jnp.sqrt(jnp.mean(jnp.square(adv))), meta_reward_sd=jnp.std(rewards),
        grad_cosine_ema=cos_ema, log_std_path=new.log_std_path,
        log_std_shift=jnp.mean(jnp.abs(new_ls - diag.log_std0)), net_path=new.net_path,
        net_shift=_norm(jax.tree.map(jnp.subtract, net_new, diag.net0)))
    return new, metrics


def zero_diagnostic_metrics() -> dict[str, jax.Array]:
    """The metrics of :func:`diagnose`, all zero (noise teachers, which learn nothing)."""
    return {k: jnp.zeros((), jnp.float32) for k in DIAGNOSTIC_METRICS}
