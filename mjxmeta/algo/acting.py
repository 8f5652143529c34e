"""Acting in the batched env: every step a policy takes goes through this module.

* :func:`env_step`: one step of the batched env as a :class:`~mjxmeta.algo.replay.Transition`;
* :func:`first_episode_steps` / :func:`deterministic_returns`: scanned rollouts of a
  deterministic policy from fresh resets (R-hat and D1 rollouts, evaluation);
* :func:`estimate_returns`: R-hat of pi and of the K look-ahead policies pi'_k from
  the same start states (common random numbers);
* :func:`teacher_step`: one acting step of the teacher pi_e (D0 rollouts, ``render``):
  normalize -> student's mu(s) -> teacher inputs u -> sample the unclipped action
  -> clip to [-1, 1] -> ``env.step`` -> update the teacher's per-env memory
  (fresh memory where an episode ended).

The log-probability the meta-policy gradient needs is that of the *unclipped*
sample given u (Xu et al., ICML 2018, eq. 2; docs/algorithm.md, "Teachers"),
so both are returned. After Brax's ``training/acting.py`` (``actor_step``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from mjxmeta.algo.envs import terminated
from mjxmeta.algo.replay import Transition
from mjxmeta.algo.students.base import Student, StudentState
from mjxmeta.algo.teachers import Teacher


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


def estimate_returns(env, student: Student, policies: StudentState, norm, reset_keys: jax.Array, horizon: int):
    """R-hat of P deterministic students from the *same* start states (common random numbers).

    Args:
      policies: student states stacked on a leading axis of size P (here
        P = K + 1: pi, then pi'_1..pi'_K); only what ``student.act`` reads is used.
      reset_keys: (E, 2) reset keys shared by all P actors.
      horizon: H, steps per rollout.

    Returns:
      (returns (P,) = mean over E envs of the undiscounted first-episode return
      within H steps, transitions with leading (P, H, E)).
    """
    def one(policy):
        rets, trs = deterministic_returns(env, lambda obs: student.act(policy, norm, obs), reset_keys, horizon)
        return jnp.mean(rets), trs

    return jax.vmap(one)(policies)


def straight_through_clip(raw: jax.Array) -> jax.Array:
    """clip(raw, -1, 1) in value, the identity in gradient (straight-through); same shape as ``raw``.

    Written as ``stop_gradient(clip(raw)) + (raw - stop_gradient(raw))``, so the value is bit for bit the clip's.
    """
    return jax.lax.stop_gradient(jnp.clip(raw, -1.0, 1.0)) + (raw - jax.lax.stop_gradient(raw))


def teacher_step(env, student: Student, teacher: Teacher, student_state: Any, norm, teacher_params: Any,
                 env_state: Any, memory: jax.Array, key: jax.Array, eps: jax.Array | None = None,
                 teacher_hyper: Any = None, uniform: jax.Array | None = None, pathwise: str = ""
                 ) -> tuple[Any, jax.Array, Transition, jax.Array, jax.Array, jax.Array]:
    """Acts with pi_e in a batch of B envs for one step.

    Args:
      env: batched env (:func:`mjxmeta.algo.envs.make`).
      student, student_state, norm: the student whose mu(s), Q and TD error the
        teacher reads (held fixed).
      teacher, teacher_params: the exploration policy.
      env_state: Brax state with ``obs`` (B, obs_size).
      memory: the teacher's per-env memory, leaves (B, ...) (OU noise, previous
        TD error, a per-episode latent, ...).
      key: raw key (2,) for the teacher's noise; ``fold_in(key, 1)`` draws the
        memory of the episodes that start after this step
        (:meth:`~mjxmeta.algo.teachers.base.Teacher.fresh_memory`).
      eps: optional standard-normal noise (B, A) used instead of drawing it
        from ``key`` (antithetic or common noise across candidates).
      teacher_hyper: the teacher's :class:`~mjxmeta.algo.teachers.TeacherHyper`
        (its OU scale); None = the teacher config's.
      uniform: optional bool scalar; where True the executed (and returned
        raw) actions are drawn uniformly from [-1, 1] with ``fold_in(key, 2)``
        instead of by the teacher (the warm-up of ``Config.learning_starts``).
      pathwise: "" (REINFORCE, ES), or the ``pathwise`` estimator's D0 mode
        (``meta.pathwise_dynamics``, :mod:`mjxmeta.algo.pathwise`): the executed
        action is :func:`straight_through_clip` of the sample, so its gradient
        in the teacher's params reaches r_t and s_{t+1} through ``env.step``;
        ``one_step`` holds s_t (and the memory) fixed, ``full`` lets the
        gradient through s_t into mu(s_t) too (the value is the same).

    Returns:
      (env_state, memory, transition (B, ...), done (B,) episode ended
      (termination or time limit; the env auto-resets), teacher inputs u
      (B, input_size), raw unclipped actions (B, action_size)).
    """
    if pathwise == "one_step":
        env_state, memory = jax.lax.stop_gradient((env_state, memory))
    obs = env_state.obs
    obs_n = student.normalize(norm, obs)
    mu = student.act(student_state, norm, obs)
    def actor_fn(delta):  # mu(s_b; theta + delta_b) in every env b (param_noise)
        actor = student.actor(student_state)
        return jax.vmap(lambda d, o: student.mu(jax.tree.map(jnp.add, actor, d), norm, o))(delta, obs)

    u = teacher.inputs(obs_n, mu, lambda: student.q(student_state, norm, obs, mu), memory, actor_fn)
    raw, memory = teacher.sample(teacher_params, memory, key, u, eps, teacher_hyper)
    if uniform is not None:
        raw = jnp.where(uniform, jax.random.uniform(jax.random.fold_in(key, 2), raw.shape, raw.dtype, -1.0, 1.0), raw)
    if pathwise:
        held = teacher.held_action(u) if pathwise == "full" else None
        if held is not None:  # zero in value; carries d mu(s_t) / d s_t
            raw = raw + (held - jax.lax.stop_gradient(held))
        action = straight_through_clip(raw)
    else:
        action = jnp.clip(raw, -1.0, 1.0)
    env_state, tr, done = env_step(env, env_state, action)
    memory = teacher.observe(teacher_params, memory, done, lambda: student.td_error(student_state, norm, tr),
                             jax.random.fold_in(key, 1))
    return env_state, memory, tr, done, u, raw

