"""DDPG student (Lillicrap et al., ICLR 2016), Baselines-2017 flavour.

Pure functions over :class:`DDPGState`; implements the
:class:`~mjxmeta.algo.students.base.Student` interface (``act``, ``q`` and
``td_error`` take the whole state). Observations are normalized with running
statistics (Brax's ``running_statistics``), clipped to +-5 as in Baselines,
before entering actor and critic.

Equations (Lillicrap et al. 2016, Algorithm 1):

* critic target  y = r + gamma * (1 - terminated) * Q'(s', mu'(s'))
* critic loss    L_Q = mean (Q(s, a) - y)^2 + critic_l2 * sum_{hidden kernels} w^2 / 2
* actor loss     L_mu = -mean Q(s, mu(s))
* targets        theta' <- (1 - tau) theta' + tau theta   (after every update)

Actor and critic gradients are both taken at the pre-update parameters, as in
Baselines (one ``sess.run`` computes both).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from mjxmeta.algo.config import StudentConfig
from mjxmeta.algo.networks import Actor, Critic, l2_penalty
from mjxmeta.algo.replay import Transition
from mjxmeta.algo.students.base import OBS_CLIP, init_normalizer, normalize, update_normalizer

__all__ = ["DDPG", "DDPGHyper", "DDPGState", "OBS_CLIP", "adam_step", "init_normalizer", "polyak",
           "update_normalizer"]

Params = Any


def adam_step(grads: Params, opt_state: optax.OptState, params: Params, lr: jax.Array
              ) -> tuple[Params, optax.OptState]:
    """One Adam step with learning rate ``lr`` (possibly traced): (new params, new optimizer state)."""
    updates, opt_state = optax.adam(lr).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def polyak(target: Params, online: Params, tau: jax.Array) -> Params:
    """Target-network update theta' <- (1 - tau) theta' + tau theta, leaf by leaf."""
    return jax.tree.map(lambda t, s: (1.0 - tau) * t + tau * s, target, online)


@struct.dataclass
class DDPGState:
    """Everything a DDPG update reads and writes."""

    actor: Params
    critic: Params
    target_actor: Params
    target_critic: Params
    actor_opt: optax.OptState
    critic_opt: optax.OptState


@struct.dataclass
class DDPGHyper:
    """The DDPG hyperparameters an update reads as arrays (float32 scalars, or traced with a run axis).

    Attributes:
      actor_lr, critic_lr: Adam learning rates of actor and critic.
      tau: Polyak coefficient of the target networks.
    """

    actor_lr: jax.Array
    critic_lr: jax.Array
    tau: jax.Array


class DDPG:
    """DDPG for observation size ``obs_size`` and action size ``action_size``.

    Actions live in [-1, 1]^action_size. All methods are pure.
    """

    state_type = DDPGState

    def __init__(self, config: StudentConfig, obs_size: int, action_size: int):
        self.config = config
        self.obs_size = obs_size
        self.action_size = action_size
        self.actor_net = Actor(action_size, tuple(config.hidden), config.layer_norm, config.output_init)
        self.critic_net = Critic(tuple(config.hidden), config.layer_norm, config.action_layer, config.output_init)
        # Adam's state does not depend on the learning rate: these give the state layout (and the
        # config's rates); every update builds Adam with the rates of its ``hyper``.
        self.actor_optim = optax.adam(config.actor_lr)
        self.critic_optim = optax.adam(config.critic_lr)

    def hyper(self, config: StudentConfig | None = None) -> DDPGHyper:
        """``config``'s (default ``self.config``) learning rates and tau as float32 scalars (host)."""
        c = self.config if config is None else config
        return DDPGHyper(np.float32(c.actor_lr), np.float32(c.critic_lr), np.float32(c.tau))

    # ---- construction -------------------------------------------------
    def init(self, key: jax.Array) -> DDPGState:
        """Fresh actor/critic, targets equal to them, Adam states at zero."""
        k_a, k_c = jax.random.split(key)
        obs = jnp.zeros((1, self.obs_size), jnp.float32)
        act = jnp.zeros((1, self.action_size), jnp.float32)
        actor = self.actor_net.init(k_a, obs)
        critic = self.critic_net.init(k_c, obs, act)
        return DDPGState(actor, critic, actor, critic,
                         self.actor_optim.init(actor), self.critic_optim.init(critic))

    # ---- forward passes -----------------------------------------------
    def normalize(self, norm, obs: jax.Array) -> jax.Array:
        """(…, obs_size) raw -> normalized and clipped to +-5 (identity if disabled)."""
        return normalize(norm, obs, self.config.normalize_observations)

    def mu(self, actor: Params, norm, obs: jax.Array) -> jax.Array:
        """mu(s; actor): raw obs (…, obs_size) -> action (…, action_size) in [-1, 1]."""
        return self.actor_net.apply(actor, self.normalize(norm, obs))

    def q_value(self, critic: Params, norm, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Q(s, a; critic): (…, obs_size), (…, action_size) -> (…)."""
        return self.critic_net.apply(critic, self.normalize(norm, obs), action)

    def actor(self, state: DDPGState) -> Params:
        """Student interface: the online actor's parameters."""
        return state.actor

    def act(self, state: DDPGState, norm, obs: jax.Array) -> jax.Array:
        """Student interface: mu(s) of the online actor, (…, obs_size) -> (…, action_size)."""
        return self.mu(state.actor, norm, obs)

    def q(self, state: DDPGState, norm, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Student interface: Q(s, a) of the online critic -> (…)."""
        return self.q_value(state.critic, norm, obs, action)

    # ---- losses ---------------------------------------------------------
    def critic_target(self, state: DDPGState, norm, batch: Transition) -> jax.Array:
        """y = r + gamma (1 - terminated) Q'(s', mu'(s')); shape (B,)."""
        next_a = self.mu(state.target_actor, norm, batch.next_obs)
        next_q = self.q_value(state.target_critic, norm, batch.next_obs, next_a)
        return batch.reward + self.config.gamma * (1.0 - batch.terminated) * next_q

    def critic_loss(self, critic: Params, state: DDPGState, norm, batch: Transition):
        """Mean squared TD error plus L2 on hidden kernels; returns (loss, q mean).

        The target y reads the target networks and the batch, not ``critic``, so it needs no
        stop-gradient for this loss's gradient; leaving it out lets a meta-gradient through the update
        (``teacher.estimator = pathwise``) see how the batch's r and s' move the critic.
        """
        y = self.critic_target(state, norm, batch)
        q = self.q_value(critic, norm, batch.obs, batch.action)
        loss = jnp.mean(jnp.square(q - y))
        if self.config.critic_l2 > 0:
            loss = loss + self.config.critic_l2 * l2_penalty(critic)
        return loss, jnp.mean(q)

    def actor_loss(self, actor: Params, state: DDPGState, norm, batch: Transition) -> jax.Array:
        """-mean Q(s, mu(s)) under the current critic."""
        a = self.mu(actor, norm, batch.obs)
        return -jnp.mean(self.q(state, norm, batch.obs, a))

    def td_error(self, state: DDPGState, norm, tr: Transition) -> jax.Array:
        """Bellman residual y - Q(s, a) of transitions (…)."""
        return self.critic_target(state, norm, tr) - self.q(state, norm, tr.obs, tr.action)

    # ---- one update -----------------------------------------------------
    def update(self, state: DDPGState, norm, batch: Transition, hyper: DDPGHyper | None = None
               ) -> tuple[DDPGState, dict]:
        """One actor and one critic Adam step on ``batch`` (B, ...), then Polyak targets.

        ``hyper``: learning rates and tau (:meth:`hyper`; None = the config's).
        """
        h = self.hyper() if hyper is None else hyper
        (c_loss, q_mean), c_grads = jax.value_and_grad(self.critic_loss, has_aux=True)(
            state.critic, state, norm, batch)
        a_loss, a_grads = jax.value_and_grad(self.actor_loss)(state.actor, state, norm, batch)
        critic, critic_opt = adam_step(c_grads, state.critic_opt, state.critic, h.critic_lr)
        actor, actor_opt = adam_step(a_grads, state.actor_opt, state.actor, h.actor_lr)
        new = DDPGState(actor, critic, polyak(state.target_actor, actor, h.tau),
                        polyak(state.target_critic, critic, h.tau), actor_opt, critic_opt)
        return new, {"critic_loss": c_loss, "actor_loss": a_loss, "q": q_mean}

    def update_many(self, state: DDPGState, norm, sample_fn, carry, n: int, hyper: DDPGHyper | None = None):
        """``n`` updates in a ``lax.scan``; ``sample_fn(carry) -> (carry, batch)``; ``hyper`` as in :meth:`update`.

        Returns:
          (state, carry, metrics averaged over the n updates). With n == 0 the
          metrics are zeros.
        """
        zeros = {"critic_loss": jnp.zeros(()), "actor_loss": jnp.zeros(()), "q": jnp.zeros(())}
        if n == 0:
            return state, carry, zeros

        def body(c, _):
            s, sc = c
            sc, batch = sample_fn(sc)
            s, m = self.update(s, norm, batch, hyper)
            return (s, sc), m

        (state, carry), metrics = jax.lax.scan(body, (state, carry), None, length=n)
        return state, carry, jax.tree.map(jnp.mean, metrics)
