"""Classic Pendulum-v1 swing-up task in pure JAX, as a Brax ``Env``.

Source
------
A line-by-line port of ``gymnasium.envs.classic_control.pendulum.PendulumEnv``
(``Pendulum-v1``) from Farama Gymnasium (Towers et al., 2024), itself the
successor of OpenAI Gym (Brockman et al., 2016, "OpenAI Gym",
arXiv:1606.01540). Only the (float32) arithmetic differs: Gymnasium keeps its
state in float64 NumPy, this module keeps everything in float32 so it runs under
``jax.jit`` / ``jax.vmap`` / ``jax.lax.scan`` without recompiles.

Conventions and units
---------------------
* ``theta`` [rad]: pendulum angle, 0 = upright, positive counter-clockwise. The
  stored angle is *not* wrapped (exactly as in Gymnasium); it is only
  normalised to [-pi, pi) inside the reward.
* ``theta_dot`` [rad/s]: angular velocity, clipped to [-max_speed, max_speed].
* ``u`` [N m]: torque applied at the joint, clipped to [-max_torque, max_torque].

Constants (Gymnasium defaults): ``max_speed = 8``, ``max_torque = 2``,
``dt = 0.05`` s, ``m = 1`` kg, ``l = 1`` m, ``g = 10`` m/s^2 (configurable).

Equations (one call to ``step``, semi-implicit Euler)::

    u         = clip(action[0], -max_torque, max_torque)
    cost      = angle_normalize(theta)**2 + 0.1 * theta_dot**2 + 0.001 * u**2
    theta_dot'= theta_dot + (3 g / (2 l) * sin(theta) + 3 / (m l**2) * u) * dt
    theta_dot'= clip(theta_dot', -max_speed, max_speed)
    theta'    = theta + theta_dot' * dt
    reward    = -cost                      # uses the *pre-step* theta, theta_dot
    obs'      = [cos(theta'), sin(theta'), theta_dot']

with ``angle_normalize(x) = ((x + pi) mod 2 pi) - pi``. The reward lies in
[-16.2736044, 0].

Reset: ``theta ~ U(-pi, pi)``, ``theta_dot ~ U(-1, 1)``.

Pendulum never terminates: ``done`` is always 0. The usual 200-step time limit
is *not* applied here; wrap with ``brax.envs.wrappers.training.EpisodeWrapper``
(``episode_length=200``) for that.

Shapes / dtypes of the returned ``brax.envs.base.State`` (unbatched; all leaves
are strongly-typed float32):

* ``pipeline_state``: ``(2,)`` = ``[theta, theta_dot]``
* ``obs``: ``(3,)`` = ``[cos theta, sin theta, theta_dot]``
* ``reward``: ``()``
* ``done``: ``()`` (always 0.0)
* ``metrics``: ``{}``; ``info``: ``{}`` at reset. ``step`` passes ``metrics``
  and ``info`` of the incoming state through unchanged, so wrappers (e.g.
  ``EpisodeWrapper``, ``AutoResetWrapper``) can keep their bookkeeping there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import State

from mjxmeta.algo.envs.analytic import AnalyticEnv, f32 as _f32

__all__ = ["Pendulum", "angle_normalize"]


def angle_normalize(x: jax.Array) -> jax.Array:
  """Wraps an angle [rad] to [-pi, pi): ``((x + pi) mod 2 pi) - pi``.

  Same formula as Gymnasium's ``angle_normalize`` (``jnp.remainder`` has
  NumPy's ``%`` semantics: the result takes the sign of the divisor).
  """
  return jnp.remainder(x + jnp.pi, 2.0 * jnp.pi) - jnp.pi


class Pendulum(AnalyticEnv):
  """Gymnasium ``Pendulum-v1`` dynamics and reward as a pure-JAX Brax env.

  Args:
    g: gravitational acceleration [m/s^2]; Gymnasium's default is 10.0.

  Attributes:
    max_speed: 8.0 rad/s, bound of ``theta_dot``.
    max_torque: 2.0 N m, bound of the torque.
    dt: 0.05 s, integration step (one ``step`` call).
    g, m, l: gravity [m/s^2], mass [kg] (1.0), rod length [m] (1.0).
    action_low, action_high: float32 arrays of shape ``(1,)`` equal to
      ``[-2.0]`` and ``[2.0]`` (torque bounds), for rescaling policy actions in
      [-1, 1] to torque.

  ``reset``/``step``/``reset_to`` are pure functions of their arguments and
  work under ``jax.jit`` and ``jax.vmap``. See the module docstring for the
  equations and the layout of ``State``.
  """

  OBS_SIZE = 3  # [cos theta, sin theta, theta_dot]
  ACTION_SIZE = 1  # joint torque [N m]

  def __init__(self, g: float = 10.0):
    self.max_speed = 8.0
    self.max_torque = 2.0
    self.dt = 0.05
    self.g = float(g)
    self.m = 1.0
    self.l = 1.0
    self.action_low = np.array([-self.max_torque], dtype=np.float32)
    self.action_high = np.array([self.max_torque], dtype=np.float32)

  # ------------------------------------------------------------------ helpers
  @staticmethod
  def _obs(pipeline_state: jax.Array) -> jax.Array:
    theta, theta_dot = pipeline_state[0], pipeline_state[1]
    return _f32(jnp.stack([jnp.cos(theta), jnp.sin(theta), theta_dot]))

  def reset_to(self, theta, theta_dot) -> State:
    """Returns a fresh ``State`` at the given ``theta`` [rad], ``theta_dot`` [rad/s].

    Scalars (or 0-d arrays). Nothing is clipped or wrapped, matching an
    assignment to Gymnasium's ``env.unwrapped.state``. ``reward`` and ``done``
    are 0.0, ``metrics`` and ``info`` are empty dicts.
    """
    pipeline_state = _f32(jnp.stack([_f32(theta), _f32(theta_dot)]))
    return State(
        pipeline_state=pipeline_state,
        obs=self._obs(pipeline_state),
        reward=_f32(0.0),
        done=_f32(0.0),
        metrics={},
        info={},
    )

  # ---------------------------------------------------------------- Env API
  def reset(self, rng: jax.Array) -> State:
    """Samples ``theta ~ U(-pi, pi)``, ``theta_dot ~ U(-1, 1)``.

    Args:
      rng: PRNG key, e.g. ``jax.random.PRNGKey(seed)`` (uint32, shape ``(2,)``).
    """
    high = _f32([np.pi, 1.0])
    theta, theta_dot = jax.random.uniform(
        rng, (2,), dtype=jnp.float32, minval=-high, maxval=high
    )
    return self.reset_to(theta, theta_dot)

  def step(self, state: State, action: jax.Array) -> State:
    """Advances by ``dt`` under torque ``action`` (shape ``(1,)``, N m).

    The torque is clipped to [-max_torque, max_torque] before it enters both
    the cost and the dynamics. The reward is computed from the pre-step state.
    ``metrics`` and ``info`` of ``state`` are passed through unchanged.
    """
    theta, theta_dot = state.pipeline_state[0], state.pipeline_state[1]
    g, m, l, dt = self.g, self.m, self.l, self.dt

    u = jnp.clip(_f32(action), -self.max_torque, self.max_torque)[0]
    costs = angle_normalize(theta) ** 2 + 0.1 * theta_dot**2 + 0.001 * (u**2)

    new_theta_dot = theta_dot + (
        3 * g / (2 * l) * jnp.sin(theta) + 3.0 / (m * l**2) * u
    ) * dt
    new_theta_dot = jnp.clip(new_theta_dot, -self.max_speed, self.max_speed)
    new_theta = theta + new_theta_dot * dt

    pipeline_state = _f32(jnp.stack([new_theta, new_theta_dot]))
    return state.replace(
        pipeline_state=pipeline_state,
        obs=self._obs(pipeline_state),
        reward=_f32(-costs),
        done=_f32(0.0),
    )
