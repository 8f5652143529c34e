"""Tests of the fused trainer (``mjxmeta.algo.trainer.Trainer``) on the pure-JAX pendulum.

Compile time dominates, so trainers are cached per Config (``_trainer``) and
shared between tests that use the same config; no test relies on another one
having run first.
"""

from __future__ import annotations

import dataclasses

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import leaf_signature, small_config, tree_index
from mjxmeta.algo.config import num_chunks
from mjxmeta.runs.programs import programs_of
from mjxmeta.algo.config import Config, MetaConfig, StudentConfig, TeacherConfig
from mjxmeta.algo.trainer import Trainer


@functools.lru_cache(maxsize=None)
def _trainer(config: Config) -> Trainer:
    """One Trainer (hence one set of compiled functions) per config."""
    return Trainer(config)


def _np(tree):
    """Host copy of every leaf (survives donation of the device buffers)."""
    return jax.tree.map(lambda x: np.array(x), tree)


def _leaves(tree):
    return jax.tree_util.tree_leaves_with_path(tree)


def _is_float(x) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.floating)


# Non-degenerate sizes for the step-accounting checks: K=3, N=2, E=2 (no 1s
# that would hide a wrong factor), T = H = 50.
META_STATE_CFG = small_config("meta_state", seeds=2, num_envs=2, candidates=3, return_envs=2)
# K=2, N=1, E=1: the default shape of the algorithm.
META_CFG = small_config("meta", seeds=3)
# A noise teacher (N*T steps per iteration); a buffer of 120 rows fills in the
# 3rd iteration of 50 inserts.
OU_CFG = small_config("ou", seeds=2, buffer_size=120)


# ---------------------------------------------------------------- (a) compiles
def test_no_recompile_and_stable_leaf_types():
    cfg = META_STATE_CFG
    trainer = _trainer(cfg)
    state = programs_of(trainer).init_seeds(trainer.seed_keys())
    sig0 = leaf_signature(state)
    # Sanity: the state really carries a seed axis and typed counters.
    assert state.iteration.shape == (cfg.seeds,) and state.iteration.dtype == jnp.int32
    assert state.env_steps.dtype == jnp.int32 and not state.env_steps.weak_type

    for chunk in range(3):
        state, metrics = programs_of(trainer).run_chunk(state)
        sig = leaf_signature(state)
        assert sig[0] == sig0[0], "pytree structure changed after a chunk"
        bad = [(i, a, b) for i, (a, b) in enumerate(zip(sig0[1], sig[1])) if a != b]
        assert not bad, f"leaf (shape, dtype, weak_type) changed after chunk {chunk}: {bad[:5]}"
        assert all(v.shape == (cfg.seeds, cfg.log_every) for v in jax.tree.leaves(metrics))
    assert programs_of(trainer).run_chunk._cache_size() == 1

    for it in range(3):
        returns = programs_of(trainer).evaluate_seeds(state, trainer.eval_keys(it))
        assert returns.shape == (cfg.seeds, cfg.eval_envs)
        assert np.isfinite(np.asarray(returns)).all()
    assert programs_of(trainer).evaluate_seeds._cache_size() == 1
    assert programs_of(trainer).init_seeds._cache_size() == 1


# ------------------------------------------------ (b) vmap == single-seed runs
# XLA-CPU reductions differ in the last bits with batch shape (vmapped dots are
# batched matmuls), and the differences grow with training.
# Measured with META_CFG after 4 iterations (400 student + 4x2x25 look-ahead
# updates), max |single - vmapped| over 3 seeds: student params <= 1.1e-6,
# critic Adam moments <= 9e-5, replay data <= 1e-5, teacher params <= 2e-5
# (its Adam moments <= 2.4e-4 at magnitudes up to ~80), env states <= 1.2e-4,
# normalizer sums <= 5e-4 (relative ~1e-7): a clear margin to rtol = atol = 1e-3.
# Not so for meta_state with K=3, N=2, E=2 (META_STATE_CFG): its teacher reads
# the critic (Q and the TD error), so a 1e-7 difference changes the teacher's
# actions, the pendulum trajectories and then the critic; the gap grew from
# ~1e-6 (iteration 1-2) to 1e-2 in critic params at iteration 4. That is
# numerical sensitivity, not a semantic difference (integer leaves and keys
# stayed identical), hence META_CFG here.
VMAP_RTOL = 1e-3
VMAP_ATOL = 1e-3


