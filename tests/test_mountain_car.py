"""``mjxmeta.algo.envs.mountain_car`` against gymnasium's ``MountainCarContinuous-v0``.

Gymnasium computes in float64 from a float32 state; ours is float32
throughout. Per-step comparisons therefore re-synchronise our state to
gymnasium's before each step (every step's dynamics, clipping, wall, goal and
reward checked to 1e-6); the closed-loop episode tests compare whole
trajectories of the registry env (``mjxmeta.algo.envs.make``, with its time limit
and auto-reset) against ``gym.make`` (``TimeLimit`` 999) including the step
and kind of the episode's end: termination at the goal vs truncation at 999.
"""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mjxmeta.algo.envs
from mjxmeta.algo.config import default_episode_length
from mjxmeta.algo.envs.mountain_car import GOAL_REWARD, TIME_LIMIT, MountainCarContinuous


def test_constants_match_gymnasium():
    g = gym.make("MountainCarContinuous-v0")
    u = g.unwrapped
    ours = MountainCarContinuous()
    for name in ("min_position", "max_position", "max_speed", "goal_position", "goal_velocity", "power"):
        assert getattr(ours, name) == getattr(u, name), name
    assert g.spec.max_episode_steps == TIME_LIMIT == default_episode_length("mountain_car_continuous")


# (start position, start velocity, actions): random in [-1.5, 1.5] (the force clip and the unclipped
# penalty), full left push into the wall (velocity zeroed at -1.2), and a swing that reaches the goal.
def _cases():
    rs = np.random.default_rng(0)
    yield "random", (-0.5, 0.0), rs.uniform(-1.5, 1.5, (300, 1))
    yield "left_wall", (-1.15, -0.06), -np.ones((40, 1))
    yield "goal", (0.40, 0.05), np.ones((5, 1))
    yield "goal_needs_velocity", (0.44, -0.001), np.ones((30, 1))


@pytest.mark.parametrize("name,start,acts", list(_cases()), ids=lambda x: x if isinstance(x, str) else "")
def test_step_matches_gymnasium(name, start, acts):
    g = gym.make("MountainCarContinuous-v0")
    g.reset(seed=0)
    g.unwrapped.state = np.array(start, np.float32).astype(np.float64)
    env = MountainCarContinuous()
    step = jax.jit(env.step)
    hit_wall = hit_goal = False
    for t, a in enumerate(acts.astype(np.float32)):
        before = np.asarray(g.unwrapped.state, np.float32)
        ours = step(env.reset_to(before[0], before[1]), jnp.asarray(a))
        obs, r, term, trunc, _ = g.step(a)
        np.testing.assert_allclose(np.asarray(ours.obs), obs, rtol=0, atol=1e-6, err_msg=f"{name} t={t}")
        np.testing.assert_allclose(float(ours.reward), r, rtol=1e-6, atol=1e-6, err_msg=f"{name} t={t}")
        assert float(ours.done) == float(term), (name, t)
        assert not trunc
        hit_wall |= obs[0] == env.min_position
        hit_goal |= term
        if term:
            break
    assert hit_wall == (name == "left_wall")
    assert hit_goal == name.startswith("goal")


def _bang_bang(obs):
    """Push along the velocity (left from rest): swings up and reaches the goal in ~100-200 steps."""
    return np.where(obs[..., 1:2] > 0, 1.0, -1.0).astype(np.float32)


def _zero(obs):
    return np.zeros(obs.shape[:-1] + (1,), np.float32)


def _gym_episode(policy, start):
    g = gym.make("MountainCarContinuous-v0")
    g.reset(seed=0)
    g.unwrapped.state = np.array([start, 0.0])
    obs, rows = np.array([start, 0.0], np.float32), []
    while True:
        obs, r, term, trunc, _ = g.step(policy(obs))
        rows.append((obs, r, term, trunc))
        if term or trunc:
            return rows


@pytest.mark.parametrize("policy,ends_at_goal", [(_bang_bang, True), (_zero, False)])
def test_episode_end_matches_gymnasium(policy, ends_at_goal):
    """The registry env (time limit 999, auto-reset) ends its episode at gymnasium's step, the same way."""
    env = mjxmeta.algo.envs.make("mountain_car_continuous", starts_per_env=1)
    state = jax.jit(env.reset)(jax.random.PRNGKey(3)[None])
    start = float(state.obs[0, 0])
    step = jax.jit(env.step)
    ref = _gym_episode(policy, start)
    for t, (obs, r, term, trunc) in enumerate(ref):
        state = step(state, jnp.asarray(policy(np.asarray(state.obs))))
        np.testing.assert_allclose(np.asarray(state.info["final_obs"][0]), obs, atol=1e-4, err_msg=f"t={t}")
        np.testing.assert_allclose(float(state.reward[0]), r, atol=1e-4)
        assert float(state.done[0]) == float(term or trunc), t
        assert float(state.info["truncation"][0]) == float(trunc and not term), t
        assert float(mjxmeta.algo.envs.terminated(state)[0]) == float(term), t
    assert len(ref) < TIME_LIMIT if ends_at_goal else len(ref) == TIME_LIMIT
    assert (ref[-1][1] > GOAL_REWARD - 1) == ends_at_goal
    # auto-reset: a fresh start in [-0.6, -0.4] at rest, step counter back to 0
    assert -0.6 <= float(state.obs[0, 0]) <= -0.4 and float(state.obs[0, 1]) == 0.0
    assert int(state.info["steps"][0]) == 0


def test_reset_distribution():
    env = MountainCarContinuous()
    s = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), 4000))
    pos, vel = np.asarray(s.obs[:, 0]), np.asarray(s.obs[:, 1])
    assert pos.min() >= -0.6 and pos.max() < -0.4 and np.all(vel == 0)
    # U(-0.6, -0.4): mean -0.5, sd 0.2/sqrt(12) = 0.0577; 4000 draws -> standard error of the mean 9e-4
    assert abs(pos.mean() + 0.5) < 4e-3 and abs(pos.std() - 0.2 / np.sqrt(12)) < 3e-3
    assert s.obs.dtype == jnp.float32 and s.done.dtype == jnp.float32
