"""The fused trainer: Algorithm 1 ("Learning to Explore") inside one ``lax.scan``.

``Trainer(config)`` does all static work (env, networks, sizes); its pure
functions then run on an explicit :class:`TrainState`:

* ``init(key, hyper) -> TrainState`` for one run (a seed, and one combination
  of a hyperparameter sweep, :class:`Hyper`);
* ``iteration(state) -> (state, metrics)``: one pass of Algorithm 1;
* ``run(state, n)``: ``n`` iterations in a ``lax.scan``;
* ``evaluate(state, key)``: deterministic returns of the student.

Nothing here jits, places arrays on devices or touches the disk:
:mod:`mjxmeta.runs.programs` turns these functions into ``jit(vmap(.))``
programs over the run axis R = V * S (V combinations of ``config.sweep`` x
S seeds). The swept hyperparameters live in the state (``TrainState.hyper``),
so one program serves every combination, as in rejax (vmappable
hyperparameters).

Shapes inside one iteration (one seed): K candidates, N teacher envs each,
T steps; E R-hat envs, H steps; U student updates. Env steps counted per
iteration: K*N*T + E*H*(K+1) (meta teachers) or N*T (noise teachers).
"""

from __future__ import annotations

import dataclasses
import functools

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mjxmeta.algo import acting, diagnostics, estimators, lookahead, pathwise, students, teachers
from mjxmeta.algo.acting import deterministic_returns, teacher_step
from mjxmeta.algo.config import Config, point_config, sweep_points
from mjxmeta.algo.envs import join_pool, make, reused_starts, split_pool, strong
from mjxmeta.algo.replay import BufferState, Replay, Transition, flatten_batch
from mjxmeta.algo.students import StudentState, init_normalizer, update_normalizer
from mjxmeta.algo.teachers import TeacherHyper, TeacherState


@struct.dataclass
class Hyper:
    """The hyperparameters one run reads as arrays: what ``config.sweep`` varies (a leading run axis when batched).

    Attributes:
      student: the student's (:meth:`~mjxmeta.algo.students.base.Student.hyper`;
        DDPG: actor_lr, critic_lr, tau).
      lookahead: the look-ahead's: the student's with the learning rates
        times ``meta.lookahead_lr_scale``.
      teacher: :class:`~mjxmeta.algo.teachers.TeacherHyper` (meta-step lr, initial
        log sigma parameter, OU scale).
    """

    student: Any
    lookahead: Any
    teacher: TeacherHyper


@struct.dataclass
class TrainState:
    """Everything the next iteration reads, for one run (leading run axis R when batched).

    Attributes:
      student: the student's state (:class:`~mjxmeta.algo.students.base.Student`;
        for DDPG: actor, critic, targets and Adam states).
      normalizer: running observation statistics (Brax ``running_statistics``).
      teacher: teacher params, optimizer state, per-env memory, meta-reward EMA.
      buffer: replay buffer B (data, cursors, sampling key).
      env_state: Brax state of the K*N teacher envs (episodes continue across
        iterations).
      key: raw PRNG key (2,) uint32.
      iteration: int32 iterations done.
      env_steps: int32 env steps used (D0 + D1 + R-hat rollouts).
      visits: (log_every * v, obs_size) raw D0 observations sampled uniformly,
        v per iteration, overwritten chunk by chunk (state-visitation plots);
        v = ``config.visits_per_iteration`` (a one-row placeholder when
        disabled).
      meta_diag: running meta-gradient diagnostics (previous gradient, cosine
        EMA, distance travelled by the teacher).
      hyper: the run's hyperparameters (:class:`Hyper`), constant through the run.
    """

    student: StudentState
    normalizer: object
    teacher: TeacherState
    buffer: BufferState
    env_state: object
    key: jax.Array
    iteration: jax.Array
    env_steps: jax.Array
    visits: jax.Array
    meta_diag: diagnostics.GradientDiagnostics
    hyper: Hyper