def _assert_states_close(single, batched, what: str):
    ls, lb = _leaves(single), _leaves(batched)
    assert [p for p, _ in ls] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(ls, lb):
        name = f"{what}{jax.tree_util.keystr(path)}"
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype, name
        if _is_float(x):
            np.testing.assert_allclose(x, y, rtol=VMAP_RTOL, atol=VMAP_ATOL, err_msg=name)
        else:  # counters, buffer cursors, raw uint32 PRNG keys: exact
            np.testing.assert_array_equal(x, y, err_msg=name)


def test_vmapped_seed_equals_single_seed_run():
    # D0-only look-ahead: with the default mixed look-ahead the two programs' float rounding differs
    # by ~1e-6 per iteration (tests/test_meta_options.py checks one estimate to 1e-4), and 20 Adam
    # steps on the teacher amplify it past this test's 1e-3 tolerance.
    cfg = dataclasses.replace(META_CFG, meta=dataclasses.replace(META_CFG.meta, lookahead_data="d0"))
    trainer = _trainer(cfg)
    chunks = 2
    n = chunks * cfg.log_every
    keys = trainer.seed_keys()

    batched = programs_of(trainer).init_seeds(keys)
    batched_init = _np(batched)
    for _ in range(chunks):
        batched, _ = programs_of(trainer).run_chunk(batched)
    batched = _np(batched)

    run_n = jax.jit(lambda s: trainer.run(s, n))
    init_one = jax.jit(trainer.init)  # same function as trainer.init, compiled once instead of op by op
    for i in range(cfg.seeds):
        # Seed i of the run is fold_in(PRNGKey(seed), i).
        np.testing.assert_array_equal(np.asarray(keys[i]),
                                      np.asarray(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), i)))
        single = init_one(keys[i])
        _assert_states_close(_np(single), tree_index(batched_init, i), f"init seed {i}: ")
        single, _ = run_n(single)
        single = _np(single)
        assert int(single.iteration) == n and int(single.env_steps) == n * cfg.steps_per_iteration
        _assert_states_close(single, tree_index(batched, i), f"seed {i}: ")
    # The seeds are really different runs.
    a0, a1 = (jax.tree.leaves(tree_index(batched, i).student.actor) for i in (0, 1))
    assert any(not np.array_equal(x, y) for x, y in zip(a0, a1))
    assert run_n._cache_size() == 1


# ------------------------------------------------------ (c) step accounting
def _replay_size(trainer, state):
    return np.asarray(jax.vmap(trainer.replay.size)(state.buffer))


@pytest.mark.parametrize("cfg", [META_STATE_CFG, OU_CFG], ids=["meta_state", "ou"])
def test_step_accounting_and_replay_growth(cfg):
    K, N, T = cfg.num_candidates, cfg.num_envs, cfg.rollout_steps
    E, H = cfg.meta.return_envs, cfg.meta.return_horizon
    if cfg.is_meta:
        expected_steps = K * N * T + E * H * (K + 1)
        expected_insert = K * N * T + E * H * K
        assert (K, N, E) == (3, 2, 2)
    else:
        expected_steps = expected_insert = N * T
        assert K == 1
    assert cfg.steps_per_iteration == expected_steps
    assert cfg.inserted_per_iteration == expected_insert
    assert cfg.student_updates == expected_insert // 2

    trainer = _trainer(cfg)
    capacity = cfg.student.buffer_size
    state = programs_of(trainer).init_seeds(trainer.seed_keys())
    np.testing.assert_array_equal(_replay_size(trainer, state), 0)
    np.testing.assert_array_equal(np.asarray(state.env_steps), 0)
    for chunk in range(1, 4):
        state, _ = programs_of(trainer).run_chunk(state)
        n = chunk * cfg.log_every
        np.testing.assert_array_equal(np.asarray(state.iteration), n)
        np.testing.assert_array_equal(np.asarray(state.env_steps), n * cfg.steps_per_iteration)
        np.testing.assert_array_equal(_replay_size(trainer, state),
                                      min(n * cfg.inserted_per_iteration, capacity))
    if not cfg.is_meta:
        assert 3 * cfg.log_every * cfg.inserted_per_iteration > capacity  # the cap was exercised


