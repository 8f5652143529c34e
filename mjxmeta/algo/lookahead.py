"""The look-ahead policy pi' = DDPG(pi, D0) (Xu et al., ICML 2018, Algorithm 1 line 3).

A copy of the student takes ``meta.lookahead_updates`` gradient steps on D0 (or,
with ``meta.lookahead_data = mixed``, on minibatches of B u D0); the student
itself is unchanged. The meta-reward compares R-hat(pi') with R-hat(pi)
(:mod:`mjxmeta.algo.estimators`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from mjxmeta.algo.replay import Transition
from mjxmeta.algo.students.base import Student, StudentState


def lookahead_sampler(d0: Transition, batch_size: int, n_d0: int,
                      buffer_rows: Callable[[jax.Array], tuple[Transition, jax.Array]] | None = None):
    """Minibatch sampler of the look-ahead: ``sample(carry) -> (carry, batch (batch_size, ...))``.

    The carry is ``(key_d0, key_buffer)``. Each minibatch holds ``n_d0`` rows of
    D0 (uniform with replacement) followed by ``batch_size - n_d0`` rows of the
    replay buffer B from ``buffer_rows(key)``; with ``key_buffer`` shared by all
    candidates (not vmapped) every candidate sees the same buffer rows.

    Args:
      d0: one candidate's D0, flattened to (M, ...).
      batch_size: rows per minibatch.
      n_d0: rows from D0, 1 <= n_d0 <= batch_size (= batch_size: D0 only).
      buffer_rows: ``key -> (rows (>= batch_size - n_d0, ...), valid scalar
        bool)``; where ``valid`` is False (an empty buffer) the buffer share
        is drawn from D0 instead. Needed when n_d0 < batch_size.
    """
    m = d0.reward.shape[0]
    n_b = batch_size - n_d0

    def sample(carry):
        k0, kb = carry
        k0, s0 = jax.random.split(k0)
        batch = jax.tree.map(lambda x: x[jax.random.randint(s0, (n_d0,), 0, m)], d0)
        if n_b:
            kb, sb = jax.random.split(kb)
            rows, valid = buffer_rows(sb)
            fallback = jax.tree.map(lambda x: x[jax.random.randint(sb, (n_b,), 0, m)], d0)
            rows = jax.tree.map(lambda r, f: jnp.where(valid, r[:n_b], f), rows, fallback)
            batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), batch, rows)
        return (k0, kb), batch

    return sample


def look_ahead(student: Student, state: StudentState, norm, d0: Transition, key: jax.Array, n_updates: int,
               n_d0: int | None = None, buffer_rows=None, buffer_key: jax.Array | None = None,
               hyper: Any = None) -> StudentState:
    """pi' = DDPG(pi, D0): a copy of the student after ``n_updates`` steps with D0 as the new data.

    Args:
      student: the student's functions; ``state`` its state (pi).
      hyper: the look-ahead's hyperparameters (``student.hyper``, e.g. its
        learning rates); None = the student config's.
      d0: transitions of one candidate, flattened to (M, ...).
      key: raw key for the D0 minibatch indices (uniform with replacement).
      n_d0: D0 rows per minibatch; None = all (the paper's D0-only look-ahead).
      buffer_rows, buffer_key: the replay-buffer share of each minibatch, see
        :func:`lookahead_sampler`.

    Returns:
      The updated copy of ``state`` (for DDPG: actor, critic, targets,
      optimizer states); ``state`` itself is unchanged.
    """
    bs = student.config.batch_size
    sample = lookahead_sampler(d0, bs, bs if n_d0 is None else n_d0, buffer_rows)
    carry = (key, key if buffer_key is None else buffer_key)
    new, _, _ = student.update_many(state, norm, sample, carry, n_updates, hyper)
    return new
