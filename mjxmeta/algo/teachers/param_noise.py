"""``param_noise``: adaptive parameter-space noise (Plappert, Houthooft, Dhariwal, Sidor, Chen, Chen,
Asfour, Abbeel, Andrychowicz, *Parameter Space Noise for Exploration*, ICLR 2018; OpenAI Baselines
DDPG ``--noise-type adaptive-param_0.2``).

A perturbed copy of the student's actor acts, deterministically:

    a = mu(s; theta + delta),   delta ~ N(0, sigma_p^2 I) on every actor weight except LayerNorm's,

with delta drawn per env at each episode start (at init and on every auto-reset,
as Baselines perturbs at each episode's reset) and theta the student's current
actor (Baselines perturbs a snapshot of theta taken at the reset; here the
perturbation rides on the actor as it learns within the episode). Once per
iteration, after D0 enters the replay buffer B (Baselines: once per cycle of
50 training steps, before them), sigma_p adapts so that the perturbation's
effect on the actions tracks delta_target (section 3.1 of the paper):

    d = sqrt(mean over M states s ~ B and action dims of (mu(s; theta) - mu(s; theta + delta'))^2),
    sigma_p <- sigma_p alpha   if d < delta_target,   sigma_p / alpha   otherwise,

with delta' a fresh perturbation of scale sigma_p, M the student's batch size,
alpha = ``teacher.param_noise_alpha`` (1.01), delta_target =
``teacher.param_noise_delta`` (0.2) and sigma_p = ``teacher.init_std`` (0.2) at
the start. ``params['log_std']`` (A,) holds log sigma_p in every entry
(unbounded); it is never meta-trained.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mjxmeta.algo.config import TeacherConfig
from mjxmeta.algo.teachers.base import Teacher, TeacherState
from mjxmeta.algo.teachers.noise import UnboundedLogStd


def action_distance(mu_fn, actor, perturbed, obs: jax.Array) -> jax.Array:
    """d = sqrt(mean (mu(s; actor) - mu(s; perturbed))^2) over the states ``obs`` (M, obs_size) and action dims."""
    return jnp.sqrt(jnp.mean(jnp.square(mu_fn(actor, obs) - mu_fn(perturbed, obs))))


def adapted_log_std(log_std: jax.Array, distance: jax.Array, delta: float, alpha: float) -> jax.Array:
    """log sigma_p + log alpha if ``distance`` < ``delta`` else log sigma_p - log alpha (same shape)."""
    return log_std + jnp.where(distance < delta, math.log(alpha), -math.log(alpha)).astype(log_std.dtype)


class ParamNoise(UnboundedLogStd, Teacher):
    """``param_noise`` for a student whose actor parameters have the structure of ``student.actor(state)``.

    Memory: delta, the actor's structure with leaves (B, ...) (zero on LayerNorm parameters).

    Raises:
      ValueError: no ``student`` given.
    """

    name = "param_noise"
    adapts = True

    def __init__(self, config: TeacherConfig, obs_size: int, action_size: int, student=None, **kw):
        super().__init__(config, obs_size, action_size, student=student, **kw)
        if student is None:
            raise ValueError("the param_noise teacher perturbs the student's actor: pass student=")
        self.actor_shapes = jax.eval_shape(lambda k: student.actor(student.init(k)), jax.random.PRNGKey(0))
        # Baselines perturbs every actor variable but LayerNorm's
        self.perturbed_leaf = jax.tree_util.tree_map_with_path(
            lambda path, _: not any("LayerNorm" in str(getattr(p, "key", p)) for p in path), self.actor_shapes)
        self.memory_size = None  # a pytree, see the class docstring

    def perturbation(self, log_std: jax.Array, key: jax.Array, lead: tuple[int, ...] = ()):
        """delta ~ N(0, sigma_p^2) on the perturbed leaves, 0 on the others; leaves lead + the actor's shapes."""
        leaves, treedef = jax.tree.flatten(self.actor_shapes)
        keys = jax.random.split(key, len(leaves))
        sigma = jnp.exp(log_std[0])
        out = [sigma * jax.random.normal(k, lead + x.shape, x.dtype) if on else jnp.zeros(lead + x.shape, x.dtype)
               for k, x, on in zip(keys, leaves, jax.tree.leaves(self.perturbed_leaf))]
        return jax.tree.unflatten(treedef, out)

    def fresh_memory(self, params, key, n):
        """delta for n envs at the current sigma_p."""
        return self.perturbation(self.log_std(params), key, (n,))

    def inputs(self, obs_n, mu, q_fn, memory, actor_fn=None):
        """u = mu(s; theta + delta_b) per env b: (B, A)."""
        return actor_fn(memory)

    def sample(self, params, memory, key, inputs, eps=None, hyper=None):
        """The perturbed actor's action itself (no action noise; ``key``, ``eps`` unused)."""
        return inputs, memory

    def adapt(self, state: TeacherState, actor, mu_fn, obs, key) -> TeacherState:
        """One step of the adaptation rule (module docstring) on the states ``obs`` (M, obs_size)."""
        log_std = self.log_std(state.params)
        perturbed = jax.tree.map(jnp.add, actor, self.perturbation(log_std, key))
        d = action_distance(mu_fn, actor, perturbed, obs)
        c = self.config
        return state.replace(params=dict(state.params, log_std=adapted_log_std(
            log_std, d, c.param_noise_delta, c.param_noise_alpha)))


__all__ = ["ParamNoise", "action_distance", "adapted_log_std"]
