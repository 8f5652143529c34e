"""Scanned environment rollouts shared by D0, D1/R-hat and evaluation."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from mjxmeta.algo.envs import terminated
from mjxmeta.algo.replay import Transition


def env_step(env, state, action: jax.Array):
    """Steps the batched env and returns (next_state, Transition, done).

    ``Transition.next_obs`` is the true s_{t+1} (``info['final_obs']``), and
    ``terminated`` excludes time-limit truncation.
    """
    nstate = env.step(state, action)
    tr = Transition(obs=state.obs, action=action, reward=nstate.reward,
                    next_obs=nstate.info["final_obs"], terminated=terminated(nstate))
    return nstate, tr, nstate.done


def first_episode_start(env, reset_keys: jax.Array):
    """The carry of :func:`first_episode_steps` at fresh resets: (env state, alive (B,) ones, return (B,) zeros),
    in the dtype of the env's rewards.

    ``reset_keys``: (B, 2) raw keys; the same keys give the same start states.
    """
    state = env.reset(reset_keys)
    dtype = state.reward.dtype
    return state, jnp.ones(state.reward.shape, dtype), jnp.zeros(state.reward.shape, dtype)


def first_episode_steps(env, act_fn: Callable[[jax.Array], jax.Array], carry, steps: int, remat: bool = False):
    """``steps`` steps of a deterministic policy, accumulating each env's first-episode return.

    Args:
      carry: (env state, alive (B,), return (B,)) from :func:`first_episode_start` or an earlier call.
      act_fn: obs (B, obs_size) -> action (B, A) in [-1, 1].
      remat: recompute each step in the backward pass (``jax.checkpoint``) instead of storing it.

    Returns:
      (carry, (transitions with leading (steps, B), alive (steps, B) *before* each step)). ``alive``
      is 1 until the step on which the first episode ends (termination or time limit); the
      transitions continue through auto-resets and are all valid data.
    """
    def body(c, _):
        s, alive, ret = c
        s, tr, done = env_step(env, s, act_fn(s.obs))
        return (s, alive * (1.0 - done), ret + alive * tr.reward), (tr, alive)

    return jax.lax.scan(jax.checkpoint(body) if remat else body, carry, None, length=steps)


def deterministic_returns(env, act_fn: Callable[[jax.Array], jax.Array], reset_keys: jax.Array, horizon: int):
    """Rolls out a deterministic policy from fresh resets for ``horizon`` steps.

    Args:
      env: batched env from :func:`mjxmeta.algo.envs.make`.
      act_fn: obs (B, obs_size) -> action (B, A) in [-1, 1].
      reset_keys: (B, 2) raw keys; the same keys give the same start states
        (common random numbers across policies).
      horizon: steps per env.

    Returns:
      (returns (B,), transitions with leading (horizon, B)): the undiscounted
      return of each env's *first* episode, truncated at ``horizon`` (an episode
      that ends inside the horizon contributes its return so far); the
      transitions continue through auto-resets and are all valid data.
    """
    (_, _, returns), (trs, _) = first_episode_steps(env, act_fn, first_episode_start(env, reset_keys), horizon)
    return returns, trs
