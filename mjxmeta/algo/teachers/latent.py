"""``meta_latent``: a learned teacher with a per-episode latent, after MAESN (Gupta, Mendonca, Liu, Abbeel,
Levine, *Meta-Reinforcement Learning of Structured Exploration Strategies*, NeurIPS 2018).

    z ~ N(m, diag v)             drawn at each episode start, held through the episode (per env)
    pi_e(a | s, z) = N(f(s, z), diag sigma^2)

m, log v (through the log-sigma bound: log v = 2 log std_z), f and log sigma are
learned by the meta-policy gradient (eq. 2). z is a random choice of the
teacher like the actions, so log P(D0) holds each episode's log N(z; m, v)
once, at the episode's first step: the teacher input u stores z and an
episode-start flag, and

    log pi_e(a_t, z | u_t) = log N(a_t; f(s_t, z), sigma^2) + start_t log N(z; m, v).

z enters f as an input (no gradient through the sample): the gradient in m is
the score (z - m) / v of the episodes that start inside D0. An episode that
started in an earlier iteration keeps its z, which is not counted again (one
that starts at an iteration's last step counts its z in the next D0, drawn
before that iteration's teacher step: a lag of one meta-step). With
``residual`` the mean is mu(s) + g(s, z) with g = 0 at init. At init m = 0,
v = 1 (MAESN's prior N(0, I)); MAESN's KL term to that prior is not used.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from mjxmeta.algo.config import TeacherConfig
from mjxmeta.algo.teachers.base import TeacherHyper, gaussian_log_prob
from mjxmeta.algo.teachers.learned import NetTeacher

LATENT_INIT_STD = 1.0  # z ~ N(0, I) at init


class MetaLatent(NetTeacher):
    """``meta_latent``: u = [s, z, mu(s), start] (size obs + Z + A + 1); f / g reads [s, z].

    Memory: (B, Z + 1) = [z, start], start = 1 until the episode's first step.
    Params: ``log_std`` (A,), ``net``, ``latent_mean`` m (Z,), ``latent_log_std`` (Z,)
    (bounded like ``log_std``).
    """

    name = "meta_latent"

    def __init__(self, config: TeacherConfig, obs_size: int, action_size: int, **kw):
        super().__init__(config, obs_size, action_size, **kw)
        z = self.latent_size = config.latent_size
        self.input_size = obs_size + z + action_size + 1
        self.net_input_size = obs_size + z
        self.memory_size = z + 1

    def init_params(self, key: jax.Array, hyper: TeacherHyper) -> dict[str, Any]:
        params = super().init_params(key, hyper)
        params["latent_mean"] = jnp.zeros((self.latent_size,), jnp.float32)
        params["latent_log_std"] = jnp.full((self.latent_size,), self.log_std_param(math.log(LATENT_INIT_STD)),
                                            jnp.float32)
        return params

    def latent_log_std(self, params) -> jax.Array:
        """(Z,) log std of z (so log v = 2 x this)."""
        return self.bounded_log_std(params["latent_log_std"])

    def fresh_memory(self, params, key, n):
        """[z, 1] with z ~ N(m, v) per env: (n, Z + 1)."""
        eps = jax.random.normal(key, (n, self.latent_size), jnp.float32)
        z = params["latent_mean"] + jnp.exp(self.latent_log_std(params)) * eps
        return jnp.concatenate([z, jnp.ones((n, 1), jnp.float32)], axis=-1)

    def inputs(self, obs_n, mu, q_fn, memory, actor_fn=None):
        z = self.latent_size
        return jnp.concatenate([obs_n, memory[..., :z], mu, memory[..., z:]], axis=-1)

    def net_input(self, inputs):
        return inputs[..., :self.obs_size + self.latent_size]

    def student_action(self, inputs):
        start = self.obs_size + self.latent_size
        return inputs[..., start:start + self.action_size]

    def sample(self, params, memory, key, inputs, eps=None, hyper=None):
        """As the base class; the episode-start flag is cleared after the step."""
        raw, memory = super().sample(params, memory, key, inputs, eps, hyper)
        return raw, memory.at[..., self.latent_size].set(0.0)

    def episode_log_prob(self, params, inputs):
        """start_t log N(z; m, v): (…); z = ``inputs[..., obs_size:obs_size + Z]``, start = ``inputs[..., -1]``."""
        z = inputs[..., self.obs_size:self.obs_size + self.latent_size]
        return inputs[..., -1] * gaussian_log_prob(z, params["latent_mean"], self.latent_log_std(params))
