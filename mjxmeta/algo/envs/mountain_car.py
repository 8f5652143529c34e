"""Continuous Mountain Car (``MountainCarContinuous-v0``) in pure JAX, as a Brax ``Env``.

Source
------
A port of ``gymnasium.envs.classic_control.continuous_mountain_car.
Continuous_MountainCarEnv`` (``MountainCarContinuous-v0``) from Farama
Gymnasium (Towers et al., 2024); the task is from Moore (1990), "Efficient
Memory-based Learning for Robot Control", PhD thesis, Cambridge. Gymnasium
mixes float32 state with float64 arithmetic; this module keeps everything in
float32 so it runs under ``jax.jit`` / ``jax.vmap`` / ``jax.lax.scan``.

A sparse-reward exploration task: the only positive reward is +100 on the step
that reaches the goal on the right hill, while every step costs 0.1 a^2, so a
student that has never seen the goal learns to stand still.

Conventions and units
---------------------
* ``position`` [m] along the x-axis, in [-1.2, 0.6]; the valley floor is near
  -0.52 (height ``sin(3 x)``).
* ``velocity`` [m/step], in [-0.07, 0.07].
* ``action`` (shape ``(1,)``): a force in [-1, 1] (clipped for the dynamics).

Equations (one call to ``step``)::

    force     = clip(a, -1, 1)
    velocity' = clip(velocity + 0.0015 force - 0.0025 cos(3 position), -0.07, 0.07)
    position' = clip(position + velocity', -1.2, 0.6)
    velocity' = 0               if position' == -1.2 and velocity' < 0   # inelastic left wall
    done      = position' >= 0.45 and velocity' >= goal_velocity        # goal_velocity = 0
    reward    = 100 done - 0.1 a^2                                     # a unclipped, as in Gymnasium

Reset: ``position ~ U(-0.6, -0.4)``, ``velocity = 0``. Gymnasium's time limit
is 999 steps (:data:`TIME_LIMIT`), applied by the registry's ``EpisodeWrapper``,
not here; reaching the goal is a true termination (``done = 1``).

Shapes / dtypes of the returned ``brax.envs.base.State`` (unbatched; every leaf
strongly-typed float32): ``pipeline_state`` and ``obs`` ``(2,)`` =
``[position, velocity]``; ``reward`` and ``done`` ``()``; ``metrics`` and
``info`` are passed through ``step`` unchanged (empty at reset).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import State

from mjxmeta.algo.envs.analytic import AnalyticEnv, f32 as _f32

__all__ = ["MountainCarContinuous", "TIME_LIMIT", "GOAL_REWARD"]

TIME_LIMIT = 999  # gymnasium's max_episode_steps for MountainCarContinuous-v0
GOAL_REWARD = 100.0  # added on the step that reaches the goal


class MountainCarContinuous(AnalyticEnv):
    """Gymnasium ``MountainCarContinuous-v0`` dynamics and reward as a pure-JAX Brax env.

    Args:
      goal_velocity: the goal also requires ``velocity' >= goal_velocity``
        [m/step]; Gymnasium's default is 0.

    Attributes:
      min_position, max_position: -1.2, 0.6 [m]; max_speed: 0.07 [m/step];
      goal_position: 0.45 [m]; power: 0.0015 (force to velocity gain).
      action_low, action_high: float32 ``(1,)`` arrays ``[-1]``, ``[1]``.
    """

    OBS_SIZE = 2  # [position, velocity]
    ACTION_SIZE = 1  # the force

    def __init__(self, goal_velocity: float = 0.0):
        self.min_position = -1.2
        self.max_position = 0.6
        self.max_speed = 0.07
        self.goal_position = 0.45
        self.goal_velocity = float(goal_velocity)
        self.power = 0.0015
        self.action_low = np.array([-1.0], dtype=np.float32)
        self.action_high = np.array([1.0], dtype=np.float32)

    def reset_to(self, position, velocity) -> State:
        """A fresh ``State`` at ``position`` [m], ``velocity`` [m/step] (scalars; nothing clipped)."""
        pipeline_state = _f32(jnp.stack([_f32(position), _f32(velocity)]))
        return State(pipeline_state=pipeline_state, obs=pipeline_state, reward=_f32(0.0), done=_f32(0.0),
                     metrics={}, info={})

    def reset(self, rng: jax.Array) -> State:
        """Samples ``position ~ U(-0.6, -0.4)``, ``velocity = 0`` (``rng``: a PRNG key of shape ``(2,)``)."""
        position = jax.random.uniform(rng, (), jnp.float32, minval=-0.6, maxval=-0.4)
        return self.reset_to(position, 0.0)

    def step(self, state: State, action: jax.Array) -> State:
        """Advances one step under force ``action`` (shape ``(1,)``); see the module docstring."""
        position, velocity = state.pipeline_state[0], state.pipeline_state[1]
        a = _f32(action)[0]
        force = jnp.clip(a, -1.0, 1.0)
        velocity = velocity + force * self.power - 0.0025 * jnp.cos(3.0 * position)
        velocity = jnp.clip(velocity, -self.max_speed, self.max_speed)
        position = jnp.clip(position + velocity, self.min_position, self.max_position)
        velocity = jnp.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        done = (position >= self.goal_position) & (velocity >= self.goal_velocity)
        reward = GOAL_REWARD * done - 0.1 * a**2
        pipeline_state = _f32(jnp.stack([position, velocity]))
        return state.replace(pipeline_state=pipeline_state, obs=pipeline_state, reward=_f32(reward),
                             done=_f32(done))