INT32_MAX = 2**31 - 1


def test_executed_steps_fit_the_int32_counter():
    from mjxmeta.algo.config import ConfigError, validate
    # gaussian, T = 1500 -> 1500 steps per iteration; log_every = 10**6 -> 1.5e9 steps per chunk;
    # total_steps = 2e9 (the accepted maximum) -> 2 chunks = 3e9 env steps.
    cfg = small_config("gaussian", rollout_steps=1500, total_steps=2_000_000_000, log_every=10**6)
    executed = -(-cfg.num_iterations // cfg.log_every) * cfg.log_every * cfg.steps_per_iteration
    assert executed > INT32_MAX
    with pytest.raises(ConfigError):  # expected: rejected (e.g. field total_steps or log_every)
        validate(cfg)


# -------------------------------------------- (d) look-ahead and teacher updates
def test_look_ahead_leaves_student_unchanged():
    cfg = META_CFG
    trainer = _trainer(cfg)
    # Seed 0 after one chunk: trained student, non-trivial normalizer and teacher.
    state, _ = programs_of(trainer).run_chunk(programs_of(trainer).init_seeds(trainer.seed_keys()))
    state = tree_index(state, 0)

    @jax.jit
    def lookahead(state, key):
        k_d0, k_look = jax.random.split(key)
        _, _, d0, _, _ = trainer.rollout_d0(state, k_d0)
        return trainer.look_ahead(state, d0, k_look)

    before = _np(state.student)
    primes = lookahead(state, jax.random.PRNGKey(7))
    after = _np(state.student)
    for (path, x), (_, y) in zip(_leaves(before), _leaves(after)):
        np.testing.assert_array_equal(x, y, err_msg=f"student{jax.tree_util.keystr(path)} changed")

    primes = _np(primes)
    K = cfg.num_candidates
    for part in ("actor", "critic", "target_actor", "target_critic"):
        for (path, s), (_, p) in zip(_leaves(getattr(before, part)), _leaves(getattr(primes, part))):
            assert p.shape == (K,) + s.shape
            for k in range(K):
                assert not np.array_equal(p[k], s), f"pi'_{k}.{part}{jax.tree_util.keystr(path)} == student"
    # Different D0 batches give different look-ahead students.
    assert any(not np.array_equal(p[0], p[1]) for p in jax.tree.leaves(primes.actor))


def _teacher_params_after_chunk(cfg):
    trainer = _trainer(cfg)
    state = programs_of(trainer).init_seeds(trainer.seed_keys())
    before = _np(state.teacher.params)
    state, _ = programs_of(trainer).run_chunk(state)
    return before, _np(state.teacher.params)


# Configs are shared with other tests to save compiles (gaussian: the learning
# test's config, defined below; one chunk of it is 50 iterations of 64-64 nets).
TEACHER_CFGS = {
    "gaussian": lambda: gaussian_learning_config(),
    "ou": lambda: OU_CFG,
    "meta_variance": lambda: small_config("meta_variance"),
    "meta": lambda: META_CFG,
    "meta_state": lambda: META_STATE_CFG,
}


@pytest.mark.parametrize("name", list(TEACHER_CFGS))
def test_teacher_params_change_only_for_meta_teachers(name):
    cfg = TEACHER_CFGS[name]()
    assert cfg.teacher.name == name
    before, after = _teacher_params_after_chunk(cfg)
    assert set(before) == set(after)
    if name in ("gaussian", "ou", "meta_variance"):
        assert set(before) == {"log_std"}
    else:
        assert set(before) == {"log_std", "net"}

    if name in ("gaussian", "ou"):
        for (path, x), (_, y) in zip(_leaves(before), _leaves(after)):
            np.testing.assert_array_equal(x, y, err_msg=f"{name} teacher{jax.tree_util.keystr(path)} changed")
        return
    # Meta teachers: log sigma moves (every seed) ...
    assert (np.asarray(before["log_std"]) != np.asarray(after["log_std"])).all(), name
    if name == "meta_variance":
        return
    # ... and so does the mean network f (every leaf, every seed).
    for (path, x), (_, y) in zip(_leaves(before["net"]), _leaves(after["net"])):
        for s in range(cfg.seeds):
            assert not np.array_equal(x[s], y[s]), f"{name} net{jax.tree_util.keystr(path)} unchanged (seed {s})"


def test_ou_with_zero_sigma_is_rejected_or_initializes():
    """Either fix passes: validate() rejects ou_sigma = 0, or the ou teacher initializes with it."""
    from mjxmeta.algo.config import ConfigError, validate
    cfg = small_config("ou", teacher_ou_sigma=0.0)
    try:
        validate(cfg)
    except ConfigError as e:
        assert e.field == "teacher.ou_sigma"
        return
    trainer = Trainer(cfg)  # static work only, no compile
    state = trainer.teacher.init(jax.random.PRNGKey(0), cfg.num_envs)  # raises ValueError today
    assert np.isfinite(np.asarray(trainer.teacher.log_std(state.params))).all()


# ------------------------------------------------------------ (e) learning
# Pendulum (200-step episodes, reward in [-16.3, 0] per step): a random or
# untrained policy scores about -1200..-1500, a policy that swings up and
# balances from every start about -100..-200.
#
# Settings: the defaults (Baselines-2017 preset: 64-64 + LayerNorm, batch 64,
# lr 1e-4 / 1e-3, replay 1e6, T = 100, 1 update per 2 inserted transitions),
# S = 3 vmapped seeds, final evaluation on 10 full episodes per seed. The
# assertion is on the MEAN over the 3 seeds of the final eval return.
#
# Measured on this machine (final eval return = mean of the eval episodes of
# one seed; "group" = mean over a triple of seeds, which is what this test
# asserts on):
#
# gaussian, 20k env steps (200 iterations of 100 steps, 50 updates each):
#   this exact test, base seed 0..3: groups -181.2 -153.7 -146.2 -192.6
#     (worst single seed -261)
#   S=12, seed=0: seeds -88..-206, triples -181 -111 -181 -152
#   S=12, seed=1: seeds -96..-226, triples -154 -183 -121 -166
#   Budget: at 10k steps some seeds were still at ~-1160; an earlier revision
#   (5 eval episodes) had a triple at -534 after 15k, -170 after 20k.
#   -> threshold -400: > 200 above the worst group seen (-193).
GAUSSIAN_THRESHOLD = -400.0
#
# meta (K = 2, E = 1, return_horizon H = 100), 24k env steps (48 iterations of
# 500 steps: D0 2x100, R-hat(pi) and D1 3x100; 200 student + 2x50 look-ahead
# updates each):
#   this exact test, base seed 0..4: groups -134.7 -165.2 -207.6 -151.0 -122.2
#     (worst single seed -298)
#   S=12, seed=0: after 20k mean -140 (worst seed -205); after 32k seeds
#     -111..-216, triples -168 -161 -145 -149
#   S=12, seed=1: after 16k one seed still at -1544; after 20k seeds
#     -105..-336, triples -130 -198 -165 -170
#   S=12, seed=2: after 24k mean -181 (worst seed -322); after 28k seeds
#     -111..-342, triples -199 -152 -161 -173
#   With the default H = 200 (800 env steps per iteration, 3/4 of them on
#   R-hat rollouts) learning per env step is slower and seed-dependent (earlier
#   revision, 5 eval episodes, S=3): 40k steps, base seeds 0, 1: groups -176
#   -160; 32k steps, base seeds 2..4: groups -156 -171 -403 (one seed at
#   -836); the 40k reference run (S=2): -169, -916. Hence H = 100 here.
#   -> threshold -500: ~290 above the worst group seen (-208); one seed that
#   never learns (~ -1300) next to two good ones (~ -150) fails it.
META_THRESHOLD = -500.0


def gaussian_learning_config(seed: int = 0, seeds: int = 3) -> Config:
    return Config(env="pendulum", seeds=seeds, seed=seed, total_steps=20_000, log_every=50, eval_envs=10,
                  student=StudentConfig(), teacher=TeacherConfig(name="gaussian"))


def meta_learning_config(seed: int = 0, seeds: int = 3) -> Config:
    return Config(env="pendulum", seeds=seeds, seed=seed, total_steps=24_000, log_every=12, eval_envs=10,
                  student=StudentConfig(), teacher=TeacherConfig(name="meta"),
                  meta=MetaConfig(return_horizon=100))


def train_and_evaluate(cfg: Config) -> np.ndarray:
    """Runs the whole budget chunk by chunk; returns final eval returns (S, eval_envs)."""
    trainer = _trainer(cfg)
    state = programs_of(trainer).init_seeds(trainer.seed_keys())
    for _ in range(num_chunks(trainer.config)):
        state, metrics = programs_of(trainer).run_chunk(state)
    n_iter = num_chunks(trainer.config) * cfg.log_every
    np.testing.assert_array_equal(np.asarray(state.iteration), n_iter)
    np.testing.assert_array_equal(np.asarray(state.env_steps), n_iter * cfg.steps_per_iteration)
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(metrics))
    return np.asarray(programs_of(trainer).evaluate_seeds(state, trainer.eval_keys(n_iter)))


