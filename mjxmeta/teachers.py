"""Teachers (exploration policies pi_e) and their log-probabilities.

All actions live in the normalized action space [-1, 1]^A. A teacher draws an
*unclipped* sample ``raw``; the env executes ``clip(raw, -1, 1)``; the
log-probability used by the meta-policy gradient is that of ``raw``
(docs/algorithm.md, "Teachers").

=================  ====================================  ============================
name               pi_e(a | s)                           learned by the meta-gradient
=================  ====================================  ============================
``gaussian``       N(mu(s), sigma^2), sigma fixed         nothing (baseline)
``ou``             mu(s) + x_t, x Ornstein-Uhlenbeck      nothing (baseline)
``meta_variance``  N(mu(s), diag sigma^2)                 log sigma
``meta``           N(f(s), diag sigma^2)                  f and log sigma
``meta_state``     N(f(s, x(s)), diag sigma^2)            f and log sigma
=================  ====================================  ============================

With ``residual`` (``meta``, ``meta_state``) the mean is f = mu(s) + g(.), mu
held fixed and g's output layer initialised to 0, so at init pi_e =
N(mu(s), sigma^2) exactly, as ``meta_variance``; g is what the meta-gradient
learns. Without it f is the paper's independent network, whose mean starts
near 0 whatever the student does.

mu is the student's actor (held fixed: stop-gradient). For ``meta_state`` the
extra features are x(s) = [mu(s), symlog Q(s, mu(s)), symlog delta_{t-1}],
where delta_{t-1} is the student's Bellman residual on the env's previous
transition (0 at an episode start); symlog(x) = sign(x) log(1 + |x|) keeps them
O(1) whatever the reward scale.

Ornstein-Uhlenbeck (Uhlenbeck & Ornstein 1930; Baselines discretisation):
x_{t+1} = x_t + theta (0 - x_t) dt + sigma sqrt(dt) eps, eps ~ N(0, I), reset
to 0 at every episode start.

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

from mjxmeta.config import META_TEACHERS, NET_TEACHERS, TeacherConfig
from mjxmeta.networks import FINAL_INIT_SCALE, GaussianMean

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


@struct.dataclass
class TeacherState:
    """Teacher parameters, optimizer state, per-env memory and meta-reward baseline.

    Attributes:
      params: ``{'log_std': (A,), 'net': flax params}`` (``net`` only for
        ``meta``/``meta_state``); ``log_std`` is the unconstrained parameter
        that :meth:`Teacher.log_std` maps into [min_log_std, max_log_std].
      opt_state: optax state of the meta-gradient step.
      memory: (num_envs_total, M) per-env recurrent quantity: OU noise x_t
        (M = A) for ``ou``, delta_{t-1} (M = 1) for ``meta_state``, zeros (M = 1)
        otherwise.
      baseline: scalar exponential moving average of the meta-reward (used when
        the baseline is ``ema``).
    """

    params: Any
    opt_state: Any
    memory: jax.Array
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
    """Exploration policy ``config.name`` for observations of size ``obs_size``."""

    def __init__(self, config: TeacherConfig, obs_size: int, action_size: int):
        self.config = config
        self.name = config.name
        self.obs_size = obs_size
        self.action_size = action_size
        self.is_meta = config.name in META_TEACHERS
        self.has_net = config.name in NET_TEACHERS
        self.residual = self.has_net and config.residual
        # meta: s (and mu(s) after it when residual); meta_state: [s, mu(s), symlog Q, symlog delta]
        self.input_size = {"meta_state": obs_size + action_size + 2,
                           "meta": obs_size + action_size * self.residual}.get(config.name, obs_size)
        final_scale = 0.0 if self.residual else FINAL_INIT_SCALE  # residual: g = 0 at init
        self.net = GaussianMean(action_size, tuple(config.hidden), final_scale) if self.has_net else None
        self.memory_size = action_size if config.name == "ou" else 1
        self.needs_td = config.name == "meta_state"

    def optimizer(self, lr) -> optax.GradientTransformation:
        """The meta-gradient step's optimizer: Adam with learning rate ``lr`` (a float or traced scalar;
        Adam's state does not depend on it); nothing for the noise teachers."""
        return optax.adam(lr) if self.is_meta else optax.set_to_zero()

    def hyper(self, config: TeacherConfig | None = None) -> TeacherHyper:
        """``config``'s (default ``self.config``) :class:`TeacherHyper`, computed on the host in float64
        and stored as float32 scalars."""
        c = self.config if config is None else config
        init = math.log(c.ou_sigma) if self.name == "ou" else self.log_std_param(math.log(c.init_std))
        return TeacherHyper(np.float32(c.lr), np.float32(init), np.float32(c.ou_sigma * math.sqrt(c.ou_dt)))

    # ---- state ----------------------------------------------------------
    def init(self, key: jax.Array, num_envs: int, hyper: TeacherHyper | None = None) -> TeacherState:
        """Initial teacher state for ``num_envs`` teacher environments (``hyper``: None = the config's)."""
        h = self.hyper() if hyper is None else hyper
        params: dict[str, Any] = {"log_std": jnp.full((self.action_size,), h.init_param, jnp.float32)}
        if self.has_net:
            g_in = self.obs_size if self.residual and self.name == "meta" else self.input_size
            params["net"] = self.net.init(key, jnp.zeros((1, g_in), jnp.float32))
        return TeacherState(params, self.optimizer(h.lr).init(params),
                            jnp.zeros((num_envs, self.memory_size), jnp.float32), jnp.zeros((), jnp.float32))

    def log_std(self, params) -> jax.Array:
        """(A,) log sigma in [min_log_std, max_log_std] from the parameter ``params['log_std']``.

        ``sigmoid`` bound: lo + (hi - lo) sigmoid(raw), smooth, gradient
        (hi - lo) s (1 - s) > 0 everywhere; ``clip`` bound: clip(raw, lo, hi),
        gradient 0 outside [lo, hi]. ``ou`` stores log ou_sigma unbounded.
        """
        lo, hi, raw = self.config.min_log_std, self.config.max_log_std, params["log_std"]
        if self.name == "ou":
            return raw
        if self.config.log_std_bound == "sigmoid":
            return lo + (hi - lo) * jax.nn.sigmoid(raw)
        return jnp.clip(raw, lo, hi)

    def log_std_param(self, log_std):
        """Inverse of :meth:`log_std` inside the bounds: the parameter value giving ``log_std``.

        Args:
          log_std: float or concrete array strictly inside
            (min_log_std, max_log_std) for the ``sigmoid`` bound.

        Returns:
          NumPy float32 array of ``log_std``'s shape.
        """
        if self.name == "ou" or self.config.log_std_bound == "clip":
            return np.asarray(log_std, np.float32)
        lo, hi = self.config.min_log_std, self.config.max_log_std
        p = (np.asarray(log_std, np.float64) - lo) / (hi - lo)
        return (np.log(p) - np.log1p(-p)).astype(np.float32)

    # ---- acting ---------------------------------------------------------
    def inputs(self, obs_n: jax.Array, mu: jax.Array, q_fn: Callable[[], jax.Array],
               memory: jax.Array) -> jax.Array:
        """The teacher's input u_t, stored with D0 so the log-prob can be recomputed.

        Args:
          obs_n: (B, obs_size) normalized observations.
          mu: (B, A) student actions mu(s).
          q_fn: thunk returning Q(s, mu(s)) of shape (B,), called for ``meta_state`` only.
          memory: (B, M).

        Returns:
          (B, input_size): mu(s) for the noise teachers and ``meta_variance``;
          s for ``meta`` ([s, mu(s)] when residual); [s, mu(s), symlog Q,
          symlog delta] for ``meta_state``.
        """
        if self.name == "meta":
            return jnp.concatenate([obs_n, mu], axis=-1) if self.residual else obs_n
        if self.name == "meta_state":
            return jnp.concatenate([obs_n, mu, symlog(q_fn())[..., None], symlog(memory)], axis=-1)
        return mu

    def mean(self, params, inputs: jax.Array) -> jax.Array:
        """Mean of pi_e given teacher inputs (…, input_size) -> (…, A).

        f(u) for ``meta``/``meta_state``; mu(s) + g(.) when residual (g reads
        s for ``meta``, all of u for ``meta_state``); mu(s) otherwise. mu(s)
        is read from u (``inputs[..., obs_size:obs_size + A]``, or all of u)
        and held fixed (stop-gradient).
        """
        if not self.has_net:
            return jax.lax.stop_gradient(inputs)  # mu(s), held fixed
        if not self.residual:
            return self.net.apply(params["net"], inputs)
        mu = jax.lax.stop_gradient(inputs[..., self.obs_size:self.obs_size + self.action_size])
        g_in = inputs[..., :self.obs_size] if self.name == "meta" else inputs
        return mu + self.net.apply(params["net"], g_in)

    def sample(self, params, memory: jax.Array, key: jax.Array, inputs: jax.Array, eps: jax.Array | None = None,
               hyper: TeacherHyper | None = None):
        """Draws the unclipped action.

        Args:
          eps: optional standard-normal noise (B, A) to use instead of drawing
            it from ``key`` (antithetic or common noise across candidates).
          hyper: the OU noise scale (``ou``); None = the config's.

        Returns:
          (raw_action (B, A), memory (B, M)).
        """
        if eps is None:
            eps = jax.random.normal(key, inputs.shape[:-1] + (self.action_size,), jnp.float32)
        mean = self.mean(params, inputs)
        if self.name == "ou":
            c, h = self.config, self.hyper() if hyper is None else hyper
            x = memory + c.ou_theta * (0.0 - memory) * c.ou_dt + h.ou_scale * eps
            return mean + x, x
        return mean + jnp.exp(self.log_std(params)) * eps, memory

    def observe(self, memory: jax.Array, done: jax.Array, td_fn: Callable[[], jax.Array]) -> jax.Array:
        """Updates per-env memory after a step; resets it where ``done`` (B,)."""
        if self.needs_td:
            memory = td_fn()[..., None]
        return jnp.where(done[..., None] > 0, jnp.zeros_like(memory), memory)

    def log_prob(self, params, inputs: jax.Array, raw_action: jax.Array) -> jax.Array:
        """log pi_e(raw_action | inputs), shape (…), differentiable in ``params``.

        For the Gaussian teachers this is the exact density of the sample. For
        ``ou`` (never meta-trained) it is an N(mu, sigma^2)
        placeholder, not the density of the OU step given x_{t-1}.
        """
        return gaussian_log_prob(raw_action, self.mean(params, inputs), self.log_std(params))
