"""Tests for ``mjxmeta.algo.envs.pendulum.Pendulum`` against gymnasium ``Pendulum-v1``.

Numerical note (why the gymnasium comparison is split in two tests)
------------------------------------------------------------------
Gymnasium integrates in float64, ``Pendulum`` in float32. The randomly forced,
torque-saturated pendulum is sensitive to initial conditions: a float32
rounding difference (~1e-7 relative) is amplified step after step. Measured on
1000 random starts and uniform[-2.5, 2.5] action sequences, a *free-running*
float32 rollout left the 1e-4 band around the float64 one after as few as 40
steps (median > 200, 5th percentile ~84), and ~30 % of 200-step rollouts
exceeded it -- including a pure-NumPy float32 copy of gymnasium's code. That
is a property of the dynamics, not of the port, so:

* ``test_step_matches_gymnasium_200_steps`` runs both envs for 200 steps on the
  same actions and, before each step, re-synchronises ours to gymnasium's
  state (rounded to float32). This checks every step's dynamics, clipping and
  reward to 1e-4 along a whole 200-step trajectory.
* ``test_open_loop_rollout_matches_gymnasium`` checks a free-running jitted
  ``lax.scan`` rollout for the first ``OPEN_LOOP_STEPS`` = 25 steps (worst
  measured error 5e-6 there, 20x below the tolerance); for the full 200 steps
  it only checks invariants (finite, |theta_dot| <= 8, reward bounds).
"""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.wrappers import training as brax_training

from mjxmeta.algo.envs.pendulum import Pendulum

N_STEPS = 200
OPEN_LOOP_STEPS = 25
OBS_ATOL = 1e-4
# Rewards are in [-16.27, 0]. Ours is float32, gymnasium's is float64. The
# dominant error is rounding gymnasium's unbounded theta (|theta| reaches ~56
# rad in CASES, up to ~100 rad possible in 200 steps; float32 half-ulp there
# <= 4e-6) to float32; the cost's d/dtheta is 2*angle_normalize(theta) <= 2*pi,
# giving <~3e-5 absolute, plus a few float32 ulps (~1e-6 at |r| ~ 16) from the
# arithmetic itself. Measured worst case over CASES: 1.1e-5 (obs: 3.3e-6).
# atol=1e-4 (for rewards near 0, upright) + rtol=1e-5 leaves a ~5-10x margin
# while still catching any wrong coefficient (the smallest term, 0.001*u^2,
# changes the reward by up to 4e-3; an unclipped 2.5 torque by 2.25e-3).
REWARD_RTOL = 1e-5
REWARD_ATOL = 1e-4
MIN_REWARD = -(np.pi**2 + 0.1 * 8**2 + 0.001 * 2**2)  # -16.2736044

# (seed, g, start state or None for a random one from the seed).
CASES = [
    (0, 10.0, None),
    (1, 10.0, None),
    (2, 10.0, None),
    (3, 9.81, None),
    # hanging down, near the wrap point of angle_normalize
    (4, 10.0, (np.pi - 1e-3, 0.0)),
    # fast: theta_dot clip at max_speed = 8 is hit immediately
    (5, 10.0, (0.5, 7.9)),
    # large unwrapped angle: exercises angle_normalize in the reward
    (6, 10.0, (5.0 * np.pi + 0.3, -7.5)),
]


def _case_data(seed, start, n_steps=N_STEPS):
  """float32 start (theta, theta_dot) and (n_steps, 1) actions in [-2.5, 2.5]."""
  rs = np.random.default_rng(seed)
  if start is None:
    start = (rs.uniform(-np.pi, np.pi), rs.uniform(-1.0, 1.0))
  theta0, theta_dot0 = (np.float32(x) for x in start)
  # Wider than the torque limit (2.0) so that clipping is exercised.
  actions = rs.uniform(-2.5, 2.5, size=(n_steps, 1)).astype(np.float32)
  assert (np.abs(actions) > 2.0).any()
  return theta0, theta_dot0, actions


def _gym_env(g, seed, theta0, theta_dot0):
  env = gym.make("Pendulum-v1", g=g)
  env.reset(seed=seed)
  # float64, as gymnasium's own reset produces; the values are float32-exact
  # so both envs start from the identical state.
  env.unwrapped.state = np.array([theta0, theta_dot0], dtype=np.float64)
  return env