class Trainer:
    """Algorithm 1 for ``config``, a validated config: runs start where it is checked, once, before anything
    compiles (:func:`mjxmeta.train`, the CLI; a config read from a run directory is checked as it is read)."""

    def __init__(self, config: Config):
        self.config = config
        c = config
        self.env = make(c.env, c.resolved_episode_length, starts_per_env=c.resolved_reset_pool,
                        integrator=c.integrator)
        self.obs_size = int(self.env.observation_size)
        self.action_size = int(self.env.action_size)
        self.student = students.make(c.student, self.obs_size, self.action_size)
        self.teacher = teachers.make(c.teacher, self.obs_size, self.action_size, c.resolved_episode_length,
                                     self.student)
        self.replay = Replay(c.student.buffer_size, c.student.batch_size, self.obs_size, self.action_size)

    # ------------------------------------------------------------------ init
    def seed_index(self) -> jax.Array:
        """(R,) seed index of every run: run r = v * S + s has seed s (combination v of the sweep)."""
        return jnp.arange(self.config.num_runs) % self.config.seeds

    def seed_keys(self) -> jax.Array:
        """(R, 2) keys; run r with seed s uses ``fold_in(PRNGKey(config.seed), s)``, as seed s of an unswept run."""
        base = jax.random.PRNGKey(self.config.seed)
        return jax.vmap(lambda i: jax.random.fold_in(base, i))(self.seed_index())

    def hyper(self, config: Config | None = None) -> Hyper:
        """The :class:`Hyper` of ``config`` (default ``self.config`` without its sweep), float32 scalars (host).

        ``config`` differs from ``self.config`` only in swept fields
        (:func:`mjxmeta.algo.config.point_config`).
        """
        c = point_config(self.config, {}) if config is None else config
        scale = c.meta.lookahead_lr_scale
        look = dataclasses.replace(c.student, actor_lr=c.student.actor_lr * scale,
                                   critic_lr=c.student.critic_lr * scale) if scale != 1.0 else c.student
        return Hyper(self.student.hyper(c.student), self.student.hyper(look), self.teacher.hyper(c.teacher))

    def run_hypers(self) -> Hyper:
        """:class:`Hyper` of every run, leaves (R,): combination r // S of :func:`mjxmeta.algo.config.sweep_points`."""
        per_point = [self.hyper(point_config(self.config, p)) for p in sweep_points(self.config)]
        return jax.tree.map(lambda *xs: np.repeat(np.stack(xs), self.config.seeds, axis=0), *per_point)

    @functools.cached_property
    def _fixed_hyper(self) -> list:
        """Per leaf of :class:`Hyper`: its value where every run has the same one, else None (swept)."""
        return [x[0] if np.all(x == x[0]) else None for x in jax.tree.leaves(self.run_hypers())]

    def read_hyper(self, state: TrainState) -> Hyper:
        """The hyperparameters the device code reads: ``state.hyper`` (traced) where the sweep varies a
        value, the shared value as a compile-time constant elsewhere. An unswept run so compiles the
        program it compiled before hyperparameters lived in the state (XLA folds constants: bit for bit
        the same results)."""
        leaves, treedef = jax.tree.flatten(state.hyper)
        return jax.tree.unflatten(treedef, [x if f is None else f for x, f in zip(leaves, self._fixed_hyper)])

    def init(self, key: jax.Array, hyper: Hyper | None = None) -> TrainState:
        """Fresh state for one run from a raw key (2,) and its :class:`Hyper` (None = :meth:`hyper`)."""
        hyper = self.hyper() if hyper is None else hyper
        k_student, k_teacher, k_env, k_buf, key = jax.random.split(key, 5)
        teacher = self.teacher.init(k_teacher, self.config.num_candidates * self.config.num_envs, hyper.teacher)
        state = TrainState(
            student=self.student.init(k_student),
            normalizer=init_normalizer(self.obs_size),
            teacher=teacher,
            buffer=self.replay.init(k_buf),
            env_state=self.env.reset(jax.random.split(k_env, self.config.num_candidates * self.config.num_envs)),
            key=key,
            iteration=jnp.zeros((), jnp.int32),
            env_steps=jnp.zeros((), jnp.int32),
            visits=jnp.zeros((max(1, self.config.log_every * self.config.visits_per_iteration), self.obs_size),
                             jnp.float32),
            meta_diag=diagnostics.init_diagnostics(self.teacher, teacher.params),
            hyper=jax.tree.map(jnp.asarray, hyper),
        )
        return strong(state)

    # ------------------------------------------------- Algorithm 1, the steps
    def rollout_d0(self, state: TrainState, key: jax.Array, candidate_params=None):
        """Step 1: execute pi_e in the K*N teacher envs for T steps.

        Draws the envs' pool of fresh start states for this iteration first.
        With paired candidates (``config.paired``) every candidate starts from
        candidate 0's env states and teacher memory, and the action noise is
        antithetic across candidates (common with the ``es`` estimator).

        Args:
          candidate_params: teacher params with a leading K axis (one per
            candidate, ``es``); None = ``state.teacher.params`` for all.

        Returns:
          (env_state, teacher memory, D0 transitions (K, T, N, ...),
           teacher inputs (K, T, N, input_size), raw actions (K, T, N, A)).
        """
        K, N, T = self.config.num_candidates, self.config.num_envs, self.config.rollout_steps
        env_state, memory = self.env.refill(state.env_state), state.teacher.memory
        per_candidate = lambda x: x.reshape((K, N) + x.shape[1:])  # noqa: E731
        merged = lambda x: x.reshape((K * N,) + x.shape[2:])  # noqa: E731
        if self.config.paired:  # candidate 0's envs and memory for all; the start pool stays shared
            own, pool = split_pool(env_state)
            own, memory = jax.tree.map(lambda x: jnp.tile(x[:N], (K,) + (1,) * (x.ndim - 1)), (own, memory))
            env_state = join_pool(own, pool)
        mode = "common" if self.config.teacher.estimator == "es" else "antithetic"
        act = functools.partial(teacher_step, self.env, self.student, self.teacher, state.student, state.normalizer,
                                teacher_hyper=self.read_hyper(state).teacher, uniform=self.warming_up(state),
                                pathwise=self.pathwise_mode)

        def act_alone(params, pool, own, memory, k, eps):
            """One candidate's step on its own envs, drawing from the shared start pool."""
            env_state, memory, tr, _, u, raw = act(params, join_pool(own, pool), memory, k, eps)
            own, pool = split_pool(env_state)
            return own, pool["pool_taken"], memory, tr, u, raw

        def body(carry, k):
            env_state, memory = carry
            if candidate_params is not None:  # ES: candidate k acts with its own perturbed params
                eps = estimators.candidate_noise(k, K, (N, self.action_size), mode)
                own, pool = split_pool(env_state)
                own, taken, memory, tr, u, raw = jax.vmap(act_alone, in_axes=(0, None, 0, 0, None, 0))(
                    candidate_params, pool, *jax.tree.map(per_candidate, (own, memory)), k, eps)
                own, memory, tr, u, raw = jax.tree.map(merged, (own, memory, tr, u, raw))
                # every candidate reads the same pool entries (common starts); it is spent by the most
                env_state = join_pool(own, dict(pool, pool_taken=jnp.max(taken)))
            elif self.config.paired:
                eps = estimators.candidate_noise(k, K, (N, self.action_size), mode).reshape(K * N, -1)
                env_state, memory, tr, _, u, raw = act(state.teacher.params, env_state, memory, k, eps)
            else:
                env_state, memory, tr, _, u, raw = act(state.teacher.params, env_state, memory, k)
            return (env_state, memory), (tr, u, raw)

        (env_state, memory), out = jax.lax.scan(body, (env_state, memory), jax.random.split(key, T))
        by_candidate = jax.tree.map(
            lambda x: jnp.moveaxis(x.reshape((T, K, N) + x.shape[2:]), 1, 0), out)
        d0, inputs, raw = by_candidate
        return env_state, memory, d0, inputs, raw

    @property
    def pathwise_mode(self) -> str:
        """The D0 mode of the ``pathwise`` estimator (``meta.pathwise_dynamics``), "" for the other estimators."""
        c = self.config
        return c.meta.pathwise_dynamics if self.teacher.is_meta and c.teacher.estimator == "pathwise" else ""

    def look_ahead(self, state: TrainState, d0: Transition, key: jax.Array) -> StudentState:
        """Step 2: pi'_k = DDPG(pi, D0_k) for every candidate k (vmapped); leading axis K.

        ``meta.lookahead_data = 'mixed'``: minibatches of B u D0 with the same
        buffer rows for all candidates; paired candidates also share the D0
        row indices. The look-ahead's learning rates are the student's times
        ``meta.lookahead_lr_scale`` (``state.hyper.lookahead``).
        """
        c = self.config
        flat = jax.vmap(flatten_batch)(d0)  # (K, T*N, ...)
        copied = pathwise.floor_second_moment(state.student) if self.pathwise_mode else state.student
        keys = jax.random.split(key, self.config.num_candidates)
        if c.paired:
            keys = jnp.broadcast_to(keys[0], keys.shape)
        mixed = c.meta.lookahead_data == "mixed"

        def buffer_rows(k):
            _, rows = self.replay.sample(state.buffer.replace(key=k))
            return rows, self.replay.size(state.buffer) > 0

        fn = functools.partial(lookahead.look_ahead, self.student, copied, state.normalizer,
                               n_updates=c.lookahead_updates, n_d0=c.lookahead_d0_rows if mixed else None,
                               buffer_rows=buffer_rows if mixed else None,
                               buffer_key=jax.random.fold_in(key, self.config.num_candidates) if mixed else None,
                               hyper=self.decayed(state, self.read_hyper(state).lookahead))
        return jax.vmap(fn)(flat, keys)

    def returns_and_d1(self, state: TrainState, primes: StudentState, key: jax.Array):
        """Step 3: R-hat(pi), R-hat(pi'_1..K) from common start states, and D1.

        With the ``pathwise`` estimator the same rollouts also give R_grad
        (:func:`mjxmeta.algo.pathwise.returns_and_objective`), differentiable in ``primes``.

        Returns:
          (returns (K+1,), D1 transitions (K, H, E, ...), R_grad (K+1,) or None for the other estimators).
        """
        m = self.config.meta
        policies = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), state.student, primes)
        reset_keys = jax.random.split(key, m.return_envs)
        objective = None
        if self.pathwise_mode:
            returns, objective, trs = pathwise.returns_and_objective(
                self.env, self.student, policies, state.student, state.normalizer, reset_keys, m.return_horizon,
                m.grad_horizon, self.config.student.gamma)
        else:
            returns, trs = acting.estimate_returns(self.env, self.student, policies, state.normalizer, reset_keys,
                                                 m.return_horizon)
        return returns, jax.tree.map(lambda x: x[1:], trs), objective

    def meta_estimate(self, state: TrainState, k_d0: jax.Array, k_look: jax.Array, k_ret: jax.Array) -> dict:
        """Steps 1-4 and the meta-gradient, without changing ``state``: one estimate g-hat.

        Returns:
          dict with ``grad`` (ascent direction, params structure), ``adv`` (K,),
          ``ema`` (new baseline), ``rewards`` (K,), ``returns`` (K+1,)
          = [R-hat(pi), R-hat(pi'_k)], ``env_state``, ``memory``, ``d0``
          (K, T, N, ...), ``d1`` (K, H, E, ...).
        """
        if self.pathwise_mode:
            return self.pathwise_estimate(state, k_d0, k_look, k_ret)
        deltas = params_k = None
        if self.config.teacher.estimator == "es":
            deltas = estimators.perturbations(jax.random.fold_in(k_d0, 1), state.teacher.params, self.config.num_candidates)
            params_k = estimators.perturb(state.teacher.params, deltas, self.config.teacher.es_sigma)
        env_state, memory, d0, inputs, raw = self.rollout_d0(state, k_d0, params_k)  # 1. D0 ~ pi_e
        primes = self.look_ahead(state, d0, k_look)                                     # 2. pi' = DDPG(pi, D0)
        returns, d1, _ = self.returns_and_d1(state, primes, k_ret)                      # 3. D1, R-hat(pi'), R-hat(pi)
        rewards = estimators.meta_rewards(returns)                                      # 4. R = R(pi') - R(pi)
        grad, adv, ema = estimators.meta_gradient(self.teacher, state.teacher, rewards, inputs, raw, deltas)
        return dict(grad=grad, adv=adv, ema=ema, rewards=rewards, returns=returns, env_state=env_state,
                    memory=memory, d0=d0, d1=d1)

    def pathwise_objective(self, state: TrainState, params, k_d0: jax.Array, k_look: jax.Array, k_ret: jax.Array):
        """J(theta_e) = 1/K sum_k R_grad(pi'_k) for teacher params ``params``: steps 1-3 with ``state``'s
        student, buffer and envs (``teacher.estimator = pathwise``; a deterministic function of the keys).

        Returns:
          (J, a scalar in reward units, (env_state, memory, D0 (K, T, N, ...), D1 (K, H, E, ...),
           returns (K+1,), R_grad (K+1,))).
        """
        st = state.replace(teacher=state.teacher.replace(params=params))
        env_state, memory, d0, _, _ = self.rollout_d0(st, k_d0)                          # 1. D0, reparameterized
        primes = self.look_ahead(state, d0, k_look)                                         # 2. pi' = DDPG(pi, D0)
        returns, d1, obj = self.returns_and_d1(state, primes, k_ret)                        # 3. R-hat, D1, R_grad
        return jnp.mean(obj[1:]), (env_state, memory, d0, d1, returns, obj)

    def pathwise_estimate(self, state: TrainState, k_d0: jax.Array, k_look: jax.Array, k_ret: jax.Array) -> dict:
        """:meth:`meta_estimate` with ``teacher.estimator = pathwise``: steps 1-3 as one function of theta_e,
        differentiated (:mod:`mjxmeta.algo.pathwise`); the same D0, pi', R-hat and D1 as its forward pass.

        Returns:
          :meth:`meta_estimate`'s dict, ``grad`` = grad_theta 1/K sum_k R_grad(pi'_k), ``adv`` = R_k - mean R
          (diagnostics only), plus ``objective`` (K+1,) = [R_grad(pi), R_grad(pi'_k)].
        """
        objective = functools.partial(self.pathwise_objective, state, k_d0=k_d0, k_look=k_look, k_ret=k_ret)
        grad, aux = jax.grad(objective, has_aux=True)(state.teacher.params)
        env_state, memory, d0, d1, returns, obj = jax.lax.stop_gradient(aux)
        rewards = estimators.meta_rewards(returns)                                      # 4. R = R(pi') - R(pi)
        _, ema = estimators.advantages(rewards, state.teacher.baseline, self.config.teacher.baseline,
                                 self.config.teacher.ema_decay)
        return dict(grad=grad, adv=rewards - jnp.mean(rewards), ema=ema, rewards=rewards, returns=returns,
                    env_state=env_state, memory=memory, d0=d0, d1=d1, objective=obj)

    def teacher_update(self, state: TrainState, est: dict):
        """Step 5: one Adam ascent step along ``est['grad']`` and the diagnostics.

        With the ``pathwise`` estimator a gradient with a non-finite entry is never applied: the teacher
        (params and Adam state) stays as it is, the diagnostics see a zero gradient, and the metric
        ``teacher_grad_skipped`` is 1 (its chunk mean is the fraction of skipped meta-steps). REINFORCE
        and ES keep their program unchanged (``teacher_grad_skipped`` = 0); a non-finite teacher there
        stops the run at the host's check after the chunk (:mod:`mjxmeta.runs.loop`).

        Returns:
          (TeacherState, GradientDiagnostics, diagnostic metrics).
        """
        t = state.teacher
        lr = self.read_hyper(state).teacher.lr
        if self.pathwise_mode:
            grad, finite = estimators.finite_or_zero(est["grad"])
            new = estimators.teacher_step(self.teacher, t, grad, lr)
            new = self.keep_where(jnp.logical_not(finite), t, new).replace(baseline=est["ema"])
        else:  # the REINFORCE/ES program as before (the select changes XLA's fusion: last-bit differences)
            grad, finite = est["grad"], jnp.asarray(True)
            new = estimators.teacher_step(self.teacher, t, grad, lr).replace(baseline=est["ema"])
        diag, metrics = diagnostics.diagnose(self.teacher, state.meta_diag, t.params, new.params, grad,
                                      est["rewards"], est["adv"])
        metrics["teacher_grad_skipped"] = 1.0 - finite.astype(jnp.float32)
        return new, diag, metrics

    def insert(self, state: TrainState, *batches: Transition) -> TrainState:
        """Step 6: B <- B u D0 u D1; the observation statistics see every inserted obs."""
        tr = jax.tree.map(lambda *xs: jnp.concatenate(xs), *[flatten_batch(b) for b in batches])
        norm = state.normalizer
        if self.config.student.normalize_observations:
            norm = update_normalizer(norm, tr.obs)
        return state.replace(buffer=self.replay.insert(state.buffer, tr), normalizer=norm)

    def adapt_teacher(self, state: TrainState, key: jax.Array) -> TeacherState:
        """The teacher's per-iteration adaptation (:meth:`~mjxmeta.algo.teachers.base.Teacher.adapt`) on a
        minibatch of states from B; ``state.teacher`` itself for the teachers that do not adapt."""
        if not self.teacher.adapts:
            return state.teacher
        k_rows, k_adapt = jax.random.split(key)
        _, rows = self.replay.sample(state.buffer.replace(key=k_rows))
        mu_fn = lambda actor, obs: self.student.mu(actor, state.normalizer, obs)  # noqa: E731
        return self.teacher.adapt(state.teacher, self.student.actor(state.student), mu_fn, rows.obs, k_adapt)

    def decayed(self, state: TrainState, hyper):
        """The student's (or look-ahead's) hyperparameters with ``student.lr_decay`` applied at this iteration:
        learning rates times 1 - (1 - lr_decay) * min(1, env_steps / total_steps); ``hyper`` itself at 1."""
        decay = self.config.student.lr_decay
        if decay == 1.0:
            return hyper
        frac = jnp.minimum(1.0, state.env_steps.astype(jnp.float32) / self.config.total_steps)
        scale = 1.0 - (1.0 - decay) * frac
        return hyper.replace(actor_lr=hyper.actor_lr * scale, critic_lr=hyper.critic_lr * scale)

    def student_update(self, state: TrainState):
        """Step 7: U = config.student_updates DDPG steps on minibatches from B."""
        student, buffer, metrics = self.student.update_many(
            state.student, state.normalizer, self.replay.sample, state.buffer, self.config.student_updates,
            self.decayed(state, self.read_hyper(state).student))
        return state.replace(student=student, buffer=buffer), metrics

    def record_visits(self, state: TrainState, d0: Transition, key: jax.Array) -> jax.Array:
        """Writes v uniformly drawn D0 observations into this iteration's rows of ``visits``."""
        v = self.config.visits_per_iteration
        if v == 0:
            return state.visits
        obs = flatten_batch(d0).obs
        idx = jax.random.choice(key, obs.shape[0], (v,), replace=False)
        row = (state.iteration % self.config.log_every) * v
        return jax.lax.dynamic_update_slice_in_dim(state.visits, obs[idx], row, axis=0)

    # ------------------------------------------------------ one iteration
    def warming_up(self, state: TrainState) -> jax.Array | None:
        """Bool scalar: this iteration starts inside the warm-up (``config.learning_starts``); None without one,
        so a run without warm-up traces the program it traced before the option existed."""
        if not self.config.learning_starts:
            return None
        return state.env_steps < self.config.learning_starts

    @staticmethod
    def keep_where(keep: jax.Array | None, old, new):
        """Pytree ``old`` where the bool scalar ``keep`` holds (an update not to apply), else ``new``; ``new``
        itself when ``keep`` is None (no select in the program)."""
        if keep is None:
            return new
        return jax.tree.map(lambda a, b: jnp.where(keep, a, b), old, new)

    def iteration(self, state: TrainState):
        """One pass of Algorithm 1. Returns (state, metrics of scalars)."""
        warm = self.warming_up(state)
        key, k_d0, k_look, k_ret, k_vis = jax.random.split(state.key, 5)
        metrics = {}
        if self.teacher.is_meta:
            est = self.meta_estimate(state, k_d0, k_look, k_ret)                     # 1-4. D0, pi', D1, R
            env_state, memory, d0 = est["env_state"], est["memory"], est["d0"]
            teacher, diag, diag_metrics = self.teacher_update(state, est)            # 5. teacher step (eq. 2)
            teacher, diag = self.keep_where(warm, (state.teacher, state.meta_diag), (teacher, diag))
            state = self.insert(state, d0, est["d1"]).replace(meta_diag=diag)        # 6. B <- B u D0 u D1
            metrics.update(meta_reward=jnp.mean(est["rewards"]), return_pi=est["returns"][0], **diag_metrics)
        else:
            env_state, memory, d0, _, _ = self.rollout_d0(state, k_d0)               # 1. D0 ~ pi_e
            state = self.insert(state, d0)
            teacher = self.keep_where(warm, state.teacher,                           # param_noise: sigma_p
                                  self.adapt_teacher(state, jax.random.fold_in(k_vis, 1)))
            metrics.update(meta_reward=jnp.zeros(()), return_pi=jnp.zeros(()), teacher_grad_skipped=jnp.zeros(()),
                           **diagnostics.zero_diagnostic_metrics())
        teacher = teacher.replace(memory=memory)
        state = state.replace(teacher=teacher, env_state=env_state, key=key,
                              visits=self.record_visits(state, d0, k_vis))
        updated, update_metrics = self.student_update(state)                         # 7. pi <- DDPG(pi, B)
        state = state.replace(student=self.keep_where(warm, state.student, updated.student), buffer=updated.buffer)
        state = state.replace(iteration=state.iteration + 1,
                              env_steps=state.env_steps + self.config.steps_per_iteration)
        metrics.update(update_metrics)
        metrics["teacher_log_std"] = jnp.mean(self.teacher.log_std(teacher.params))
        metrics["d0_reward"] = jnp.mean(d0.reward)
        metrics["d0_max_reward"] = jnp.max(d0.reward)  # sparse tasks: > 0 iff D0 reached the goal
        metrics["reused_starts"] = reused_starts(env_state)
        return state, metrics

    def run(self, state: TrainState, n: int):
        """``n`` iterations in one ``lax.scan``; returns (state, metrics with leading n)."""
        state, metrics = jax.lax.scan(lambda s, _: self.iteration(s), state, None, length=n)
        return strong(state), metrics

    # ------------------------------------------------------------ evaluation
    def evaluate(self, state: TrainState, key: jax.Array) -> jax.Array:
        """Deterministic student returns on ``eval_envs`` separate envs, full episodes.

        Returns:
          (eval_envs,) undiscounted returns of one full episode each (at most
          ``episode_length`` steps).
        """
        keys = jax.random.split(key, self.config.eval_envs)
        act = lambda obs: self.student.act(state.student, state.normalizer, obs)  # noqa: E731
        returns, _ = deterministic_returns(self.env, act, keys, self.config.resolved_episode_length)
        return returns

    def eval_keys(self, iteration: int) -> jax.Array:
        """(R, 2) evaluation keys: independent of the training keys, fixed per iteration and seed index."""
        base = jax.random.fold_in(jax.random.PRNGKey(self.config.seed), 2**30)
        per_seed = jax.vmap(lambda i: jax.random.fold_in(base, i))(self.seed_index())
        return jax.vmap(lambda k: jax.random.fold_in(k, iteration))(per_seed)
