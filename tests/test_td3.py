"""TD3 student: the clipped double-Q target with target-policy smoothing, and the delayed updates.

Expected values are recomputed independently with the float64 NumPy forward
passes of ``test_ddpg`` (``np_actor``/``np_critic`` read the parameter arrays
directly); networks are tiny (8-8, LayerNorm on) with O(1) random parameters,
and the batch has B = 3 rows. One jitted function per test keeps compiles few.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmeta.runs.programs import programs_of
from mjxmeta.runs.checkpoint import Checkpointer
from mjxmeta.algo.config import Config, ConfigError, StudentConfig, TeacherConfig, check_explicit_fields, validate
from mjxmeta.algo.students import TD3, TD3State, make
from mjxmeta.algo.students.ddpg import init_normalizer, update_normalizer
from mjxmeta.algo.trainer import Trainer
from test_trainer import train_and_evaluate
from test_ddpg import (ACT, B, GAMMA, L2, OBS, _a, close, make_batch, make_norm_data, np_actor, np_critic,
                       np_hidden_kernel_sq, np_normalize, random_params)

from conftest import small_config

SIGMA, CLIP, DELAY = 0.4, 0.5, 3


def cfg(**kw) -> StudentConfig:
    base = dict(name="td3", hidden=(8, 8), layer_norm=True, gamma=GAMMA, tau=0.3, critic_l2=L2, actor_lr=1e-2,
                critic_lr=2e-2, batch_size=B, buffer_size=100, policy_noise=SIGMA, noise_clip=CLIP,
                policy_delay=DELAY)
    base.update(kw)
    return StudentConfig(**base)


def make_state(td3: TD3, seed: int = 0) -> TD3State:
    """Online and target actor and the four critics all different and O(1); Adam at zero; t = 0."""
    obs = jnp.zeros((1, OBS), jnp.float32)
    act = jnp.zeros((1, ACT), jnp.float32)
    actors = [random_params(td3.actor_net.init, obs, seed=seed + i) for i in (0, 1)]
    critics = [random_params(td3.critic_net.init, obs, act, seed=seed + 10 + i) for i in range(4)]
    twin = lambda a, b: jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)  # noqa: E731
    online, target = twin(critics[0], critics[1]), twin(critics[2], critics[3])
    return TD3State(actors[0], online, actors[1], target, td3.actor_optim.init(actors[0]),
                    td3.critic_optim.init(online), jax.random.PRNGKey(7), jnp.zeros((), jnp.int32))


def one(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def test_student_is_registered_and_td3_fields_are_refused_for_ddpg():
    td3 = make(cfg(), OBS, ACT)
    assert isinstance(td3, TD3) and td3.state_type is TD3State
    assert validate(small_config("gaussian", student_name="td3")).student.name == "td3"
    # A TD3-only field given explicitly for DDPG would do nothing: refused, naming the field.
    ddpg = small_config("gaussian")
    with pytest.raises(ConfigError, match="only 'td3' reads it") as e:
        check_explicit_fields(ddpg, {"student.noise_clip"})
    assert e.value.field == "student.noise_clip"
    check_explicit_fields(small_config("gaussian", student_name="td3"), {"student.noise_clip"})


def test_critic_target_clipped_double_q_with_clipped_smoothing_noise():
    c = cfg()
    td3 = TD3(c, OBS, ACT)
    batch = make_batch()
    live = np.asarray(batch.terminated) == 0
    norm = jax.jit(update_normalizer)(init_normalizer(OBS), jnp.asarray(make_norm_data()))
    s2 = np_normalize(norm, batch.next_obs)
    # Seed 160: the target actor saturates (|mu'| ~ 0.9 in action 0), so mu' + clip(eps) leaves [-1, 1].
    # Q'_2 is Q'_1 reflected about Q'_1's mean over the live rows at the smoothed action a~ (output kernel
    # negated, bias moved), so that each of the two is the smaller one in some row.
    state = make_state(td3, seed=160)
    # eps per row: beyond +-c (clipped to c), inside, and strongly negative.
    eps = np.array([[-0.9, 0.1], [0.05, -2.0], [0.7, -0.25]], np.float32)
    mu2 = np_actor(state.target_actor, s2, c.hidden, c.layer_norm)
    a2 = np.clip(mu2 + np.clip(eps, -CLIP, CLIP), -1.0, 1.0)
    m = np_critic(one(state.target_critic, 0), s2, a2, c.hidden, c.layer_norm)[live].mean()

    def reflect(p):
        p = jax.tree.map(lambda x: x, p)
        out = p["params"]["output"]
        out["kernel"] = out["kernel"].at[1].set(-out["kernel"][0])
        out["bias"] = out["bias"].at[1].set(2 * m - out["bias"][0])
        for name, layer in p["params"].items():
            if name != "output":
                p["params"][name] = jax.tree.map(lambda x: x.at[1].set(x[0]), layer)
        return p

    state = state.replace(target_critic=reflect(state.target_critic))

    @jax.jit
    def run(state, norm, eps):
        y = td3.critic_target(state, norm, batch, eps)
        loss, q1_mean = td3.critic_loss(state.critic, state, norm, batch, y)
        draws = jax.vmap(lambda t: td3.target_noise(state.replace(step=t), (4096, ACT)))(jnp.arange(2))
        return y, td3.critic_target(state, norm, batch), loss, q1_mean, draws

    y, y_mean_action, loss, q1_mean, draws = run(state, norm, jnp.asarray(eps))

    q1, q2 = (np_critic(one(state.target_critic, i), s2, a2, c.hidden, c.layer_norm) for i in (0, 1))
    expected = _a(batch.reward) + GAMMA * (1.0 - _a(batch.terminated)) * np.minimum(q1, q2)
    close(y, expected)
    # Not vacuous: both critics are the min in some non-terminal row, both clips bind somewhere,
    # the smoothing noise changes y, and the terminated row does not bootstrap.
    assert np.any((q1 < q2) & live) and np.any((q2 < q1) & live), (q1, q2)
    assert np.any(np.abs(eps) > CLIP) and np.any(np.abs(mu2 + np.clip(eps, -CLIP, CLIP)) > 1.0), mu2
    assert np.abs(np.asarray(y) - np.asarray(y_mean_action))[live].min() > 1e-3
    assert float(y[1]) == float(batch.reward[1])
    # noise=None is the noise-free target action mu'(s') (the TD error the meta_state teacher reads).
    q1m, q2m = (np_critic(one(state.target_critic, i), s2, mu2, c.hidden, c.layer_norm) for i in (0, 1))
    close(y_mean_action, _a(batch.reward) + GAMMA * (1.0 - _a(batch.terminated)) * np.minimum(q1m, q2m))

    # Loss: both online critics regress to the same y; L2 on both critics' hidden kernels.
    s = np_normalize(norm, batch.obs)
    q_on = [np_critic(one(state.critic, i), s, _a(batch.action), c.hidden, c.layer_norm) for i in (0, 1)]
    l2 = 0.5 * sum(np_hidden_kernel_sq(one(state.critic, i)) for i in (0, 1))
    close(loss, sum(np.mean((q - expected) ** 2) for q in q_on) + L2 * l2)
    close(q1_mean, q_on[0].mean())

    # eps ~ N(0, sigma~^2), a fresh draw per update t.
    draws = np.asarray(draws)
    assert abs(draws.std() - SIGMA) < 0.03 * SIGMA and abs(draws.mean()) < 0.03 * SIGMA
    assert not np.array_equal(draws[0], draws[1])


def test_actor_and_targets_change_only_every_d_th_update_critic_every_update():
    c = cfg()
    td3 = TD3(c, OBS, ACT)
    state = make_state(td3)
    batch = make_batch()
    n = 2 * DELAY + 1

    @jax.jit
    def run(state, norm_data):
        norm = update_normalizer(init_normalizer(OBS), norm_data)

        def body(s, _):
            s, metrics = td3.update(s, norm, batch)
            return s, (s, metrics)

        final, (states, metrics) = jax.lax.scan(body, state, None, length=n)
        many, carry, mean_metrics = td3.update_many(state, norm, lambda k: (k + 1, batch), jnp.int32(0), n)
        # The actor's gradient at its first step (t = d) under the critics after update d, and before it.
        grads = [jax.grad(td3.actor_loss)(state.actor, one(states, t), norm, batch) for t in (DELAY - 1, DELAY - 2)]
        return states, metrics, many, carry, mean_metrics, grads

    states, metrics, many, carry, mean_metrics, (g_post, g_pre) = jax.device_get(
        run(state, jnp.asarray(make_norm_data())))
    delayed_parts = ("actor", "actor_opt", "target_actor", "target_critic")
    before = jax.device_get(state)
    for t in range(1, n + 1):
        after = one(states, t - 1)
        assert int(after.step) == t
        assert _changed(before.critic, after.critic) and _changed(before.critic_opt, after.critic_opt), t
        for part in delayed_parts:
            moved = _changed(getattr(before, part), getattr(after, part))
            assert moved == (t % DELAY == 0), (t, part)
        if t % DELAY == 0:  # targets: Polyak towards the online nets of this update, tau = 0.3
            for tgt, old, online in (("target_actor", before.target_actor, after.actor),
                                     ("target_critic", before.target_critic, after.critic)):
                for o, s, nw in zip(jax.tree.leaves(old), jax.tree.leaves(online),
                                    jax.tree.leaves(getattr(after, tgt))):
                    close(nw, 0.7 * _a(o) + 0.3 * _a(s), rtol=1e-6, atol=1e-6)
        assert np.all(np.asarray(before.key) == np.asarray(after.key))
        before = after
    assert np.all(np.isfinite(metrics["actor_loss"]))
    # The actor's step (its first Adam step: -lr g / (|g| + 1e-8)) uses Q_1 of the critics just updated
    # (Fujimoto et al., Algorithm 1), not those before the update.
    delta = jax.tree.map(lambda a, b: _a(a) - _a(b), one(states, DELAY - 1).actor, state.actor)
    for g, matches in ((g_post, True), (g_pre, False)):
        step = jax.tree.map(lambda x: -c.actor_lr * _a(x) / (np.abs(_a(x)) + 1e-8), g)
        err = max(np.abs(x - y).max() for x, y in zip(jax.tree.leaves(delta), jax.tree.leaves(step)))
        assert (err < 1e-6) == matches, err
    # update_many is the same scan: same final state, t = n, sampler called n times.
    assert int(many.step) == n and int(carry) == n
    for a, b in zip(jax.tree.leaves(many), jax.tree.leaves(one(states, n - 1))):
        close(a, b, rtol=1e-6, atol=1e-6)
    close(mean_metrics["critic_loss"], np.mean(metrics["critic_loss"]), rtol=1e-6)


def _changed(a, b) -> bool:
    """True if any leaf differs; False only if every leaf is bit for bit equal."""
    return any(np.asarray(x).tobytes() != np.asarray(y).tobytes()
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_meta_state_look_ahead_tau_sweep_and_checkpoint_resume_bit_identical(tmp_path):
    """TD3 in the trainer with the teacher that reads Q_1 and the TD error, and K = 2 look-ahead copies pi'
    (which carry the delay counter and noise key), with a sweep over tau (2 values x 2 seeds = 4 runs): a
    chunk run from a restored checkpoint ends bit for bit where the chunk run from the saved state ends,
    and the student's counter counts only its own updates."""
    config = small_config("meta_state", seeds=2, student_name="td3", total_steps=4 * 250, log_every=2,
                          visit_samples=0, sweep=(("student.tau", (0.005, 0.05)),))
    trainer = Trainer(config)
    init = jax.device_get(programs_of(trainer).init_seeds(programs_of(trainer).shard(trainer.seed_keys())))
    half, _ = programs_of(trainer).run_chunk(programs_of(trainer).init_seeds(programs_of(trainer).shard(trainer.seed_keys())))
    ckpt = Checkpointer(tmp_path, keep=1)
    ckpt.save(2, half, {"iteration": 2, "chunk": 1})
    ckpt.wait()
    saved = jax.device_get(half)
    straight, metrics = programs_of(trainer).run_chunk(half)  # donates ``half``
    restored, record = ckpt.restore_verified(programs_of(trainer).abstract_state())
    ckpt.close()
    assert record["iteration"] == 2 and isinstance(restored.student, TD3State)
    assert_bit_identical(restored, saved)
    resumed, _ = programs_of(trainer).run_chunk(restored)
    assert_bit_identical(resumed, straight)
    # 4 iterations x the student's own updates; the look-aheads' updates went to the discarded copies.
    np.testing.assert_array_equal(np.asarray(straight.student.step), [4 * config.student_updates] * 4)
    keys = np.asarray(straight.student.key)  # run v * 2 + s has seed s's keys
    assert not np.array_equal(keys[0], keys[1]) and np.array_equal(keys[0], keys[2])
    # The swept tau reaches the TD3 update: same seed, same init, different targets.
    tc = jax.device_get(straight.student.target_critic)
    assert not _changed(one(init.student, 0), one(init.student, 2)) and _changed(one(tc, 0), one(tc, 2))
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"]))) and np.all(np.asarray(metrics["critic_loss"]) > 0)
    assert _changed(saved.student.actor, straight.student.actor) and _changed(saved.teacher, straight.teacher)


