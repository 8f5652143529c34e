"""TD3 student (Fujimoto, van Hoof, Meger, ICML 2018, Algorithm 1): DDPG with three changes.

Pure functions over :class:`TD3State`; implements the
:class:`~mjxmeta.algo.students.base.Student` interface and reuses DDPG's networks,
observation normalization, hyperparameters (:class:`~mjxmeta.algo.students.ddpg.DDPGHyper`:
actor_lr, critic_lr, tau, so sweeps vmap over them as for DDPG) and update loop
(:meth:`DDPG.update_many <mjxmeta.algo.students.ddpg.DDPG.update_many>`).

Equations (Fujimoto et al. 2018, Algorithm 1; docs/algorithm.md, "Students"),
for update number t = 1, 2, ... of this student:

* twin critics   Q_1, Q_2, stored stacked on a leading axis of size N = 2
  (``critics``; one ``vmap`` over the stack, one Adam state over all: Adam is
  elementwise, so these are N independent optimizers);
* target action  a~ = clip(mu'(s') + clip(eps, -c, c), -1, 1),
  eps ~ N(0, sigma~^2) per action dimension (target-policy smoothing;
  sigma~ = ``policy_noise``, c = ``noise_clip``, normalized action units);
* critic target  y = r + gamma (1 - terminated) min(Q'_1(s', a~), Q'_2(s', a~));
* critic loss    L_Q = sum_i mean (Q_i(s, a) - y)^2 + critic_l2 * sum_{hidden kernels of both} w^2 / 2
  (every update);
* delayed steps  if t mod d == 0 (d = ``policy_delay``): one actor Adam step on
  L_mu = -mean Q_1(s, mu(s)) under the critics just updated, then all targets
  theta' <- (1 - tau) theta' + tau theta (actor and both critics). On the
  other updates actor, its Adam state and all targets stay bit for bit.

REDQ-style ensembles (Chen, Wang, Zhou, Ross, ICLR 2021, Algorithm 1), with
``critics`` N > 2 and ``critic_subset`` M > 0: the min in the critic target
runs over a subset of M target critics drawn uniformly without replacement
per update (from ``fold_in(fold_in(key, t - 1), 1)``), every critic regresses
on that one target, and the actor ascends the mean of all N critics,
L_mu = -mean_s mean_i Q_i(s, mu(s)). With M = 0 the min runs over all N and
the actor reads Q_1 (TD3; N = 2 is Fujimoto et al.'s).

The counter t (``TD3State.step``) and the key of the smoothing noise
(``TD3State.key``; the noise of update t is drawn from ``fold_in(key, t - 1)``)
live in the state, so a resumed run continues the same sequence and a
look-ahead copy pi' continues the delay phase and the noise of the student it
copies. The actor gradient is computed on every update (as DDPG does) and
discarded between delayed steps: under ``vmap`` over seeds a ``lax.cond``
would compute both branches anyway.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from mjxmeta.algo.networks import l2_penalty
from mjxmeta.algo.replay import Transition
from mjxmeta.algo.students.ddpg import DDPG, DDPGHyper, DDPGState, adam_step, polyak

__all__ = ["TD3", "TD3State"]

Params = Any


@struct.dataclass
class TD3State(DDPGState):
    """Everything a TD3 update reads and writes: DDPG's fields, with ``critic`` and ``target_critic``
    (and ``critic_opt``) holding the twin critics stacked on a leading axis of size 2 (Q_1 at index 0,
    Q_2 at index 1), plus:

    Attributes:
      key: raw PRNG key (2,) uint32 of the target-policy smoothing noise.
      step: int32 scalar, critic updates made so far (t - 1 during update t).
    """

    key: jax.Array
    step: jax.Array


def first_critic(critic: Params) -> Params:
    """Q_1's parameters out of the stacked twin parameters."""
    return jax.tree.map(lambda x: x[0], critic)