_STEP_CACHE = {}


def _jitted_step(env):
  """One jitted step per g (g is a Python constant baked into the trace)."""
  if env.g not in _STEP_CACHE:
    _STEP_CACHE[env.g] = jax.jit(env.step)
  return _STEP_CACHE[env.g]


@pytest.mark.parametrize("seed,g,start", CASES)
def test_step_matches_gymnasium_200_steps(seed, g, start):
  theta0, theta_dot0, actions = _case_data(seed, start)
  genv = _gym_env(g, seed, theta0, theta_dot0)
  env = Pendulum(g=g)
  step = _jitted_step(env)

  speed_clipped = False
  for t, action in enumerate(actions):
    # Re-sync to gymnasium's (float64) state, see module docstring.
    theta, theta_dot = genv.unwrapped.state
    state = env.reset_to(theta, theta_dot)
    np.testing.assert_allclose(
        np.asarray(state.obs), genv.unwrapped._get_obs(), atol=OBS_ATOL
    )

    g_obs, g_rew, g_term, g_trunc, _ = genv.step(action)
    state = step(state, jnp.asarray(action))

    np.testing.assert_allclose(
        np.asarray(state.obs), g_obs, atol=OBS_ATOL, rtol=0,
        err_msg=f"obs mismatch at step {t}",
    )
    np.testing.assert_allclose(
        float(state.reward), float(g_rew), rtol=REWARD_RTOL, atol=REWARD_ATOL,
        err_msg=f"reward mismatch at step {t}",
    )
    assert not g_term
    assert float(state.done) == 0.0
    speed_clipped |= abs(float(genv.unwrapped.state[1])) == 8.0
  # Gymnasium's TimeLimit(200) truncates exactly at the last step.
  assert g_trunc
  # The fast starts really exercise the theta_dot clip at max_speed.
  if start is not None and abs(start[1]) > 7.0:
    assert speed_clipped


@pytest.mark.parametrize("seed,g,start", CASES)
def test_open_loop_rollout_matches_gymnasium(seed, g, start):
  theta0, theta_dot0, actions = _case_data(seed, start)
  genv = _gym_env(g, seed, theta0, theta_dot0)
  g_obs, g_rew = [], []
  for action in actions:
    o, r, *_ = genv.step(action)
    g_obs.append(o)
    g_rew.append(r)
  g_obs, g_rew = np.array(g_obs), np.array(g_rew)

  env = Pendulum(g=g)

  def body(state, action):
    state = env.step(state, action)
    return state, (state.obs, state.reward, state.done, state.pipeline_state)

  rollout = jax.jit(lambda s, a: jax.lax.scan(body, s, a))
  _, (obs, rew, done, ps) = rollout(
      env.reset_to(theta0, theta_dot0), jnp.asarray(actions)
  )
  obs, rew, done, ps = map(np.asarray, (obs, rew, done, ps))
  assert obs.shape == (N_STEPS, 3) and rew.shape == (N_STEPS,)

  h = OPEN_LOOP_STEPS
  np.testing.assert_allclose(obs[:h], g_obs[:h], atol=OBS_ATOL, rtol=0)
  np.testing.assert_allclose(
      rew[:h], g_rew[:h], rtol=REWARD_RTOL, atol=REWARD_ATOL
  )
  # Invariants over the whole (chaotic) 200-step rollout.
  assert np.isfinite(obs).all() and np.isfinite(rew).all()
  assert (done == 0.0).all()
  assert (np.abs(ps[:, 1]) <= 8.0).all()
  np.testing.assert_allclose(obs[:, 2], ps[:, 1])
  np.testing.assert_allclose(obs[:, 0] ** 2 + obs[:, 1] ** 2, 1.0, atol=1e-5)
  assert (rew <= 0.0).all() and (rew >= MIN_REWARD - 1e-4).all()


def _leaf_sig(tree):
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  return treedef, [(x.shape, x.dtype, x.weak_type) for x in leaves]


