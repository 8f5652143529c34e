"""The pathwise (reparameterized) meta-gradient: ``teacher.estimator = pathwise``.

Every step from the teacher's parameters theta to the meta-reward is a JAX function, so instead of
REINFORCE's score function (eq. 2 of Xu, Liu, Zhao, Peng, ICML 2018) the meta-objective can be
differentiated directly (docs/algorithm.md, "The pathwise estimator"):

* D0 actions reparameterized, a_t = clip(m_theta(s_t) + sigma_theta eps_t) with eps_t fixed and a
  straight-through clip (value of the clip, gradient of the identity;
  :func:`mjxmeta.algo.acting.straight_through_clip`); (r_t, s_{t+1}) differentiated through ``env.step``,
  with s_t held fixed (``one_step``) or through the whole rollout (``full``);
* the look-ahead pi'_k = DDPG(pi, D0_k) differentiated through its ``lax.scan`` of updates (Adam
  included) with respect to the D0 rows of its minibatches;
* the objective of candidate k, from the E common start states of R-hat (common random numbers),

      R_grad(pi'_k) = sum_{t < H_grad} gamma^t r_t + gamma^H_grad Q_pi(s_H_grad, pi'_k(s_H_grad)),

  the first H_grad steps of pi'_k's deterministic R-hat rollout (no extra env steps) closed with the
  *student's* critic Q_pi, held fixed: D0 cannot change it, so the teacher cannot raise its
  objective by inflating a critic estimate, only by moving pi' to states and actions Q_pi values.

The gradient is that of J(theta) = 1/K sum_k R_grad(pi'_k). The logged meta-reward stays
R-hat(pi'_k) - R-hat(pi) over the full horizon H (eq. 1).

Adam's sqrt(v) has an infinite derivative at v = 0, and a look-ahead step whose minibatch gives a
parameter an exact zero gradient (a ReLU unit dead on the whole minibatch) while its second moment
is still 0 (a fresh student) turns the whole second-order term into NaN. :func:`floor_second_moment`
lifts every Adam second moment of the look-ahead's *copy* to at least :data:`NU_FLOOR` first (1e-20:
sqrt = 1e-10, far below Adam's eps = 1e-8, so the update changes by < 1 % only where v was 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mjxmeta.algo import acting
from mjxmeta.algo.students.base import Student, StudentState

NU_FLOOR = 1e-20


def floor_second_moment(state: StudentState, floor: float = NU_FLOOR) -> StudentState:
    """``state`` with every Adam second moment ``nu`` (any ``optax.ScaleByAdamState`` inside) at least ``floor``.

    Works for any student whose optimizer states are optax Adam states (DDPG, TD3). Where nu > floor
    the value is unchanged.
    """
    def lift(x):
        if isinstance(x, optax.ScaleByAdamState):
            return x._replace(nu=jax.tree.map(lambda v: jnp.maximum(v, jnp.asarray(floor, v.dtype)), x.nu))
        return x

    return jax.tree.map(lift, state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))


def returns_and_objective(env, student: Student, policies: StudentState, critic: StudentState, norm,
                          reset_keys: jax.Array, horizon: int, grad_horizon: int, gamma: float, remat: bool = True):
    """R-hat and R_grad of P deterministic students from the *same* start states.

    The first ``grad_horizon`` steps of each rollout carry gradients; the remaining ``horizon -
    grad_horizon`` steps continue from a stop-gradient copy of the state, only to finish R-hat and D1
    (so R-hat is exactly :func:`mjxmeta.algo.acting.estimate_returns`'s).

    Args:
      policies: student states stacked on a leading axis P (pi, pi'_1..pi'_K).
      critic: the student state whose critic closes the objective (``student.q``; pi's, held fixed).
      reset_keys: (E, 2) reset keys shared by all P policies.
      horizon: H, steps of the R-hat rollout; grad_horizon: H_grad, 1 <= H_grad <= H.
      gamma: discount of R_grad (the student's).
      remat: recompute each differentiated step in the backward pass (``jax.checkpoint``).

    Returns:
      (returns (P,) undiscounted first-episode return within H, mean over E;
       objective (P,) R_grad, mean over E, in reward units;
       transitions with leading (P, H, E), stop-gradient).

    Raises:
      ValueError: grad_horizon outside [1, horizon].
    """
    if not 1 <= grad_horizon <= horizon:
        raise ValueError(f"grad_horizon must lie in [1, horizon={horizon}], got {grad_horizon}")
    discount = gamma ** jnp.arange(grad_horizon, dtype=jnp.float32)

    def one(policy):
        act = lambda obs: student.act(policy, norm, obs)  # noqa: E731
        carry, (head, alive) = acting.first_episode_steps(env, act, acting.first_episode_start(env, reset_keys),
                                                           grad_horizon, remat=remat)
        s_h = head.next_obs[-1]  # the true s_{H_grad} even where the env auto-reset on the last step
        open_end = alive[-1] * (1.0 - head.terminated[-1])  # first episode still running (or cut by the time limit)
        q_end = student.q(critic, norm, s_h, act(s_h))
        objective = jnp.sum(discount[:, None] * alive * head.reward, axis=0) + gamma ** grad_horizon * open_end * q_end
        carry, (tail, _) = acting.first_episode_steps(env, act, jax.lax.stop_gradient(carry), horizon - grad_horizon)
        trs = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), jax.lax.stop_gradient(head), tail)
        return jnp.mean(carry[2]), jnp.mean(objective), trs

    return jax.vmap(one)(policies)
