"""Environment registry: ``make(name)`` -> batched, auto-resetting Brax env.

Every env returned by :func:`make` takes a batch of raw PRNG keys of shape
(B, 2) in ``reset`` and actions of shape (B, action_size) in [-1, 1] in
``step``. Its ``State`` carries, besides Brax's ``obs``/``reward``/``done``:

* ``info['truncation']`` (B,) float32: 1 where the episode hit the time limit
  without terminating (Brax ``EpisodeWrapper``);
* ``info['final_obs']`` (B, obs_size): the true last observation s_{t+1} of the
  step, *before* the auto-reset replaced ``obs`` with a fresh start state, so a
  critic can bootstrap through truncation;
* ``info['pool']``, ``info['pool_taken']``: the auto-reset pool of fresh start
  states (leading axis P) and how many entries were taken since it was drawn;
* every leaf strong-typed with the dtype ``reset`` gives it, so a ``lax.scan``
  carry built from ``reset`` never changes type.

Unlike Brax's ``AutoResetWrapper`` (which always returns to the episode's first
state), a finished episode restarts from a fresh random start state, taken
from a pool drawn by one batched reset (:class:`FreshAutoResetWrapper`), so
``step`` itself never resets (MJX reset runs the forward kinematics).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import Env, State, Wrapper
from brax.envs.wrappers.training import EpisodeWrapper, VmapWrapper

from mjxmeta.algo.config import ENV_NAMES, INTEGRATORS, MJX_ENVS, PLAYGROUND_ENVS, default_episode_length

BRAX_NAMES = {name: name for name in MJX_ENVS}  # our name -> Brax's registry name (the same today)


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


POOL_INFO = ("pool", "pool_taken")  # info entries shared by the whole batch (no env axis)
_OWN_INFO = ("reset_key", "final_obs") + POOL_INFO


class FreshAutoResetWrapper(Wrapper):
    """Auto-reset to a *fresh* random start state from a pool; keeps the true final obs.

    Expects a batched env (``VmapWrapper`` + ``EpisodeWrapper`` below it). With
    B envs the state holds a pool of P = ``starts_per_env`` * B fresh start
    states (``info['pool']``, leading axis P) drawn by one batched reset. An env
    whose episode ends takes the next unused pool entry (index = entries taken
    so far + its rank among this step's finishers), so ``step`` runs no reset.
    :meth:`refill` draws a new pool; the trainer calls it once per iteration.
    If more than P episodes end between refills, entries are reused in order
    (counted by :func:`reused_starts`).
    """

    def __init__(self, env: Env, starts_per_env: int = 1):
        super().__init__(env)
        if starts_per_env < 1:
            raise ValueError(f"starts_per_env must be >= 1, got {starts_per_env}")
        self.starts_per_env = starts_per_env

    @property
    def observation_size(self) -> int:
        """Observation width, from the shapes of one reset under ``jax.eval_shape`` (traced, never run).

        Brax's ``Env.observation_size`` runs an eager, op-by-op reset; for an MJX
        env that is hundreds of tiny XLA compiles (measured: ~570, 35-90 s on a
        loaded 2-core CPU) before the first real program, in every process.
        """
        return int(jax.eval_shape(self.env.reset, jax.ShapeDtypeStruct((1, 2), jnp.uint32)).obs.shape[-1])

    def _pool(self, keys: jax.Array) -> dict:
        """P = starts_per_env * B start states (pipeline_state, obs) from keys (B, 2)."""
        sub = jax.vmap(lambda k: jax.random.split(k, self.starts_per_env))(keys).reshape(-1, 2)
        fresh = self.env.reset(sub)
        return {"pipeline_state": fresh.pipeline_state, "obs": fresh.obs}

    def reset(self, rng: jax.Array) -> State:
        """B start states from raw keys (B, 2), plus a fresh pool."""
        keys = jax.vmap(lambda k: jax.random.split(k, 3))(rng)  # (B, 3, 2)
        state = self.env.reset(keys[:, 0])
        state.info["reset_key"] = keys[:, 2]
        state.info["final_obs"] = state.obs
        state.info["pool"] = self._pool(keys[:, 1])
        state.info["pool_taken"] = jnp.zeros((), jnp.int32)
        return strong(state)

    def refill(self, state: State) -> State:
        """Replaces the pool with P new fresh start states (P resets); nothing else changes."""
        keys = jax.vmap(jax.random.split)(state.info["reset_key"])
        info = dict(state.info, reset_key=keys[:, 0], pool=self._pool(keys[:, 1]),
                    pool_taken=jnp.zeros((), jnp.int32))
        return strong(state.replace(info=info))

    def refill_if_short(self, state: State) -> State:
        """:meth:`refill` only if the next step could use more entries than the pool has left.

        A ``lax.cond``: outside ``vmap`` it draws a pool only when needed (every
        start fresh at little cost, e.g. for rendering); under ``vmap`` both
        branches run, so batched callers should :meth:`refill` on a schedule.
        """
        short = state.info["pool_taken"] + state.done.shape[0] > state.info["pool"]["obs"].shape[0]
        return jax.lax.cond(short, self.refill, lambda s: s, state)

    def step(self, state: State, action: jax.Array) -> State:
        info = {k: v for k, v in state.info.items() if k not in _OWN_INFO}
        # Zero ``done`` before stepping (as Brax's AutoResetWrapper does): Brax's
        # halfcheetah and reacher pass ``state.done`` through instead of
        # recomputing it, so a done carried in would stay 1 forever.
        nstate = self.env.step(state.replace(info=info, done=jnp.zeros_like(state.done)), action)
        done = nstate.done > 0
        pool, taken = state.info["pool"], state.info["pool_taken"]
        size = pool["obs"].shape[0]
        rank = jnp.cumsum(done.astype(jnp.int32)) - 1  # this env's place among this step's finishers
        fresh = jax.tree.map(lambda x: x[(taken + rank) % size], pool)

        def where_done(new, old):
            d = jnp.reshape(done, done.shape + (1,) * (old.ndim - done.ndim))
            return jnp.where(d, new, old)

        pipeline_state = jax.tree.map(where_done, fresh["pipeline_state"], nstate.pipeline_state)
        obs = where_done(fresh["obs"], nstate.obs)
        info = dict(nstate.info)
        info["steps"] = jnp.where(done, jnp.zeros_like(info["steps"]), info["steps"])
        info["reset_key"] = state.info["reset_key"]
        info["final_obs"] = nstate.obs
        info["pool"] = pool
        info["pool_taken"] = taken + jnp.sum(done, dtype=jnp.int32)
        out = nstate.replace(pipeline_state=pipeline_state, obs=obs, info=info)
        return strong(out)


def split_pool(state: State) -> tuple[State, dict]:
    """(state without the start pool, the pool entries ``POOL_INFO``): the first has an env axis on every leaf."""
    own = state.replace(info={k: v for k, v in state.info.items() if k not in POOL_INFO})
    return own, {k: state.info[k] for k in POOL_INFO}


def join_pool(own: State, pool: dict) -> State:
    """Inverse of :func:`split_pool`."""
    return own.replace(info={**own.info, **pool})


def reused_starts(state: State) -> jax.Array:
    """Auto-resets since the last pool draw that reused a pool entry (int32 scalar; 0 = all fresh)."""
    size = state.info["pool"]["obs"].shape[0]
    return jnp.maximum(state.info["pool_taken"] - size, 0)


def make_base(name: str, backend: str = "mjx", integrator: str = "euler") -> Env:
    """The unbatched env ``name`` with actions in [-1, 1].

    ``integrator`` (:data:`mjxmeta.algo.config.INTEGRATORS`): ``rk4`` replaces the
    integrator of a Brax MJX env's model (Brax's copies drop gymnasium's
    ``integrator="RK4"``); the time step and frames per step stay.

    Raises:
      ValueError: if ``name`` is not one of :data:`mjxmeta.algo.config.ENV_NAMES`, ``integrator``
        not one of :data:`mjxmeta.algo.config.INTEGRATORS`, or not ``euler`` for an env outside
        :data:`mjxmeta.algo.config.MJX_ENVS`.
      ImportError: for a :data:`mjxmeta.algo.config.PLAYGROUND_ENVS` name without the extra
        ``mjxmeta[playground]`` installed.
    """
    if integrator not in INTEGRATORS:
        raise ValueError(f"unknown integrator {integrator!r}: valid are {INTEGRATORS}")
    if integrator != "euler" and name not in MJX_ENVS:
        raise ValueError(f"integrator {integrator!r} applies only to the MJX envs {MJX_ENVS}, not {name!r}")
    if name == "pendulum":
        from mjxmeta.algo.envs.pendulum import Pendulum
        env = Pendulum()
        return ActionRescaleWrapper(env, env.action_low, env.action_high)
    if name == "mountain_car_continuous":  # actions already in [-1, 1]
        from mjxmeta.algo.envs.mountain_car import MountainCarContinuous
        return MountainCarContinuous()
    if name in PLAYGROUND_ENVS:  # actions already in [-1, 1]; needs the extra mjxmeta[playground]
        from mjxmeta.algo.envs.playground import PlaygroundEnv
        return PlaygroundEnv(name)
    if name in BRAX_NAMES:
        from brax import envs as brax_envs
        env = brax_envs.get_environment(BRAX_NAMES[name], backend=backend)
        if integrator == "rk4":
            from mujoco import mjx
            env.sys = env.sys.tree_replace({"opt.integrator": mjx.IntegratorType.RK4})
        return env
    raise ValueError(f"unknown env {name!r}: valid names are {ENV_NAMES}")


def make(name: str, episode_length: int = 0, backend: str = "mjx", starts_per_env: int = 1,
         integrator: str = "euler") -> Env:
    """Batched, auto-resetting env ``name`` (see module docstring).

    Args:
      name: one of :data:`mjxmeta.algo.config.ENV_NAMES`.
      episode_length: time limit in steps; 0 =
        :func:`mjxmeta.algo.config.default_episode_length`.
      backend: Brax physics backend for the MuJoCo envs (default ``"mjx"``).
      starts_per_env: fresh start states per env in the auto-reset pool (see
        :class:`FreshAutoResetWrapper`).
      integrator: the MJX envs' integrator (:func:`make_base`).

    Raises:
      ValueError: on an unknown name (the message lists the valid ones) or
        ``starts_per_env`` < 1.
    """
    env = make_base(name, backend, integrator)
    length = episode_length or default_episode_length(name)
    return FreshAutoResetWrapper(EpisodeWrapper(VmapWrapper(env), length, 1), starts_per_env)


def terminated(state: State) -> jax.Array:
    """1.0 where the step ended in a true termination (not a time-limit truncation)."""
    return state.done * (1.0 - state.info["truncation"])
