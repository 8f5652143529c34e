"""Replay buffer B: a thin adapter over flashbax's item buffer.

Each transition is flattened into one float32 row (obs, action, reward,
next_obs, terminated), so a sampled transition is one contiguous read, and the
rows live in flashbax's ``TrajectoryBufferState`` (capacity rows). An insert
of M rows writes them at positions ``(cursor + arange(M)) % capacity`` with
one scatter, so once the buffer is full it overwrites the oldest rows (FIFO)
and its cost depends on M, not on the capacity, also under ``vmap`` over seeds
(Brax's ``UniformSamplingQueue`` rolls the whole buffer there). Sampling is
uniform with replacement over the rows present. All functions are pure and
jit/vmap-safe; sizes are checked statically by
:func:`mjxmeta.algo.config.validate`.
"""

from __future__ import annotations

import flashbax
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from flashbax.buffers.trajectory_buffer import TrajectoryBufferState
from flax import struct


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


@struct.dataclass
class BufferState:
    """Replay state of one seed.

    Attributes:
      data: flashbax ``TrajectoryBufferState``: ``experience`` (float32
        (1, capacity, row_size), one flattened transition per row), ``current_index``
        (int32, next row written) and ``is_full`` (bool).
      key: raw PRNG key (2,) uint32 for sampling; advanced by every sample.
    """

    data: TrajectoryBufferState
    key: jax.Array


def dummy_transition(obs_size: int, action_size: int) -> Transition:
    z = jnp.zeros((), jnp.float32)
    return Transition(jnp.zeros((obs_size,)), jnp.zeros((action_size,)), z, jnp.zeros((obs_size,)), z)


def flatten_batch(tr: Transition) -> Transition:
    """Merges all leading axes of ``tr`` into one: (a, b, ..., d) -> (a*b*..., d)."""
    lead = tr.reward.ndim
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[lead:]), tr)


class Replay:
    """Uniform FIFO replay of ``capacity`` transitions returning batches of ``batch_size``."""

    def __init__(self, capacity: int, batch_size: int, obs_size: int, action_size: int):
        self.capacity = capacity
        self.batch_size = batch_size
        self._row, self._unravel = ravel_pytree(dummy_transition(obs_size, action_size))
        self._buffer = flashbax.make_item_buffer(max_length=capacity, min_length=1, sample_batch_size=batch_size,
                                                 add_sequences=True, add_batches=False)

    def init(self, key: jax.Array) -> BufferState:
        """Empty buffer; ``key`` (raw uint32 (2,)) seeds its sampling."""
        data = self._buffer.init(self._row)
        data = data.replace(current_index=jnp.zeros((), jnp.int32))
        return BufferState(data=data, key=key)

    def insert(self, state: BufferState, tr: Transition) -> BufferState:
        """Appends transitions with one leading axis (M, ...), M <= capacity; O(M) per insert."""
        rows = jax.vmap(lambda t: ravel_pytree(t)[0])(tr)  # (M, row_size)
        data = self._buffer.add(state.data, rows)
        data = data.replace(current_index=data.current_index.astype(jnp.int32))
        return state.replace(data=data)

    def sample(self, state: BufferState) -> tuple[BufferState, Transition]:
        """Uniform batch (batch_size, ...) from the rows present. The buffer must be non-empty."""
        key, sub = jax.random.split(state.key)
        rows = self._buffer.sample(state.data, sub).experience  # (batch_size, row_size)
        return state.replace(key=key), jax.vmap(self._unravel)(rows)

    def size(self, state: BufferState) -> jax.Array:
        """Number of rows present (int32 scalar)."""
        return jnp.where(state.data.is_full, self.capacity, state.data.current_index).astype(jnp.int32)
