"""Replay buffer B: a thin adapter over Brax's ``UniformSamplingQueue``.

Transitions are flattened into one float32 row each. Once the buffer is full,
an insert drops the oldest rows (FIFO). Sampling is uniform with replacement
over the rows present. All functions are pure and jit/vmap-safe; Brax's
host-side size checks (which mutate Python state) are bypassed and replaced by
the static size checks of :func:`mjxmeta.config.validate`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.training import replay_buffers
from flax import struct

BufferState = replay_buffers.ReplayBufferState


@struct.dataclass
class Transition:
    """One environment transition (leading batch axes allowed on every field).

    Attributes:
      obs: s_t, (..., obs_size), raw (unnormalized) observation.
      action: a_t, (..., action_size), the executed action in [-1, 1].
      reward: r_t, (...).
      next_obs: s_{t+1}, (..., obs_size), the true next observation (before any
        auto-reset), so targets bootstrap through time-limit truncation.
      terminated: (...), 1.0 where s_{t+1} is terminal (no bootstrap), else 0.0.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array


def dummy_transition(obs_size: int, action_size: int) -> Transition:
    z = jnp.zeros((), jnp.float32)
    return Transition(jnp.zeros((obs_size,)), jnp.zeros((action_size,)), z, jnp.zeros((obs_size,)), z)


def flatten_batch(tr: Transition) -> Transition:
    """Merges all leading axes of ``tr`` into one: (a, b, ..., d) -> (a*b*..., d)."""
    lead = tr.reward.ndim
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[lead:]), tr)


class Replay:
    """Uniform replay of capacity ``capacity`` returning batches of ``batch_size``."""

    def __init__(self, capacity: int, batch_size: int, obs_size: int, action_size: int):
        self.capacity = capacity
        self.batch_size = batch_size
        self._queue = replay_buffers.UniformSamplingQueue(
            max_replay_size=capacity,
            dummy_data_sample=dummy_transition(obs_size, action_size),
            sample_batch_size=batch_size,
        )

    def init(self, key: jax.Array) -> BufferState:
        """Empty buffer; ``key`` (raw uint32 (2,)) seeds its sampling."""
        return self._queue.init(key)

    def insert(self, state: BufferState, tr: Transition) -> BufferState:
        """Appends a batch of transitions with one leading axis (M, ...), M <= capacity."""
        return self._queue.insert_internal(state, tr)

    def sample(self, state: BufferState) -> tuple[BufferState, Transition]:
        """Uniform batch (batch_size, ...) from the rows present. The buffer must be non-empty."""
        return self._queue.sample_internal(state)

    def size(self, state: BufferState) -> jax.Array:
        """Number of rows present (int32 scalar)."""
        return self._queue.size(state)
