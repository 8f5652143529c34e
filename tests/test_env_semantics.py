"""Auto-reset semantics of every registry env (``mjxmeta.algo.envs.make``).

For each name in ``config.ENV_NAMES`` a batch of 4 envs with a 10-step time
limit is stepped for 30 steps (at least 3 episodes per env) with actions that
make the terminating envs (inverted pendulums, hopper) fall: +1, -1, uniform
noise and 0. Every step is compared with a *reference* step of the unwrapped
env from the same pre-step state with ``done`` zeroed (a step without any
reset). Checked:

* reward and ``info['final_obs']`` equal the reference (the true s_{t+1});
* ``done`` = reference termination or time limit, never stuck at 1 (Brax's
  ``reacher`` and ``halfcheetah`` pass ``done`` through, so a wrapper that
  feeds the previous ``done`` back sees 1 forever after the first limit);
* ``truncation`` = 1 only at the time limit of a non-terminated episode, and
  ``terminated`` = done * (1 - truncation) = the reference termination;
* the episode step counter restarts at 0 after each reset;
* every start state (first reset and every auto-reset) is a fresh random state
  (``ball_in_cup``: Playground's fixed start state every time):
  all differ across episodes and envs; auto-resets take their start from the
  pool drawn for the current iteration (``refill`` every 10 steps, as the
  trainer does once per iteration) and none is reused.

The MuJoCo Playground envs need the extra ``mjxmeta[playground]`` (part of the
test extra); without it their cases are skipped, saying so.

One jitted scan per env (compile: a few seconds for pendulum, ~10-30 s for the
MJX envs on a 2-core CPU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mjxmeta.algo.envs
from mjxmeta.algo.config import ENV_NAMES, PLAYGROUND_ENVS

EP_LEN, N_ENVS, STEPS = 10, 4, 30
REFILL, POOL_PER_ENV = 10, 8  # a new start pool every 10 steps, 32 starts: more than 4 envs can use
TERMINATING = {"inverted_pendulum", "inverted_double_pendulum", "hopper"}
# MuJoCo Playground's BallInCup starts every episode from the same state (dm_control's random ball position is
# not ported): its starts must all be that one state.
FIXED_START = {"ball_in_cup"}


def actions(action_size: int) -> np.ndarray:
    """(STEPS, N_ENVS, A): env 0 pushes +1, env 1 -1, env 2 uniform noise, env 3 zero."""
    a = np.zeros((STEPS, N_ENVS, action_size), np.float32)
    a[:, 0], a[:, 1] = 1.0, -1.0
    a[:, 2] = np.random.default_rng(0).uniform(-1, 1, size=(STEPS, action_size))
    return a


def rollout(name: str):
    """Steps ``make(name)`` and the reference as the trainer does: 3 iterations of REFILL steps, a new
    start pool before each. Returns (first obs (N_ENVS, obs), per-step arrays with leading (STEPS, N_ENVS),
    pool obs per iteration (3, P, obs), reused starts per iteration (3,))."""
    env = mjxmeta.algo.envs.make(name, episode_length=EP_LEN, starts_per_env=POOL_PER_ENV)
    base = mjxmeta.algo.envs.make_base(name)
    base_info = list(jax.eval_shape(base.reset, jax.random.PRNGKey(0)).info)

    def body(prev, a):
        ref_in = prev.replace(info={k: prev.info[k] for k in base_info}, done=jnp.zeros_like(prev.done))
        ref = jax.vmap(base.step)(ref_in, a)
        s = env.step(prev, a)
        out = dict(done=s.done, truncation=s.info["truncation"], terminated=mjxmeta.algo.envs.terminated(s),
                   steps=s.info["steps"], obs=s.obs, final_obs=s.info["final_obs"], reward=s.reward,
                   ref_obs=ref.obs, ref_reward=ref.reward, ref_done=ref.done)
        return s, out

    def iteration(state, acts):
        state = env.refill(state)
        pool_obs = state.info["pool"]["obs"]
        state, out = jax.lax.scan(body, state, acts)
        return state, (out, pool_obs, mjxmeta.algo.envs.reused_starts(state))

    @jax.jit
    def run(keys, acts):
        state = env.reset(keys)
        _, (out, pools, reused) = jax.lax.scan(iteration, state, acts.reshape((-1, REFILL) + acts.shape[1:]))
        return state.obs, jax.tree.map(lambda x: x.reshape((STEPS,) + x.shape[2:]), out), pools, reused

    obs0, out, pools, reused = run(jax.random.split(jax.random.PRNGKey(1), N_ENVS),
                                   jnp.asarray(actions(base.action_size)))
    return np.asarray(obs0), jax.tree.map(np.asarray, out), np.asarray(pools), np.asarray(reused)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_auto_reset_flags_final_obs_and_fresh_starts(name):
    if name in PLAYGROUND_ENVS:
        pytest.importorskip("mujoco_playground", reason="the extra mjxmeta[playground] is not installed")
    obs0, o, pools, reused = rollout(name)
    np.testing.assert_array_equal(reused, 0)
    np.testing.assert_allclose(o["final_obs"], o["ref_obs"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(o["reward"], o["ref_reward"], rtol=1e-5, atol=1e-5)

    count = np.zeros(N_ENVS, int)  # steps since the episode's start
    starts = [[row] for row in obs0]  # start observations per env
    terminations = 0
    for t in range(STEPS):
        count += 1
        term = o["ref_done"][t] > 0
        limit = count >= EP_LEN
        np.testing.assert_array_equal(o["done"][t], (term | limit).astype(np.float32), err_msg=f"t={t}")
        np.testing.assert_array_equal(o["truncation"][t], (limit & ~term).astype(np.float32), err_msg=f"t={t}")
        np.testing.assert_array_equal(o["terminated"][t], term.astype(np.float32), err_msg=f"t={t}")
        np.testing.assert_array_equal(o["terminated"][t], o["done"][t] * (1 - o["truncation"][t]))
        terminations += int(np.sum(term & ~limit))
        done = term | limit
        count[done] = 0
        np.testing.assert_array_equal(o["steps"][t], count, err_msg=f"t={t}")
        # Not done: obs is the true next obs. Done: obs is a new start state.
        np.testing.assert_array_equal(o["obs"][t][~done], o["final_obs"][t][~done])
        for i in np.flatnonzero(done):
            starts[i].append(o["obs"][t][i])
            # Taken from this iteration's pool of fresh starts.
            assert np.any(np.all(pools[t // REFILL] == o["obs"][t][i], axis=-1)), (t, i)
    if name in TERMINATING:
        assert terminations > 0, "the pushing actions should make this env terminate before the limit"
    else:  # these envs never terminate: done exactly at every time limit, never stuck at 1
        want = ((np.arange(1, STEPS + 1) % EP_LEN) == 0).astype(np.float32)
        np.testing.assert_array_equal(o["done"], np.repeat(want[:, None], N_ENVS, 1))

    # Fresh random starts: at least 4 per env (first reset + 3), all distinct across episodes and envs.
    assert min(len(s) for s in starts) >= 1 + STEPS // EP_LEN
    flat = np.stack([x for s in starts for x in s])
    if name in FIXED_START:
        np.testing.assert_array_equal(flat, np.broadcast_to(flat[0], flat.shape))
        return
    dist = np.abs(flat[:, None] - flat[None]).max(-1)
    np.fill_diagonal(dist, np.inf)
    assert dist.min() > 1e-6, f"{name}: two start states coincide"
