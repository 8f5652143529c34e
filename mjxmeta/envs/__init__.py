"""Environment registry: ``make(name)`` -> batched, auto-resetting Brax env.

Every env returned by :func:`make` takes a batch of raw PRNG keys of shape
(B, 2) in ``reset`` and actions of shape (B, action_size) in [-1, 1] in
``step``. Its ``State`` carries, besides Brax's ``obs``/``reward``/``done``:

* ``info['truncation']`` (B,) float32: 1 where the episode hit the time limit
  without terminating (Brax ``EpisodeWrapper``);
* ``info['final_obs']`` (B, obs_size): the true last observation s_{t+1} of the
  step, *before* the auto-reset replaced ``obs`` with a fresh start state, so a
  critic can bootstrap through truncation;
* every leaf strong-typed with the dtype ``reset`` gives it, so a ``lax.scan``
  carry built from ``reset`` never changes type.

Unlike Brax's ``AutoResetWrapper`` (which always returns to the episode's first
state), a finished episode restarts from a fresh random start state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State, Wrapper
from brax.envs.wrappers.training import EpisodeWrapper, VmapWrapper

from mjxmeta.config import ENV_NAMES, default_episode_length

BRAX_NAMES = {
    "inverted_pendulum": "inverted_pendulum",
    "inverted_double_pendulum": "inverted_double_pendulum",
    "reacher": "reacher",
    "hopper": "hopper",
    "halfcheetah": "halfcheetah",
}


def strong(tree):
    """Casts every array leaf of ``tree`` to a strong type of its own dtype."""
    def cast(x):
        if isinstance(x, (bool, int, float)):  # e.g. Brax's RunningStatisticsState.std_eps
            x = jnp.asarray(x)
        if isinstance(x, jax.Array) and not jnp.issubdtype(x.dtype, jax.dtypes.extended):
            return jax.lax.convert_element_type(x, x.dtype)
        return x
    return jax.tree.map(cast, tree)


class ActionRescaleWrapper(Wrapper):
    """Maps actions from [-1, 1] to the env's own [action_low, action_high]."""

    def __init__(self, env: Env, low, high):
        super().__init__(env)
        self._low = jnp.asarray(low, jnp.float32)
        self._high = jnp.asarray(high, jnp.float32)

    def step(self, state: State, action: jax.Array) -> State:
        scaled = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
        return self.env.step(state, scaled)


class FreshAutoResetWrapper(Wrapper):
    """Auto-reset to a *fresh* random start state; keeps the true final obs.

    Expects a batched env (``VmapWrapper`` + ``EpisodeWrapper`` below it).
    """

    def reset(self, rng: jax.Array) -> State:
        keys = jax.vmap(jax.random.split)(rng)  # (B, 2, 2)
        state = self.env.reset(keys[:, 0])
        state.info["reset_key"] = keys[:, 1]
        state.info["final_obs"] = state.obs
        return strong(state)

    def step(self, state: State, action: jax.Array) -> State:
        keys = jax.vmap(jax.random.split)(state.info["reset_key"])
        info = {k: v for k, v in state.info.items() if k not in ("reset_key", "final_obs")}
        # Zero ``done`` before stepping (as Brax's AutoResetWrapper does): Brax's
        # halfcheetah and reacher pass ``state.done`` through instead of
        # recomputing it, so a done carried in would stay 1 forever.
        nstate = self.env.step(state.replace(info=info, done=jnp.zeros_like(state.done)), action)
        fresh = self.env.reset(keys[:, 1])
        done = nstate.done

        def where_done(new, old):
            d = jnp.reshape(done, done.shape + (1,) * (old.ndim - done.ndim))
            return jnp.where(d > 0, new, old)

        pipeline_state = jax.tree.map(where_done, fresh.pipeline_state, nstate.pipeline_state)
        obs = where_done(fresh.obs, nstate.obs)
        info = dict(nstate.info)
        info["steps"] = jnp.where(done > 0, jnp.zeros_like(info["steps"]), info["steps"])
        info["reset_key"] = keys[:, 0]
        info["final_obs"] = nstate.obs
        out = nstate.replace(pipeline_state=pipeline_state, obs=obs, info=info)
        return strong(out)


def make_base(name: str, backend: str = "mjx") -> Env:
    """The unbatched env ``name`` with actions in [-1, 1].

    Raises:
      ValueError: if ``name`` is not one of :data:`mjxmeta.config.ENV_NAMES`.
    """
    if name == "pendulum":
        from mjxmeta.envs.pendulum import Pendulum
        env = Pendulum()
        return ActionRescaleWrapper(env, env.action_low, env.action_high)
    if name in BRAX_NAMES:
        from brax import envs as brax_envs
        return brax_envs.get_environment(BRAX_NAMES[name], backend=backend)
    raise ValueError(f"unknown env {name!r}: valid names are {ENV_NAMES}")


def make(name: str, episode_length: int = 0, backend: str = "mjx") -> Env:
    """Batched, auto-resetting env ``name`` (see module docstring).

    Args:
      name: one of :data:`mjxmeta.config.ENV_NAMES`.
      episode_length: time limit in steps; 0 =
        :func:`mjxmeta.config.default_episode_length`.
      backend: Brax physics backend for the MuJoCo envs (default ``"mjx"``).

    Raises:
      ValueError: on an unknown name (the message lists the valid ones).
    """
    env = make_base(name, backend)
    length = episode_length or default_episode_length(name)
    return FreshAutoResetWrapper(EpisodeWrapper(VmapWrapper(env), length, 1))


def terminated(state: State) -> jax.Array:
    """1.0 where the step ended in a true termination (not a time-limit truncation)."""
    return state.done * (1.0 - state.info["truncation"])
