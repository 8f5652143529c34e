"""The student interface: what the trainer, the look-ahead, the teachers and render use.

A *student* is the deterministic off-policy learner pi = mu(s) that the teacher
generates data for (Xu et al., ICML 2018, Algorithm 1; docs/algorithm.md,
"Roles"). Everything outside ``mjxmeta/algo/students/`` talks to it only through
:class:`Student`; which networks and losses a student uses is its own business.

All methods are pure functions of explicit pytrees and must be traceable under
``jit``, ``vmap`` and ``lax.scan``. Observations are *raw* env observations;
the student normalizes them itself with the running statistics ``norm``
(:func:`init_normalizer`, :func:`update_normalizer`), which the trainer owns
because every inserted transition updates them.

Shapes: ``obs`` (..., obs_size), ``action`` (..., action_size) in [-1, 1];
``tr`` a :class:`mjxmeta.algo.replay.Transition` with leading axes (...).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from brax.training.acme import running_statistics

from mjxmeta.algo.config import StudentConfig
from mjxmeta.algo.replay import Transition

OBS_CLIP = 5.0  # normalized observations are clipped to +-5, as in Baselines' DDPG

StudentState = Any  # a pytree (e.g. a flax.struct.dataclass); its type is ``Student.state_type``
SampleFn = Callable[[Any], tuple[Any, Transition]]  # carry -> (carry, minibatch (B, ...))


def init_normalizer(obs_size: int) -> running_statistics.RunningStatisticsState:
    """Running mean/std of observations with zero count (Brax ``running_statistics``)."""
    return running_statistics.init_state(jnp.zeros((obs_size,), jnp.float32))


def update_normalizer(norm, obs: jax.Array):
    """Adds a batch of raw observations (M, obs_size) to the running statistics."""
    return running_statistics.update(norm, obs)


def normalize(norm, obs: jax.Array, enabled: bool = True) -> jax.Array:
    """(..., obs_size) raw -> normalized with ``norm`` and clipped to +-OBS_CLIP (identity if not ``enabled``)."""
    if not enabled:
        return obs
    return running_statistics.normalize(obs, norm, max_abs_value=OBS_CLIP)


@runtime_checkable
class Student(Protocol):
    """A deterministic off-policy student for observations of ``obs_size`` and actions of ``action_size``.

    Attributes:
      config: its :class:`mjxmeta.algo.config.StudentConfig` (``batch_size`` sets
        the look-ahead's minibatch size).
      obs_size, action_size: sizes of one observation and one action.
      state_type: the class of the pytree :meth:`init` returns.
    """

    config: StudentConfig
    obs_size: int
    action_size: int
    state_type: type

    def init(self, key: jax.Array) -> StudentState:
        """Fresh state (networks, targets, optimizer states) from a raw key (2,)."""

    def hyper(self, config: StudentConfig | None = None) -> Any:
        """The hyperparameters :meth:`update_many` reads as arrays (host; default: ``self.config``'s).

        A pytree of float32 scalars (for DDPG: actor_lr, critic_lr, tau), so a
        run can vmap over several values of them like over seeds
        (``Config.sweep``); ``config`` only differs from ``self.config`` in
        such values (shapes come from ``self.config``).
        """

    def normalize(self, norm, obs: jax.Array) -> jax.Array:
        """The observation the student's networks (and the teachers' ``meta`` inputs) see."""

    def act(self, state: StudentState, norm, obs: jax.Array) -> jax.Array:
        """Deterministic action mu(s): (..., obs_size) -> (..., action_size) in [-1, 1]."""

    def actor(self, state: StudentState) -> Any:
        """The actor's parameters (a pytree), what the ``param_noise`` teacher perturbs."""

    def mu(self, actor: Any, norm, obs: jax.Array) -> jax.Array:
        """mu(s; actor) for actor parameters of :meth:`actor`'s structure: (..., obs_size) -> (..., action_size).
        ``act(state, norm, obs) == mu(actor(state), norm, obs)``."""

    def q(self, state: StudentState, norm, obs: jax.Array, action: jax.Array) -> jax.Array:
        """The student's action value Q(s, a): -> (...). (``meta_state`` teacher feature.)"""

    def td_error(self, state: StudentState, norm, tr: Transition) -> jax.Array:
        """Bellman residual y - Q(s, a) of transitions ``tr``: -> (...). (``meta_state`` feature.)"""

    def update_many(self, state: StudentState, norm, sample_fn: SampleFn, carry, n: int, hyper: Any = None
                    ) -> tuple[StudentState, Any, dict[str, jax.Array]]:
        """``n`` gradient steps on minibatches from ``sample_fn`` (a ``lax.scan``), with hyperparameters
        ``hyper`` (:meth:`hyper`, possibly traced; None = ``self.hyper()``).

        Returns:
          (state, carry, metrics: dict of scalars averaged over the n steps;
          zeros when n == 0, with the same keys).
        """
