"""The MJX ``inverted_pendulum`` against gymnasium's ``InvertedPendulum-v4`` (native MuJoCo), step by step.

Brax's copy of the model drops gymnasium's ``integrator="RK4"`` (same 0.02 s
time step and 2 frames per env step, so semi-implicit Euler); ``--integrator
rk4`` restores it (docs/envs.md). From the same start state, under the same
actions (a stabilizing linear feedback plus noise, so the pole stays up for all
30 steps), the ``rk4`` port must match gymnasium's observations to float32
rounding and the ``euler`` one must not: the test pins which model each
setting simulates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmeta.algo.config import ConfigError, Config, validate
from mjxmeta.algo.envs import make_base

gym = pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

STEPS = 30
GAIN = np.array([0.5, 5.0, 0.5, 0.8])  # a = clip(GAIN . obs): keeps the pole within the 0.2 rad limit


def max_obs_gap(integrator: str, seed: int) -> float:
    """Largest |obs_mjx - obs_gym| over STEPS steps from the same start state and actions."""
    env = make_base("inverted_pendulum", integrator=integrator)
    ref = gym.make("InvertedPendulum-v4").unwrapped
    step = jax.jit(env.step)
    state = jax.jit(env.reset)(jax.random.PRNGKey(seed))
    ref.reset(seed=seed)
    ref.set_state(np.asarray(state.pipeline_state.qpos, np.float64), np.asarray(state.pipeline_state.qvel, np.float64))
    obs = np.asarray(state.obs, np.float64)
    noise = np.random.default_rng(seed).normal(0.0, 0.3, STEPS)
    gap = 0.0
    for t in range(STEPS):
        a = float(np.clip(GAIN @ obs + noise[t], -1.0, 1.0))
        state = step(state, jnp.array([a], jnp.float32))
        obs, _, terminated, _, _ = ref.step(np.array([3.0 * a]))  # gymnasium's actions are in [-3, 3]
        assert not terminated and not float(state.done), f"the pole fell at step {t}: the test's controller failed"
        gap = max(gap, float(np.max(np.abs(np.asarray(state.obs, np.float64) - obs))))
    return gap


@pytest.mark.parametrize("seed", [0])
def test_rk4_port_matches_gymnasium_and_euler_does_not(seed):
    rk4, euler = max_obs_gap("rk4", seed), max_obs_gap("euler", seed)
    assert rk4 < 1e-4, f"rk4 port differs from gymnasium's model by {rk4}"
    assert euler > 1e-3, f"Brax's Euler copy agrees with gymnasium's RK4 model to {euler}: the test lost its point"


def test_integrator_refused_for_non_mjx_env_before_any_compile():
    with pytest.raises(ConfigError, match="integrator"):
        validate(Config(env="pendulum", integrator="rk4"))
    with pytest.raises(ConfigError, match=r"integrator.*one of \('euler', 'rk4'\)"):
        validate(Config(integrator="rk2"))