@pytest.mark.parametrize("teacher,make_config,threshold", [
    ("gaussian", gaussian_learning_config, GAUSSIAN_THRESHOLD),
    ("meta", meta_learning_config, META_THRESHOLD),
], ids=["gaussian", "meta"])
def test_ddpg_learns_pendulum(teacher, make_config, threshold):
    cfg = make_config()
    assert cfg.teacher.name == teacher and cfg.eval_envs >= 5
    t0 = time.time()
    returns = train_and_evaluate(cfg)
    per_seed = returns.mean(axis=1)
    msg = f"{teacher}: per-seed final eval returns {np.round(per_seed, 1)}, {time.time() - t0:.0f} s"
    print(msg)
    assert returns.shape == (cfg.seeds, cfg.eval_envs)
    assert per_seed.mean() > threshold, msg


@pytest.mark.parametrize("teacher", ["gaussian", "meta"])
def test_learning_starts_acts_uniformly_and_updates_nothing_until_it_is_reached(teacher):
    """``learning_starts``: iterations that start below it execute U(-1, 1) actions and leave student and
    teacher untouched (their data still enters B); the first iteration past it updates both."""
    probe = small_config(teacher, total_steps=10_000, log_every=1)
    steps = probe.steps_per_iteration
    cfg = dataclasses.replace(probe, learning_starts=2 * steps)  # iterations 0 and 1 warm up
    trainer = _trainer(cfg)
    state = tree_index(programs_of(trainer).init_seeds(trainer.seed_keys()), 0)
    it = jax.jit(trainer.iteration)
    first = _np(state)
    d0_actions = []
    for _ in range(2):
        k_d0 = jax.random.split(state.key, 5)[1]
        d0_actions.append(np.asarray(trainer.rollout_d0(state, k_d0)[2].action))  # the D0 the iteration executes
        state, _ = it(state)
    warm = _np(state)
    for part in ("student", "teacher"):
        for (path, x), (_, y) in zip(_leaves(getattr(first, part)), _leaves(getattr(warm, part))):
            if part == "teacher" and "memory" in jax.tree_util.keystr(path):
                continue  # per-env noise memory follows the envs, not an update
            np.testing.assert_array_equal(x, y, err_msg=f"{part}{jax.tree_util.keystr(path)} changed in warm-up")
    assert int(trainer.replay.size(state.buffer)) == 2 * cfg.inserted_per_iteration
    a = np.concatenate([x.ravel() for x in d0_actions])
    # U(-1, 1): mean |a| = 0.5, sd = 0.577; the teacher's own actions (mu ~ 0 plus N(0, 0.2^2) noise) are near 0.
    assert abs(np.mean(np.abs(a)) - 0.5) < 0.05 and abs(np.std(a) - 1 / np.sqrt(3)) < 0.05, (np.mean(np.abs(a)),
                                                                                             np.std(a))
    state, _ = it(state)  # iteration 2 starts at the warm-up's end: it trains
    after = _np(state)
    assert any(not np.array_equal(x, y) for (_, x), (_, y) in zip(_leaves(warm.student), _leaves(after.student)))
    if teacher == "meta":
        assert any(not np.array_equal(x, y)
                   for (_, x), (_, y) in zip(_leaves(warm.teacher.params), _leaves(after.teacher.params)))


