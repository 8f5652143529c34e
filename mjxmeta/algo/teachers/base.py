"""The teacher interface and the Gaussian machinery every teacher shares.

A *teacher* is the exploration policy pi_e that generates D0 (Xu et al., ICML
2018, Algorithm 1; docs/algorithm.md, "Teachers"). All actions live in the
normalized action space [-1, 1]^A. A teacher draws an *unclipped* sample
``raw``; the env executes ``clip(raw, -1, 1)``; the log-probability used by the
meta-policy gradient is that of ``raw``.

:class:`Teacher` is the base class: pi_e(a | u) = N(mean(u), diag sigma^2) with
mean = the student's mu(s) (held fixed) and sigma = exp(:meth:`Teacher.log_std`).
A concrete teacher (one module each in this package, registered in
:data:`mjxmeta.algo.teachers.REGISTRY`) overrides what differs:

* :meth:`Teacher.inputs` / :meth:`Teacher.mean`: what pi_e reads and its mean;
* :meth:`Teacher.sample`: the noise (white, OU, colored, ...);
* :meth:`Teacher.fresh_memory`: the per-env memory at each episode start (at
  init and on every auto-reset, :meth:`Teacher.observe`); it may be random
  (a per-episode latent, a per-episode noise sequence) and depend on params;
* :meth:`Teacher.episode_log_prob`: a per-episode term of log P(D0) (the
  density of what :meth:`Teacher.fresh_memory` drew), counted at the first
  step of each episode only.

The per-env memory is a pytree whose leaves have the env axis first.

Gaussian log-density, diagonal (per env step, summed over action dims):
log N(a; m, sigma) = -1/2 sum_i [((a_i - m_i) / sigma_i)^2 + 2 log sigma_i + log 2 pi].
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from mjxmeta.algo.config import META_TEACHERS, MJX_EPISODE_LENGTH, NET_TEACHERS, TeacherConfig

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_prob(action: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """Diagonal Gaussian log-density summed over the last axis.

    Args:
      action, mean: (..., A); log_std: (A,) or (..., A).

    Returns:
      (...) log N(action; mean, exp(log_std)^2), in nats.
    """
    z = (action - mean) * jnp.exp(-log_std)
    return -0.5 * jnp.sum(z * z + 2.0 * log_std + LOG_2PI, axis=-1)


def symlog(x: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def where_done(done: jax.Array, fresh, memory):
    """Per env, ``fresh`` where ``done`` (B,) > 0 else ``memory``; pytrees with leaves (B, ...)."""
    return jax.tree.map(lambda f, m: jnp.where(done.reshape(done.shape + (1,) * (m.ndim - 1)) > 0, f, m),
                        fresh, memory)


@struct.dataclass
class TeacherState:
    """Teacher parameters, optimizer state, per-env memory and meta-reward baseline.

    Attributes:
      params: ``{'log_std': (A,), ...}`` (plus ``net`` for the teachers with a
        network f, and each teacher's own entries); ``log_std`` is the
        unconstrained parameter that :meth:`Teacher.log_std` maps into
        [min_log_std, max_log_std].
      opt_state: optax state of the meta-gradient step.
      memory: per-env recurrent quantity, a pytree with leaves
        (num_envs_total, ...): OU noise x_t (num_envs_total, A) for ``ou``,
        delta_{t-1} (num_envs_total, 1) for ``meta_state``, zeros
        (num_envs_total, 1) for the other paper teachers; see each teacher.
      baseline: scalar exponential moving average of the meta-reward (used when
        the baseline is ``ema``).
    """

    params: Any
    opt_state: Any
    memory: Any
    baseline: jax.Array


@struct.dataclass
class TeacherHyper:
    """The teacher's hyperparameters as arrays (float32 scalars, or traced with a run axis; ``Config.sweep``).

    Attributes:
      lr: Adam learning rate of the meta-gradient step (``teacher.lr``).
      init_param: the ``log_std`` parameter at init: :meth:`Teacher.log_std_param`
        of log ``init_std``, or log ``ou_sigma`` for ``ou``.
      ou_scale: ``ou_sigma * sqrt(ou_dt)``, the OU noise scale per step (``ou``).
    """

    lr: jax.Array
    init_param: jax.Array
    ou_scale: jax.Array


class Teacher:
    """Exploration policy N(mu(s), diag sigma^2) for observations of size ``obs_size``; the base of every teacher.

    Class attributes a concrete teacher sets: ``name`` (its entry in
    :data:`mjxmeta.algo.config.TEACHER_NAMES`) and ``needs_td`` (:meth:`observe`
    calls ``td_fn``). ``is_meta`` / ``has_net`` follow from the name
    (:data:`~mjxmeta.algo.config.META_TEACHERS`, :data:`~mjxmeta.algo.config.NET_TEACHERS`).

    Args:
      config: the teacher's config.
      obs_size, action_size: sizes of one observation and one action.
      episode_length: the env's time limit in steps (teachers with a
        per-episode noise sequence size it with this).
      student: the :class:`~mjxmeta.algo.students.base.Student` (read by the
        teachers that act through its actor: ``param_noise``).
    """

    name = ""
    needs_td = False

    def __init__(self, config: TeacherConfig, obs_size: int, action_size: int,
                 episode_length: int = MJX_EPISODE_LENGTH, student: Any = None):
        if config.name != self.name:
            raise ValueError(f"{type(self).__name__} is teacher {self.name!r}, config names {config.name!r}")
        self.config = config
        self.obs_size = obs_size
        self.action_size = action_size
        self.episode_length = episode_length
        self.is_meta = config.name in META_TEACHERS
        self.has_net = config.name in NET_TEACHERS
        self.residual = self.has_net and config.residual
        self.input_size = action_size  # u = mu(s)
        self.net = None
        self.memory_size = 1

    def optimizer(self, lr) -> optax.GradientTransformation:
        """The meta-gradient step's optimizer: Adam with learning rate ``lr`` (a float or traced scalar;
        Adam's state does not depend on it); nothing for the noise teachers."""
        return optax.adam(lr) if self.is_meta else optax.set_to_zero()

    def init_log_std(self, config: TeacherConfig) -> float:
        """The log sigma at init: log ``init_std``."""
        return math.log(config.init_std)

    def hyper(self, config: TeacherConfig | None = None) -> TeacherHyper:
        """``config``'s (default ``self.config``) :class:`TeacherHyper`, computed on the host in float64
        and stored as float32 scalars."""
        c = self.config if config is None else config
        init = self.log_std_param(self.init_log_std(c))
        return TeacherHyper(np.float32(c.lr), np.float32(init), np.float32(c.ou_sigma * math.sqrt(c.ou_dt)))

    # ---- state ----------------------------------------------------------
    def init_params(self, key: jax.Array, hyper: TeacherHyper) -> dict[str, Any]:
        """Initial params: ``{'log_std': (A,)}`` (teachers with more parameters extend this)."""
        return {"log_std": jnp.full((self.action_size,), hyper.init_param, jnp.float32)}

    def init(self, key: jax.Array, num_envs: int, hyper: TeacherHyper | None = None) -> TeacherState:
        """Initial teacher state for ``num_envs`` teacher environments (``hyper``: None = the config's).

        ``key`` initializes the params; ``fold_in(key, 1)`` draws the first
        episodes' memory (:meth:`fresh_memory`).
        """
        h = self.hyper() if hyper is None else hyper
        params = self.init_params(key, h)
        memory = self.fresh_memory(params, jax.random.fold_in(key, 1), num_envs)
        return TeacherState(params, self.optimizer(h.lr).init(params), memory, jnp.zeros((), jnp.float32))

    def bounded_log_std(self, raw: jax.Array) -> jax.Array:
        """raw parameter -> log sigma in [min_log_std, max_log_std].

        ``sigmoid`` bound: lo + (hi - lo) sigmoid(raw), smooth, gradient
        (hi - lo) s (1 - s) > 0 everywhere; ``clip`` bound: clip(raw, lo, hi),
        gradient 0 outside [lo, hi].
        """
        lo, hi = self.config.min_log_std, self.config.max_log_std
        if self.config.log_std_bound == "sigmoid":
            return lo + (hi - lo) * jax.nn.sigmoid(raw)
        return jnp.clip(raw, lo, hi)

    def log_std(self, params) -> jax.Array:
        """(A,) log sigma from the parameter ``params['log_std']`` (:meth:`bounded_log_std`)."""
        return self.bounded_log_std(params["log_std"])

    def log_std_param(self, log_std):
        """Inverse of :meth:`log_std` inside the bounds: the parameter value giving ``log_std``.

        Args:
          log_std: float or concrete array strictly inside
            (min_log_std, max_log_std) for the ``sigmoid`` bound.

        Returns:
          NumPy float32 array of ``log_std``'s shape.
        """
        if self.config.log_std_bound == "clip":
            return np.asarray(log_std, np.float32)
        lo, hi = self.config.min_log_std, self.config.max_log_std
        p = (np.asarray(log_std, np.float64) - lo) / (hi - lo)
        return (np.log(p) - np.log1p(-p)).astype(np.float32)

    def fresh_memory(self, params, key: jax.Array, n: int):
        """The memory of ``n`` envs at an episode start (``key`` raw (2,); unused here): zeros (n, memory_size)."""
        return jnp.zeros((n, self.memory_size), jnp.float32)

    # ---- acting ---------------------------------------------------------
    def inputs(self, obs_n: jax.Array, mu: jax.Array, q_fn: Callable[[], jax.Array], memory,
               actor_fn: Callable[[Any], jax.Array] | None = None) -> jax.Array:
        """The teacher's input u_t, stored with D0 so the log-prob can be recomputed.

        Args:
          obs_n: (B, obs_size) normalized observations.
          mu: (B, A) student actions mu(s).
          q_fn: thunk returning Q(s, mu(s)) of shape (B,) (read by ``meta_state`` only).
          memory: the envs' memory (leaves (B, ...)).
          actor_fn: ``delta -> (B, A)``, the student's actions with actor
            parameters theta + delta_b in env b (``delta`` leaves (B, ...) of
            the actor's structure; read by ``param_noise`` only).

        Returns:
          (B, input_size); here mu(s).
        """
        return mu

    def mean(self, params, inputs: jax.Array) -> jax.Array:
        """Mean of pi_e given teacher inputs (…, input_size) -> (…, A); here mu(s), held fixed (stop-gradient)."""
        return jax.lax.stop_gradient(inputs)

    def held_action(self, inputs: jax.Array) -> jax.Array | None:
        """The part of :meth:`mean` that is the student's mu(s) held fixed (stop-gradient): (…, A), or None.

        The ``pathwise`` estimator's ``full`` mode adds ``h - stop_gradient(h)`` (zero in value) to the
        action so that the gradient through s_t also reaches mu(s_t) (:mod:`mjxmeta.algo.pathwise`). Here
        the whole mean.
        """
        return inputs

    def sample(self, params, memory, key: jax.Array, inputs: jax.Array, eps: jax.Array | None = None,
               hyper: TeacherHyper | None = None):
        """Draws the unclipped action mean(u) + sigma eps.

        Args:
          eps: optional standard-normal noise (B, A) to use instead of drawing
            it from ``key`` (antithetic or common noise across candidates).
          hyper: the teacher's hyperparameters (OU scale); None = the config's.

        Returns:
          (raw_action (B, A), memory).
        """
        if eps is None:
            eps = self.standard_normal(key, inputs)
        return self.mean(params, inputs) + jnp.exp(self.log_std(params)) * eps, memory

    def standard_normal(self, key: jax.Array, inputs: jax.Array) -> jax.Array:
        """N(0, I) noise of shape inputs.shape[:-1] + (A,)."""
        return jax.random.normal(key, inputs.shape[:-1] + (self.action_size,), jnp.float32)

    def step_memory(self, memory, td_fn: Callable[[], jax.Array]):
        """The memory after a step, before episode resets (here unchanged)."""
        return memory

    def observe(self, params, memory, done: jax.Array, td_fn: Callable[[], jax.Array], key: jax.Array):
        """Updates per-env memory after a step (:meth:`step_memory`); where ``done`` (B,) an episode
        starts, so the env's memory is replaced by :meth:`fresh_memory` (drawn with ``key``)."""
        memory = self.step_memory(memory, td_fn)
        return where_done(done, self.fresh_memory(params, key, done.shape[0]), memory)

    # ---- between iterations ---------------------------------------------
    adapts = False  # whether the trainer calls :meth:`adapt` every iteration

    def adapt(self, state: TeacherState, actor, mu_fn: Callable[[Any, jax.Array], jax.Array], obs: jax.Array,
              key: jax.Array) -> TeacherState:
        """Adapts the teacher to the student once per iteration, after D0 enters the replay buffer
        (``param_noise``); here unchanged (:attr:`adapts` is False, the trainer does not call it).

        Args:
          actor: the student's actor parameters; ``mu_fn(actor, obs)`` its actions.
          obs: (M, obs_size) raw observations drawn from the replay buffer.
          key: raw key (2,).
        """
        return state

    # ---- log P(D0) ------------------------------------------------------
    def episode_log_prob(self, params, inputs: jax.Array) -> jax.Array | None:
        """Per-episode term of log P(D0) at each step, nonzero only at an episode's first step: (…), or
        None when the teacher draws nothing per episode that depends on its params (here)."""
        return None

    def log_prob(self, params, inputs: jax.Array, raw_action: jax.Array) -> jax.Array:
        """log pi_e(raw_action | inputs) (+ :meth:`episode_log_prob`), shape (…), differentiable in ``params``.

        For the Gaussian teachers this is the exact density of the sample. For
        the teachers never meta-trained (``ou``, ``pink``) it is an
        N(mu, sigma^2) placeholder, not the density of their correlated noise.
        """
        logp = gaussian_log_prob(raw_action, self.mean(params, inputs), self.log_std(params))
        episode = self.episode_log_prob(params, inputs)
        return logp if episode is None else logp + episode