def assert_bit_identical(a, b):
    leaves_a, leaves_b = jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))
    assert len(leaves_a) == len(leaves_b) > 50
    for x, y in zip(leaves_a, leaves_b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


# --------------------------------------------------------------------------- learning
# TD3 with the ``gaussian`` teacher (sigma 0.2) on ``pendulum``, the Baselines-2017 preset (64-64 +
# LayerNorm, batch 64, lr 1e-4 / 1e-3, tau 0.01) and TD3's defaults (sigma~ 0.2, c 0.5, d 2), S = 4
# vmapped seeds, 12.5k env steps (125 iterations of 100 steps, 50 updates each), final evaluation on
# 10 full episodes per seed. Asserted: at least 3 of the 4 seeds above -400.
#
# Measured (S = 12 per base seed, ``mjxmeta.runs.loop.train`` with evaluations every 2.5k steps):
#   7.5k steps, base seeds 0-9 (120 seeds): 38 below -400 (17-58 % of each group of 12): too early.
#   10k steps, base seeds 0-9 (120 seeds): 118 in [-338, -88]; one at -824 (recovered: -165 at
#     12.5k) and one stuck at ~-1600 (base 6, seed 6: -1494 at 10k, then -1615 / -1609 / -1612 / -1621
#     at 12.5k / 15k / 17.5k / 20k; its actor sits at +-1 (tanh saturated) and spins the pendulum).
#   12.5k steps, base seeds 0, 3, 6-9 (72 seeds): 70 in [-262, -90]; one at -507 (-274 at 15k) and
#     the stuck one.
#   This exact test (S = 4, 12.5k), base seeds 0-19 (80 seeds): 79 in [-310, -91], one at -442 (base
#     16); every base passes, with 3-4 seeds above -400; 4-seed means -127 .. -247 (base 0: -178).
#     10-64 s per run after the first (compile ~90 s) on the shared 2-core machine.
# So a seed in 50-100 does not swing up by 12.5k; a mean over 3 seeds would fail whenever one is
# drawn (a few % of seed sets); "3 of 4 above -400" fails only with two of them (< 1 %), and still
# fails a student that learns nothing (every seed -1000..-1600 at 2.5k) or learns much slower.
TD3_THRESHOLD = -400.0


def td3_learning_config(seed: int = 0, seeds: int = 4) -> Config:
    return Config(env="pendulum", seeds=seeds, seed=seed, total_steps=12_500, log_every=25, eval_envs=10,
                  student=StudentConfig(name="td3"), teacher=TeacherConfig(name="gaussian"))


def test_td3_learns_pendulum():
    cfg = td3_learning_config()
    t0 = time.time()
    per_seed = train_and_evaluate(cfg).mean(axis=1)
    msg = f"td3: per-seed final eval returns {np.round(per_seed, 1)}, {time.time() - t0:.0f} s"
    print(msg)
    assert per_seed.shape == (4,) and np.sum(per_seed > TD3_THRESHOLD) >= 3, msg


def test_redq_target_min_over_drawn_subset_and_actor_on_ensemble_mean():
    """critics N = 5, critic_subset M = 2 (REDQ, Chen et al. 2021, Alg. 1): the target's min runs over the M
    target critics drawn for the update (checked against the numpy networks and a re-draw of the subset), a
    new subset per update, and the actor loss is -mean over the batch and all N online critics."""
    n, m = 5, 2
    c = cfg(critics=n, critic_subset=m, policy_noise=0.0)
    td3 = TD3(c, OBS, ACT)
    batch = make_batch()
    norm = jax.jit(update_normalizer)(init_normalizer(OBS), jnp.asarray(make_norm_data()))
    obs = jnp.zeros((1, OBS), jnp.float32)
    act = jnp.zeros((1, ACT), jnp.float32)
    stack = lambda ps: jax.tree.map(lambda *x: jnp.stack(x), *ps)  # noqa: E731
    online = stack([random_params(td3.critic_net.init, obs, act, seed=40 + i) for i in range(n)])
    target = stack([random_params(td3.critic_net.init, obs, act, seed=50 + i) for i in range(n)])
    actor = random_params(td3.actor_net.init, obs, seed=3)
    state = TD3State(actor, online, actor, target, td3.actor_optim.init(actor), td3.critic_optim.init(online),
                     jax.random.PRNGKey(11), jnp.zeros((), jnp.int32))
    assert jax.tree.leaves(td3.init(jax.random.PRNGKey(0)).critic)[0].shape[0] == n

    targets = jax.jit(lambda st, t: td3.critic_target(st.replace(step=t), norm, batch, jnp.zeros_like(batch.action)))
    s2 = np_normalize(norm, batch.next_obs)
    a2 = np_actor(state.target_actor, s2, c.hidden, c.layer_norm)
    q_all = np.stack([np_critic(one(target, i), s2, a2, c.hidden, c.layer_norm) for i in range(n)])
    subsets = []
    for t in range(6):
        subset = np.asarray(jax.random.choice(jax.random.fold_in(jax.random.fold_in(state.key, t), 1), n, (m,),
                                              replace=False))
        assert len(set(subset.tolist())) == m
        subsets.append(tuple(sorted(subset.tolist())))
        expected = _a(batch.reward) + GAMMA * (1.0 - _a(batch.terminated)) * q_all[subset].min(0)
        close(targets(state, jnp.int32(t)), expected)
    assert len(set(subsets)) > 1, subsets  # a fresh subset per update
    live = np.asarray(batch.terminated) == 0
    # M < N matters here: some drawn subset misses the critic with the smallest value in a bootstrapped row
    assert any(np.any(np.abs(q_all.min(0) - q_all[list(sub)].min(0))[live] > 1e-4) for sub in subsets)

    s = np_normalize(norm, batch.obs)
    mu = np_actor(actor, s, c.hidden, c.layer_norm)
    q_mu = np.stack([np_critic(one(online, i), s, mu, c.hidden, c.layer_norm) for i in range(n)])
    close(jax.jit(td3.actor_loss)(actor, state, norm, batch), -q_mu.mean())
    assert abs(q_mu.mean() - q_mu[0].mean()) > 1e-4  # differs from TD3's Q_1-only actor loss
