"""Base class of the envs whose dynamics are written in JAX (``pendulum``, ``mountain_car_continuous``).

Such an env has no Brax physics pipeline: its ``pipeline_state`` is a small
float32 array of the physical state and ``backend`` is ``'jax'``. A subclass
sets the class constants :attr:`AnalyticEnv.OBS_SIZE` and
:attr:`AnalyticEnv.ACTION_SIZE` and writes ``reset``/``step``; Brax's abstract
size properties come from here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import Env

__all__ = ["AnalyticEnv", "f32"]


def f32(x) -> jax.Array:
    """Casts to a strongly-typed float32 array (a ``lax.scan`` carry keeps its type)."""
    return jnp.asarray(x, dtype=jnp.float32)


class AnalyticEnv(Env):
    """A Brax ``Env`` with analytic dynamics in JAX.

    Attributes:
      OBS_SIZE: length of the observation vector (set by the subclass).
      ACTION_SIZE: length of the action vector (set by the subclass).
    """

    OBS_SIZE: int
    ACTION_SIZE: int

    @property
    def observation_size(self) -> int:
        """:attr:`OBS_SIZE`."""
        return self.OBS_SIZE

    @property
    def action_size(self) -> int:
        """:attr:`ACTION_SIZE`."""
        return self.ACTION_SIZE

    @property
    def backend(self) -> str:
        """``'jax'``: analytic dynamics, no Brax physics pipeline."""
        return "jax"
