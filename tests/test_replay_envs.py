"""Replay FIFO wrap-around; truncation vs termination through env, rollout and DDPG target.

Uses the pure-JAX ``pendulum`` env only. A true termination (which pendulum
never produces) is checked on hand-made states/transitions instead of the MJX
``inverted_pendulum`` env, whose compile does not fit this file's time budget
on a shared 2-core CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import State

import mjxmeta.algo.envs
from mjxmeta.algo.config import StudentConfig
from mjxmeta.algo.replay import Replay, Transition, flatten_batch
from mjxmeta.algo.acting import env_step
from mjxmeta.algo.students.ddpg import DDPG, init_normalizer

# --------------------------------------------------------------------------- (a) replay
CAP, BATCH, CHUNK, N_CHUNKS = 10, 8, 4, 4


def chunk(i: int) -> Transition:
    """CHUNK transitions with distinct ids (encoded in reward and obs)."""
    ids = jnp.arange(i * CHUNK, (i + 1) * CHUNK, dtype=jnp.float32)
    return Transition(obs=jnp.stack([ids, -ids], -1), action=(ids / 100.0)[:, None], reward=ids,
                      next_obs=jnp.stack([ids + 0.5, ids], -1), terminated=jnp.zeros_like(ids))


def test_replay_wraps_around_keeping_newest():
    replay = Replay(CAP, BATCH, obs_size=2, action_size=1)
    insert = jax.jit(replay.insert)
    state = replay.init(jax.random.PRNGKey(0))
    assert int(replay.size(state)) == 0
    sizes = []
    for i in range(N_CHUNKS):
        state = insert(state, chunk(i))
        sizes.append(int(replay.size(state)))
    assert sizes == [4, 8, 10, 10]
    newest = set(range(N_CHUNKS * CHUNK - CAP, N_CHUNKS * CHUNK))  # ids 6..15

    @jax.jit
    def draw(state):
        return jax.lax.scan(lambda s, _: replay.sample(s), state, None, length=200)

    state2, batches = draw(state)
    ids = np.asarray(batches.reward).ravel()
    assert batches.reward.shape == (200, BATCH)
    assert set(ids.astype(int)) == newest  # every sampled id is among the newest 10, and all 10 appear
    # Rows are stored whole (no field mixing across transitions).
    np.testing.assert_array_equal(np.asarray(batches.obs)[..., 0], np.asarray(batches.reward))
    np.testing.assert_array_equal(np.asarray(batches.obs)[..., 1], -np.asarray(batches.reward))
    np.testing.assert_allclose(np.asarray(batches.action)[..., 0], np.asarray(batches.reward) / 100, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(batches.next_obs)[..., 0], np.asarray(batches.reward) + 0.5)
    # Roughly uniform: each of the 10 ids about 1600 / 10 times.
    counts = np.bincount(ids.astype(int), minlength=16)[sorted(newest)]
    assert counts.min() > 100 and counts.max() < 230
    # Sampling does not consume: the size is unchanged, the key advanced.
    assert int(replay.size(state2)) == CAP
    assert not np.array_equal(np.asarray(state2.key), np.asarray(state.key))


def test_replay_ring_holds_newest_rows_in_fifo_order():
    """After wrap-around, row (cursor + j) % CAP holds the j-th oldest of the newest CAP ids."""
    replay = Replay(CAP, BATCH, obs_size=2, action_size=1)
    state = replay.init(jax.random.PRNGKey(0))
    for i in range(N_CHUNKS):  # 16 ids into 10 rows: wraps once, mid-chunk
        state = jax.jit(replay.insert)(state, chunk(i))
    cursor = int(state.data.current_index)
    assert cursor == (N_CHUNKS * CHUNK) % CAP
    rows = np.asarray(state.data.experience)[0]  # (CAP, row): obs (2), action (1), reward, ...
    in_age_order = rows[(cursor + np.arange(CAP)) % CAP, 3]
    np.testing.assert_array_equal(in_age_order, np.arange(N_CHUNKS * CHUNK - CAP, N_CHUNKS * CHUNK))


def test_replay_samples_uniformly_over_present_rows_only():
    """7 of 10 rows filled; 20k draws: never an empty row, counts pass a chi-square test at p > 1e-3."""
    from scipy import stats
    replay = Replay(CAP, BATCH, obs_size=2, action_size=1)
    state = replay.insert(replay.init(jax.random.PRNGKey(3)),
                          jax.tree.map(lambda x: x[:7], flatten_batch(jax.tree.map(lambda *x: jnp.stack(x),
                                                                                   chunk(0), chunk(1)))))
    assert int(replay.size(state)) == 7
    _, batches = jax.jit(lambda s: jax.lax.scan(lambda s, _: replay.sample(s), s, None, length=2560))(state)
    ids = np.asarray(batches.reward).astype(int).ravel()  # 20480 draws
    assert set(ids) == set(range(7))
    counts = np.bincount(ids, minlength=7)
    assert stats.chisquare(counts).pvalue > 1e-3, counts


def test_vmapped_insert_equals_per_seed_insert():
    """Seeds at different cursors (empty, half full, wrapped): vmap(insert) == insert per seed, bit for bit."""
    replay = Replay(CAP, BATCH, obs_size=2, action_size=1)
    insert = jax.jit(replay.insert)
    seeds = []
    for n_prior in (0, 2, 3):
        s = replay.init(jax.random.PRNGKey(n_prior))
        for i in range(n_prior):
            s = insert(s, chunk(10 + i))
        seeds.append(s)
    batched = jax.tree.map(lambda *x: jnp.stack(x), *seeds)
    new = jax.tree.map(lambda *x: jnp.stack(x), chunk(1), chunk(2), chunk(3))
    got = jax.jit(jax.vmap(replay.insert))(batched, new)
    for i, s in enumerate(seeds):
        want = insert(s, jax.tree.map(lambda x: x[i], new))
        for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(jax.tree.map(lambda x: x[i], got))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [int(replay.size(jax.tree.map(lambda x: x[i], got))) for i in range(3)] == [4, 10, 10]


# --------------------------------------------------------------------------- (b) envs
EP_LEN, N_ENVS = 5, 3
MAX_SPEED, DT, G = 8.0, 0.05, 10.0


def np_pendulum_step(pipeline_state, action):
    """Gymnasium Pendulum-v1 in float64; ``action`` in [-1, 1] (torque = 2 * action)."""
    theta, theta_dot = pipeline_state[..., 0].astype(np.float64), pipeline_state[..., 1].astype(np.float64)
    u = np.clip(2.0 * action[..., 0].astype(np.float64), -2.0, 2.0)
    norm_theta = ((theta + np.pi) % (2 * np.pi)) - np.pi
    reward = -(norm_theta**2 + 0.1 * theta_dot**2 + 0.001 * u**2)
    new_theta_dot = np.clip(theta_dot + (3 * G / 2 * np.sin(theta) + 3.0 * u) * DT, -MAX_SPEED, MAX_SPEED)
    new_theta = theta + new_theta_dot * DT
    obs = np.stack([np.cos(new_theta), np.sin(new_theta), new_theta_dot], -1)
    return obs, reward


@pytest.fixture(scope="module")
def pendulum_run():
    """10 steps of 3 pendulum envs with episode_length 5; every state and action kept."""
    env = mjxmeta.algo.envs.make("pendulum", episode_length=EP_LEN, starts_per_env=2)  # 2 resets per env, no refill
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    states = [reset(jax.random.split(jax.random.PRNGKey(0), N_ENVS))]
    actions = np.random.default_rng(0).uniform(-1, 1, size=(2 * EP_LEN, N_ENVS, 1)).astype(np.float32)
    for a in actions:
        states.append(step(states[-1], jnp.asarray(a)))
    return env, states, actions


def test_time_limit_is_truncation_not_termination(pendulum_run):
    env, states, actions = pendulum_run
    for t in range(1, 2 * EP_LEN + 1):
        prev, s = states[t - 1], states[t]
        done = np.asarray(s.done)
        trunc = np.asarray(s.info["truncation"])
        term = np.asarray(mjxmeta.algo.envs.terminated(s))
        final_obs, obs = np.asarray(s.info["final_obs"]), np.asarray(s.obs)
        # final_obs and reward always follow the dynamics from the previous (pre-step) state.
        want_obs, want_r = np_pendulum_step(np.asarray(prev.pipeline_state), actions[t - 1])
        np.testing.assert_allclose(final_obs, want_obs, atol=1e-5)
        np.testing.assert_allclose(np.asarray(s.reward), want_r, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(term, 0.0)
        if t % EP_LEN:
            np.testing.assert_array_equal(done, 0.0)
            np.testing.assert_array_equal(trunc, 0.0)
            np.testing.assert_array_equal(final_obs, obs)
            np.testing.assert_array_equal(np.asarray(s.info["steps"]), t % EP_LEN)
        else:
            np.testing.assert_array_equal(done, 1.0)
            np.testing.assert_array_equal(trunc, 1.0)
            # obs is a fresh start state, not the true last observation.
            assert np.all(np.abs(obs - final_obs).max(-1) > 1e-3)
            theta, theta_dot = np.asarray(s.pipeline_state).T
            assert np.all(np.abs(theta) <= np.pi) and np.all(np.abs(theta_dot) <= 1.0)
            np.testing.assert_allclose(obs, np.stack([np.cos(theta), np.sin(theta), theta_dot], -1), atol=1e-6)
            np.testing.assert_array_equal(np.asarray(s.info["steps"]), 0)


def test_each_reset_is_a_fresh_random_state(pendulum_run):
    _, states, _ = pendulum_run
    starts = [np.asarray(states[t].pipeline_state) for t in (0, EP_LEN, 2 * EP_LEN)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.all(np.abs(starts[i] - starts[j]).max(-1) > 1e-3), (i, j)
    # Also different across the batch.
    for s in starts:
        assert len({tuple(np.round(r, 5)) for r in s}) == N_ENVS


CFG = StudentConfig(hidden=(8, 8), normalize_observations=False, gamma=0.9, batch_size=N_ENVS, buffer_size=10)


def test_env_step_transition_bootstraps_through_truncation(pendulum_run):
    env, states, actions = pendulum_run
    ddpg = DDPG(CFG, 3, 1)
    shapes = jax.eval_shape(ddpg.init, jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    student = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.normal(size=s.shape), s.dtype), shapes)
    norm = init_normalizer(3)
    prev = states[EP_LEN - 1]
    a = jnp.asarray(actions[EP_LEN - 1])

    @jax.jit
    def run(student, prev, a, terminated_tr):
        nstate, tr, done = env_step(env, prev, a)
        q_final = ddpg.q_value(student.target_critic, norm, tr.next_obs, ddpg.mu(student.target_actor, norm, tr.next_obs))
        q_reset = ddpg.q_value(student.target_critic, norm, nstate.obs, ddpg.mu(student.target_actor, norm, nstate.obs))
        return (nstate, tr, done, ddpg.critic_target(student, norm, tr), q_final, q_reset,
                ddpg.critic_target(student, norm, terminated_tr))

    term_tr = Transition(obs=jnp.zeros((N_ENVS, 3)), action=jnp.zeros((N_ENVS, 1)),
                         reward=jnp.asarray([1.0, -2.0, 0.5]), next_obs=jnp.ones((N_ENVS, 3)),
                         terminated=jnp.ones((N_ENVS,)))
    nstate, tr, done, y, q_final, q_reset, y_term = run(student, prev, a, term_tr)
    np.testing.assert_array_equal(np.asarray(done), 1.0)
    np.testing.assert_array_equal(np.asarray(tr.terminated), 0.0)
    np.testing.assert_array_equal(np.asarray(tr.obs), np.asarray(prev.obs))
    np.testing.assert_array_equal(np.asarray(tr.action), np.asarray(a))
    np.testing.assert_array_equal(np.asarray(tr.next_obs), np.asarray(states[EP_LEN].info["final_obs"]))
    np.testing.assert_array_equal(np.asarray(tr.reward), np.asarray(states[EP_LEN].reward))
    # Bootstraps from the true s_{t+1}, not from the auto-reset obs.
    np.testing.assert_allclose(np.asarray(y), np.asarray(tr.reward) + 0.9 * np.asarray(q_final), rtol=1e-6,
                               atol=1e-6)
    assert np.all(np.abs(np.asarray(q_final) - np.asarray(q_reset)) > 1e-4)
    assert np.all(np.abs(np.asarray(q_final)) > 1e-3)
    # A true termination does not bootstrap.
    np.testing.assert_array_equal(np.asarray(y_term), np.asarray(term_tr.reward))


def test_terminated_helper_on_hand_made_states():
    done = jnp.asarray([0.0, 1.0, 1.0, 0.0])
    trunc = jnp.asarray([0.0, 0.0, 1.0, 0.0])
    s = State(pipeline_state=None, obs=jnp.zeros((4, 3)), reward=jnp.zeros(4), done=done, metrics={},
              info={"truncation": trunc})
    np.testing.assert_array_equal(np.asarray(mjxmeta.algo.envs.terminated(s)), [0.0, 1.0, 0.0, 0.0])


# --------------------------------------------------------------------------- (c) dtypes
def _sig(tree):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, [(tuple(x.shape), x.dtype, x.weak_type) for x in leaves]


def test_step_state_has_reset_dtypes_and_weak_types(pendulum_run):
    env, states, _ = pendulum_run
    sig0 = _sig(states[0])
    for s in states[1:]:
        assert _sig(s) == sig0
    assert not any(weak for _, _, weak in sig0[1]), sig0
    # A scan carry built from reset survives env.step (no dtype/weak-type change).
    jax.jit(lambda s: jax.lax.scan(lambda c, _: (env.step(c, jnp.zeros((N_ENVS, 1))), None), s, None,
                                   length=2)[0])(states[0])


# --------------------------------------------------------------------------- (d) start pool
def test_start_pool_order_reuse_count_and_refill_if_short():
    """3 envs, pool of 3, episodes of 2 steps: resets take pool rows in env order, then reuse them
    (counted); ``refill_if_short`` draws a new pool instead, so no start repeats."""
    env = mjxmeta.algo.envs.make("pendulum", episode_length=2, starts_per_env=1)
    zero = jnp.zeros((N_ENVS, 1))
    step, reset = jax.jit(env.step), jax.jit(env.reset)
    s = reset(jax.random.split(jax.random.PRNGKey(0), N_ENVS))
    pool = np.asarray(s.info["pool"]["obs"])
    assert pool.shape == (N_ENVS, 3)
    for t in range(1, 7):
        s = step(s, zero)
        if t % 2 == 0:  # every env resets; row i goes to env i, first fresh then reused
            np.testing.assert_array_equal(np.asarray(s.obs), pool)
            assert int(mjxmeta.algo.envs.reused_starts(s)) == (t // 2 - 1) * N_ENVS
    np.testing.assert_array_equal(np.asarray(s.info["pool"]["obs"]), pool)  # step never redraws

    refill_step = jax.jit(lambda s: env.step(env.refill_if_short(s), zero))
    s = reset(jax.random.split(jax.random.PRNGKey(0), N_ENVS))
    starts = [np.asarray(s.obs)]
    for t in range(1, 9):
        s = refill_step(s)
        assert int(mjxmeta.algo.envs.reused_starts(s)) == 0
        if t % 2 == 0:
            starts.append(np.asarray(s.obs))
    flat = np.concatenate(starts)  # 5 x 3 starts, all distinct
    assert len({tuple(np.round(r, 6)) for r in flat}) == len(flat)
