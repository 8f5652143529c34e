"""Scanned environment rollouts shared by D0, D1/R-hat and evaluation."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from mjxmeta.envs import terminated
from mjxmeta.replay import Transition


def env_step(env, state, action: jax.Array):
    """Steps the batched env and returns (next_state, Transition, done).

    ``Transition.next_obs`` is the true s_{t+1} (``info['final_obs']``), and
    ``terminated`` excludes time-limit truncation.
    """
    nstate = env.step(state, action)
    tr = Transition(obs=state.obs, action=action, reward=nstate.reward,
                    next_obs=nstate.info["final_obs"], terminated=terminated(nstate))
    return nstate, tr, nstate.done


def deterministic_returns(env, act_fn: Callable[[jax.Array], jax.Array], reset_keys: jax.Array, horizon: int):
    """Rolls out a deterministic policy from fresh resets for ``horizon`` steps.

    Args:
      env: batched env from :func:`mjxmeta.envs.make`.
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
    state = env.reset(reset_keys)

    def body(carry, _):
        s, alive, ret = carry
        s, tr, done = env_step(env, s, act_fn(s.obs))
        ret = ret + alive * tr.reward
        alive = alive * (1.0 - done)
        return (s, alive, ret), tr

    b = reset_keys.shape[0]
    init = (state, jnp.ones((b,), jnp.float32), jnp.zeros((b,), jnp.float32))
    (_, _, returns), trs = jax.lax.scan(body, init, None, length=horizon)
    return returns, trs