def test_jit_reset_range_and_dtypes():
  env = Pendulum()
  reset = jax.jit(env.reset)
  step = _jitted_step(env)

  # Ranges, many keys at once (jit of vmap).
  keys = jax.random.split(jax.random.PRNGKey(0), 4096)
  batch = jax.jit(jax.vmap(env.reset))(keys)
  theta, theta_dot = np.asarray(batch.pipeline_state).T
  assert (np.abs(theta) <= np.pi).all() and (np.abs(theta_dot) <= 1.0).all()
  # Not degenerate: covers most of the range.
  assert theta.min() < -3.0 and theta.max() > 3.0
  assert theta_dot.min() < -0.95 and theta_dot.max() > 0.95
  np.testing.assert_allclose(
      np.asarray(batch.obs),
      np.stack([np.cos(theta), np.sin(theta), theta_dot], -1),
      atol=1e-6,
  )

  # Single-key jitted reset: shapes, strong float32 everywhere.
  s0 = reset(jax.random.PRNGKey(42))
  assert s0.pipeline_state.shape == (2,)
  assert s0.obs.shape == (env.observation_size,) == (3,)
  assert s0.reward.shape == () and s0.done.shape == ()
  assert float(s0.done) == 0.0
  assert s0.metrics == {} and s0.info == {}
  treedef0, sig0 = _leaf_sig(s0)
  assert all(dt == jnp.float32 and not weak for _, dt, weak in sig0), sig0

  # Jitted step leaves match reset's (shape, dtype, weak_type), so a State can
  # be a lax.scan carry without retracing / dtype-mismatch errors.
  s1 = step(s0, jnp.zeros((env.action_size,), jnp.float32))
  assert _leaf_sig(s1) == (treedef0, sig0)
  # Same for eager reset, reset_to (Python floats in) and a Python-float action.
  assert _leaf_sig(env.reset(jax.random.PRNGKey(1))) == (treedef0, sig0)
  assert _leaf_sig(env.reset_to(0.1, -0.2)) == (treedef0, sig0)
  assert _leaf_sig(step(s0, jnp.array([1.0]))) == (treedef0, sig0)
  # Carrying the state through a scan must not raise.
  jax.jit(
      lambda s: jax.lax.scan(
          lambda c, _: (env.step(c, jnp.ones((1,))), None), s, None, length=3
      )[0]
  )(s0)


def test_action_clipping_and_bounds():
  env = Pendulum()
  step = _jitted_step(env)
  assert env.action_size == 1
  np.testing.assert_array_equal(np.asarray(env.action_low), [-2.0])
  np.testing.assert_array_equal(np.asarray(env.action_high), [2.0])
  s = env.reset_to(0.3, -0.4)
  for over, lim in ((5.0, 2.0), (-7.0, -2.0)):
    a = step(s, jnp.array([over], jnp.float32))
    b = step(s, jnp.array([lim], jnp.float32))
    np.testing.assert_array_equal(np.asarray(a.pipeline_state), b.pipeline_state)
    assert float(a.reward) == float(b.reward)
  # Upright at rest with no torque: zero cost.
  assert float(step(env.reset_to(0.0, 0.0), jnp.zeros((1,))).reward) == 0.0


def test_brax_training_wrappers():
  """Vmap + EpisodeWrapper(200) + AutoReset: step must keep state.info."""
  env = brax_training.wrap(Pendulum(), episode_length=N_STEPS, action_repeat=1)
  n = 8
  state = jax.jit(env.reset)(jax.random.split(jax.random.PRNGKey(0), n))

  def body(s, a):
    s = env.step(s, a)
    return s, (s.done, s.reward, s.info["steps"])

  acts = jax.random.uniform(
      jax.random.PRNGKey(1), (N_STEPS + 5, n, 1), minval=-2.0, maxval=2.0
  )
  _, (done, rew, steps) = jax.jit(lambda s, a: jax.lax.scan(body, s, a))(
      state, acts
  )
  done, rew, steps = map(np.asarray, (done, rew, steps))
  assert (done[: N_STEPS - 1] == 0).all()
  assert (done[N_STEPS - 1] == 1).all() and (done[N_STEPS:] == 0).all()
  np.testing.assert_array_equal(steps[N_STEPS - 1], N_STEPS)
  np.testing.assert_array_equal(steps[N_STEPS], 1)  # auto-reset happened
  assert np.isfinite(rew).all()