def test_learning_starts_refused_at_or_beyond_the_budget():
    from mjxmeta.algo.config import ConfigError, validate
    with pytest.raises(ConfigError, match="learning_starts"):
        validate(small_config("gaussian", total_steps=10_000, learning_starts=10_000))


def test_lr_decay_scales_student_learning_rates_linearly_in_env_steps():
    """``student.lr_decay``: lr(e) = lr * (1 - (1 - decay) * min(1, e / total_steps)). At e = total_steps with
    decay 0 a student update moves neither actor nor critic (Adam at lr 0); at e = 0 it is the undecayed update,
    bit for bit."""
    base = small_config("gaussian", total_steps=10_000)
    plain, decay = _trainer(base), _trainer(dataclasses.replace(
        base, student=dataclasses.replace(base.student, lr_decay=0.0)))
    state = tree_index(programs_of(plain).init_seeds(plain.seed_keys()), 0)
    state, _ = jax.jit(plain.iteration)(state)  # a buffer with data, a trained student
    h = plain.read_hyper(state).student
    half = decay.decayed(state.replace(env_steps=jnp.int32(5_000)), h)
    np.testing.assert_allclose([half.actor_lr, half.critic_lr], [0.5 * h.actor_lr, 0.5 * h.critic_lr], rtol=1e-6)
    assert float(half.tau) == float(h.tau)
    quarter = _trainer(dataclasses.replace(base, student=dataclasses.replace(base.student, lr_decay=0.2))).decayed(
        state.replace(env_steps=jnp.int32(2_500)), h)
    np.testing.assert_allclose(quarter.actor_lr, h.actor_lr * (1 - 0.8 * 0.25), rtol=1e-6)

    update = lambda t, s: t.student_update(s)[0].student  # noqa: E731
    start = state.replace(env_steps=jnp.int32(0))
    for (_, x), (_, y) in zip(_leaves(_np(jax.jit(functools.partial(update, plain))(start))),
                              _leaves(_np(jax.jit(functools.partial(update, decay))(start)))):
        np.testing.assert_array_equal(x, y)
    end = state.replace(env_steps=jnp.int32(10_000))
    after = _np(jax.jit(functools.partial(update, decay))(end))
    for part in ("actor", "critic"):
        for (path, x), (_, y) in zip(_leaves(_np(getattr(end.student, part))), _leaves(getattr(after, part))):
            np.testing.assert_array_equal(x, y, err_msg=f"{part}{jax.tree_util.keystr(path)} moved at lr 0")
    moved = _np(jax.jit(functools.partial(update, plain))(end))
    assert any(not np.array_equal(x, y) for (_, x), (_, y) in zip(_leaves(_np(end.student.actor)),
                                                                    _leaves(moved.actor)))
