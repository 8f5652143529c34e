"""MuJoCo Playground's dm_control suite tasks as Brax ``Env``s (optional extra ``mjxmeta[playground]``).

Source: MuJoCo Playground (Zakka et al., 2025, "MuJoCo Playground",
arXiv:2502.08844), package ``playground`` (import ``mujoco_playground``),
whose ``dm_control_suite`` ports the DeepMind Control Suite (Tassa et al.,
2018, arXiv:1801.00690) to MJX. The sparse tasks pay a reward only inside a
goal region: ``cartpole_swingup_sparse`` 1 per step with the pole within
cos(angle) >= 0.995 of upright and the cart within ±0.25 m, else 0;
``acrobot_swingup_sparse`` 1 with the tip inside the target sphere;
``ball_in_cup`` 1 with the ball inside the cup. None terminates (``done`` is 1
only on a NaN state); the time limit (1000 steps) comes from the registry's
``EpisodeWrapper``.

Playground's envs default to MuJoCo Warp (``impl="warp"``); they are loaded
here with ``config_overrides={"impl": "jax"}``, i.e. pure MJX, so they jit,
vmap and scan like the Brax MJX envs.

Playground's ``State`` is Brax's with ``data`` in place of
``pipeline_state``; :class:`PlaygroundEnv` converts between the two, so the
registry's wrappers (``VmapWrapper``, ``EpisodeWrapper``,
``FreshAutoResetWrapper``) apply unchanged. Its own ``info`` entries (e.g.
``rng``) and ``metrics`` (reward terms) are passed through.
"""

from __future__ import annotations

import jax
from brax.envs.base import Env, State

from mjxmeta.algo.config import PLAYGROUND_ENVS


class PlaygroundEnv(Env):
    """A Playground ``MjxEnv`` behind Brax's ``Env`` interface (``State.pipeline_state`` = Playground ``data``).

    Args:
      name: one of :data:`mjxmeta.algo.config.PLAYGROUND_ENVS` (mjxmeta's name).

    Raises:
      ImportError: if the extra ``mjxmeta[playground]`` is not installed
        (config validation reports this earlier, as a ``ConfigError``).
      KeyError: if ``name`` is not a Playground env of the registry.
    """

    def __init__(self, name: str):
        try:
            from mujoco_playground import registry
        except ImportError as e:  # pragma: no cover - validated in config first
            raise ImportError(f"env {name!r} needs the optional extra mjxmeta[playground] "
                              "(pip install 'mjxmeta[playground]')") from e
        self.name = name
        self._env = registry.load(PLAYGROUND_ENVS[name], config_overrides={"impl": "jax"})

    @staticmethod
    def _to_brax(s) -> State:
        return State(pipeline_state=s.data, obs=s.obs, reward=s.reward, done=s.done, metrics=s.metrics,
                     info=s.info)

    def _to_playground(self, s: State):
        from mujoco_playground._src.mjx_env import State as PState
        return PState(data=s.pipeline_state, obs=s.obs, reward=s.reward, done=s.done, metrics=s.metrics,
                      info=s.info)

    def reset(self, rng: jax.Array) -> State:
        """A start state from one PRNG key (shape ``(2,)``); obs shape ``(observation_size,)``."""
        return self._to_brax(self._env.reset(rng))

    def step(self, state: State, action: jax.Array) -> State:
        """One control step (``dt`` s) under ``action`` of shape ``(action_size,)`` in [-1, 1]."""
        return self._to_brax(self._env.step(self._to_playground(state), action))

    @property
    def observation_size(self) -> int:
        """Observation width, from ``jax.eval_shape`` of a reset (traced, never run)."""
        return int(jax.eval_shape(self.reset, jax.ShapeDtypeStruct((2,), jax.numpy.uint32)).obs.shape[-1])

    @property
    def action_size(self) -> int:
        """Actuator count; actions are in [-1, 1] (the suite's control ranges)."""
        return int(self._env.action_size)

    @property
    def dt(self) -> float:
        """Seconds per control step."""
        return float(self._env.dt)

    @property
    def mj_model(self):
        """The task's ``mujoco.MjModel``."""
        return self._env.mj_model

    @property
    def backend(self) -> str:
        """``'mjx'``: MuJoCo XLA (``impl='jax'``)."""
        return "mjx"