class TD3(DDPG):
    """TD3 for observation size ``obs_size`` and action size ``action_size``; actions in [-1, 1]^action_size.

    ``config.policy_noise``, ``config.noise_clip`` (normalized action units)
    and ``config.policy_delay`` are read as compile-time constants.
    """

    state_type = TD3State

    # ---- construction -------------------------------------------------
    def init(self, key: jax.Array) -> TD3State:
        """Fresh actor and two independently initialised critics, targets equal to them, Adam at zero, t = 0."""
        k_a, k_c, k_noise = jax.random.split(key, 3)
        obs = jnp.zeros((1, self.obs_size), jnp.float32)
        act = jnp.zeros((1, self.action_size), jnp.float32)
        actor = self.actor_net.init(k_a, obs)
        critic = jax.vmap(lambda k: self.critic_net.init(k, obs, act))(jax.random.split(k_c, self.config.critics))
        return TD3State(actor, critic, actor, critic, self.actor_optim.init(actor), self.critic_optim.init(critic),
                        k_noise, jnp.zeros((), jnp.int32))

    # ---- forward passes -----------------------------------------------
    def twin_q(self, critic: Params, norm, obs: jax.Array, action: jax.Array) -> jax.Array:
        """(Q_1, ..., Q_N)(s, a) of stacked critic parameters: (…, obs_size), (…, action_size) -> (N, …)."""
        return jax.vmap(self.critic_net.apply, in_axes=(0, None, None))(critic, self.normalize(norm, obs), action)

    def q(self, state: TD3State, norm, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Student interface: Q_1(s, a) of the online critics -> (…) (the actor's critic; ``meta_state`` reads it)."""
        return self.q_value(first_critic(state.critic), norm, obs, action)

    # ---- losses ---------------------------------------------------------
    def target_noise(self, state: TD3State, shape: tuple[int, ...]) -> jax.Array:
        """eps ~ N(0, policy_noise^2) of shape ``shape`` (B, action_size) for update ``state.step + 1`` (unclipped)."""
        return self.config.policy_noise * jax.random.normal(jax.random.fold_in(state.key, state.step), shape)

    def critic_target(self, state: TD3State, norm, batch: Transition, noise: jax.Array | None = None) -> jax.Array:
        """y = r + gamma (1 - terminated) min_i Q'_i(s', clip(mu'(s') + clip(noise, -c, c), -1, 1)); shape (B,).

        ``noise``: eps (B, action_size), e.g. :meth:`target_noise`; None = 0
        (the smoothing noise's mean action: the TD error the ``meta_state``
        teacher reads is then a deterministic function of the transition).
        """
        next_a = self.mu(state.target_actor, norm, batch.next_obs)
        if noise is not None:
            c = self.config.noise_clip
            next_a = jnp.clip(next_a + jnp.clip(noise, -c, c), -1.0, 1.0)
        next_q = self.twin_q(state.target_critic, norm, batch.next_obs, next_a)
        m = self.config.critic_subset
        if m:  # REDQ: the min over M target critics drawn for this update
            subset = jax.random.choice(jax.random.fold_in(jax.random.fold_in(state.key, state.step), 1),
                                       self.config.critics, (m,), replace=False)
            next_q = next_q[subset]
        next_q = jnp.min(next_q, axis=0)
        return batch.reward + self.config.gamma * (1.0 - batch.terminated) * next_q

    def critic_loss(self, critic: Params, state: TD3State, norm, batch: Transition, y: jax.Array | None = None):
        """Sum over the N critics of the mean squared error to ``y`` (None = the noise-free target), plus L2 on
        all critics' hidden kernels; returns (loss, mean Q_1(s, a)).

        y does not depend on ``critic``: no stop-gradient, so that a meta-gradient through the update
        (``teacher.estimator = pathwise``) sees the batch's r and s' (as :meth:`DDPG.critic_loss`).
        """
        y = self.critic_target(state, norm, batch) if y is None else y
        q = self.twin_q(critic, norm, batch.obs, batch.action)
        loss = jnp.sum(jnp.mean(jnp.square(q - y), axis=-1))
        if self.config.critic_l2 > 0:
            loss = loss + self.config.critic_l2 * l2_penalty(critic)  # sums over all N critics
        return loss, jnp.mean(q[0])

    def actor_loss(self, actor: Params, state: TD3State, norm, batch: Transition) -> jax.Array:
        """-mean Q_1(s, mu(s)) (TD3), or with ``critic_subset`` > 0 -mean over the batch and all N critics (REDQ)."""
        if not self.config.critic_subset:
            return super().actor_loss(actor, state, norm, batch)
        return -jnp.mean(self.twin_q(state.critic, norm, batch.obs, self.mu(actor, norm, batch.obs)))

    # ---- one update -----------------------------------------------------
    def update(self, state: TD3State, norm, batch: Transition, hyper: DDPGHyper | None = None
               ) -> tuple[TD3State, dict]:
        """Update t = ``state.step + 1`` on ``batch`` (B, ...): a critic Adam step; if t mod policy_delay == 0,
        then an actor Adam step and Polyak targets (module docstring).

        ``hyper``: learning rates and tau (:meth:`hyper`; None = the config's).

        Returns:
          (state with ``step`` = t, {"critic_loss": the twin loss, "actor_loss":
          -mean Q_1(s, mu(s)) under the updated critics (also on the steps that
          do not apply it), "q": mean Q_1(s, a)}).
        """
        h = self.hyper() if hyper is None else hyper
        y = self.critic_target(state, norm, batch, self.target_noise(state, batch.action.shape))
        (c_loss, q_mean), c_grads = jax.value_and_grad(self.critic_loss, has_aux=True)(
            state.critic, state, norm, batch, y)
        critic, critic_opt = adam_step(c_grads, state.critic_opt, state.critic, h.critic_lr)
        new = state.replace(critic=critic, critic_opt=critic_opt, step=state.step + 1)

        a_loss, a_grads = jax.value_and_grad(self.actor_loss)(state.actor, new, norm, batch)
        actor, actor_opt = adam_step(a_grads, state.actor_opt, state.actor, h.actor_lr)
        delayed = dict(actor=actor, actor_opt=actor_opt, target_actor=polyak(state.target_actor, actor, h.tau),
                       target_critic=polyak(state.target_critic, critic, h.tau))
        kept = {name: getattr(state, name) for name in delayed}
        now = new.step % self.config.policy_delay == 0
        new = new.replace(**jax.tree.map(lambda d, k: jnp.where(now, d, k), delayed, kept))
        return new, {"critic_loss": c_loss, "actor_loss": a_loss, "q": q_mean}
