"""The paper's learned teachers (Xu et al., ICML 2018): ``meta_variance``, ``meta``, ``meta_state``.

=================  ====================================  ============================
name               pi_e(a | s)                           learned by the meta-gradient
=================  ====================================  ============================
``meta_variance``  N(mu(s), diag sigma^2)                 log sigma
``meta``           N(f(s), diag sigma^2)                  f and log sigma
``meta_state``     N(f(s, x(s)), diag sigma^2)            f and log sigma
=================  ====================================  ============================

With ``residual`` the mean is f = mu(s) + g(.), mu held fixed and g's output
layer initialised to 0, so at init pi_e = N(mu(s), sigma^2) exactly, as
``meta_variance``; g is what the meta-gradient learns. Without it f is the
paper's independent network, whose mean starts near 0 whatever the student does.

For ``meta_state`` the extra features are x(s) = [mu(s), symlog Q(s, mu(s)),
symlog delta_{t-1}], where delta_{t-1} is the student's Bellman residual on the
env's previous transition (0 at an episode start); symlog(x) = sign(x)
log(1 + |x|) keeps them O(1) whatever the reward scale.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from mjxmeta.algo.config import TeacherConfig
from mjxmeta.algo.networks import FINAL_INIT_SCALE, GaussianMean
from mjxmeta.algo.teachers.base import Teacher, TeacherHyper, symlog


class MetaVariance(Teacher):
    """``meta_variance``: N(mu(s), diag sigma^2), log sigma learned."""

    name = "meta_variance"


class NetTeacher(Teacher):
    """A teacher whose mean is a network: f(net_input(u)), or mu(s) + g(net_input(u)) when residual.

    Subclasses set ``input_size`` and ``net_input_size`` and define
    :meth:`net_input` (what f / g reads of u) and :meth:`student_action` (mu(s) in u).
    """

    def __init__(self, config: TeacherConfig, obs_size: int, action_size: int, **kw):
        super().__init__(config, obs_size, action_size, **kw)
        final_scale = 0.0 if self.residual else FINAL_INIT_SCALE  # residual: g = 0 at init
        self.net = GaussianMean(action_size, tuple(config.hidden), final_scale)

    def init_params(self, key: jax.Array, hyper: TeacherHyper) -> dict[str, Any]:
        params = super().init_params(key, hyper)
        params["net"] = self.net.init(key, jnp.zeros((1, self.net_input_size), jnp.float32))
        return params

    def net_input(self, inputs: jax.Array) -> jax.Array:
        return inputs

    def student_action(self, inputs: jax.Array) -> jax.Array:
        """mu(s) as stored in u: ``inputs[..., obs_size:obs_size + A]``."""
        return inputs[..., self.obs_size:self.obs_size + self.action_size]

    def mean(self, params, inputs: jax.Array) -> jax.Array:
        """f(u), or mu(s) + g(u) when residual (mu held fixed: stop-gradient): (…, input_size) -> (…, A)."""
        if not self.residual:
            return self.net.apply(params["net"], self.net_input(inputs))
        mu = jax.lax.stop_gradient(self.student_action(inputs))
        return mu + self.net.apply(params["net"], self.net_input(inputs))

    def held_action(self, inputs: jax.Array) -> jax.Array | None:
        """mu(s) when residual (the fixed part of the mean), else None (f reads only the net input)."""
        return self.student_action(inputs) if self.residual else None


class Meta(NetTeacher):
    """``meta``: u = s ([s, mu(s)] when residual); f / g reads s."""

    name = "meta"

    def __init__(self, config: TeacherConfig, obs_size: int, action_size: int, **kw):
        super().__init__(config, obs_size, action_size, **kw)
        self.input_size = obs_size + action_size * self.residual
        self.net_input_size = obs_size

    def inputs(self, obs_n, mu, q_fn, memory, actor_fn=None):
        return jnp.concatenate([obs_n, mu], axis=-1) if self.residual else obs_n

    def net_input(self, inputs):
        return inputs[..., :self.obs_size] if self.residual else inputs


class MetaState(NetTeacher):
    """``meta_state``: u = [s, mu(s), symlog Q, symlog delta_{t-1}], all read by f / g; memory (B, 1) = delta."""

    name = "meta_state"
    needs_td = True

    def __init__(self, config: TeacherConfig, obs_size: int, action_size: int, **kw):
        super().__init__(config, obs_size, action_size, **kw)
        self.input_size = self.net_input_size = obs_size + action_size + 2

    def inputs(self, obs_n, mu, q_fn, memory, actor_fn=None):
        return jnp.concatenate([obs_n, mu, symlog(q_fn())[..., None], symlog(memory)], axis=-1)

    def step_memory(self, memory, td_fn):
        """delta_t, the student's Bellman residual on this step's transition: (B, 1)."""
        return td_fn()[..., None]
