"""Meta-gradient options: ES estimator, paired/antithetic candidates, mixed look-ahead, diagnostics, toy sigma.

* ES vs a known gradient: for J(theta) = a.theta - ||theta - c||^2 the antithetic
  pair estimate (J(theta + s d) - J(theta - s d)) / (2 s) d = (grad J . d) d
  exactly (the even terms cancel), so E[g_ES] = grad J; checked within 4 SE.
* Antithetic noise and perturbations are exactly mirrored (bitwise).
* Mixed look-ahead minibatches hold exactly round(f * batch) D0 rows, and all
  candidates see the same buffer rows.
* Diagnostics by hand (cosine, path, shift).
* Item 8 toy: a 1-D task whose expected meta-reward is the known smooth
  function E[R](sigma) = sigma^2 - sigma^4 / (2 sigma*^2) (maximum at sigma*):
  under the default estimator settings sigma moves toward sigma* from both sides.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxmeta.runs.programs import programs_of
from mjxmeta.algo import diagnostics, estimators, lookahead
from mjxmeta.algo.config import Config, ConfigError, MetaConfig, StudentConfig, TeacherConfig, validate
from mjxmeta.algo.replay import Transition
from mjxmeta.algo import teachers


# --------------------------------------------------------------------------- ES estimator
def test_es_gradient_matches_known_gradient_of_a_quadratic():
    rng = np.random.default_rng(0)
    theta = {"log_std": jnp.asarray(rng.normal(size=2), jnp.float32),
             "net": {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}}
    a = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), theta)
    c = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), theta)
    dot = lambda x, y: sum(jnp.vdot(u, v) for u, v in zip(jax.tree.leaves(x), jax.tree.leaves(y)))  # noqa: E731
    J = lambda p: dot(a, p) - dot(jax.tree.map(jnp.subtract, p, c), jax.tree.map(jnp.subtract, p, c))  # noqa: E731
    k, s = 20_000, 0.1

    @jax.jit
    def run(key):
        deltas = estimators.perturbations(key, theta, k)
        rewards = jax.vmap(J)(estimators.perturb(theta, deltas, s))
        g = estimators.es_gradient(deltas, rewards, s)
        # per-pair terms (R_k - R_{k+K/2}) delta_k / (2 s) for the standard error
        pair = jax.tree.map(lambda d: (rewards[:k // 2] - rewards[k // 2:]).reshape((-1,) + (1,) * (d.ndim - 1))
                            * d[:k // 2] / (2 * s), deltas)
        return g, jax.tree.map(lambda x: x.std(0) / math.sqrt(k // 2), pair), jax.grad(J)(theta)

    g, se, exact = run(jax.random.PRNGKey(3))
    for gg, ss, ee in zip(jax.tree.leaves(g), jax.tree.leaves(se), jax.tree.leaves(exact)):
        assert np.all(np.abs(np.asarray(gg) - np.asarray(ee)) < 4 * np.asarray(ss)), (gg, ee, ss)
        assert np.all(np.asarray(ss) < 0.1 * np.linalg.norm(np.concatenate([np.ravel(x) for x in
                                                                             jax.tree.leaves(exact)])))


def test_es_pair_is_an_exact_directional_derivative_for_a_quadratic():
    """One antithetic pair: g = (grad J . d) d exactly (up to float32 rounding)."""
    theta = {"log_std": jnp.asarray([0.3, -0.2])}
    J = lambda p: 2.0 * p["log_std"][0] - jnp.sum(jnp.square(p["log_std"] - 1.0))  # noqa: E731
    deltas = estimators.perturbations(jax.random.PRNGKey(0), theta, 2)
    g = estimators.es_gradient(deltas, jax.vmap(J)(estimators.perturb(theta, deltas, 0.05)), 0.05)["log_std"]
    d = np.asarray(deltas["log_std"][0], np.float64)
    want = np.dot(np.asarray(jax.grad(J)(theta)["log_std"]), d) * d
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-3, atol=1e-5)


# --------------------------------------------------------------------------- antithetic pairing
def test_antithetic_noise_and_perturbations_are_exactly_mirrored():
    eps = np.asarray(estimators.candidate_noise(jax.random.PRNGKey(1), 6, (4, 2), "antithetic"))
    assert eps.shape == (6, 4, 2)
    np.testing.assert_array_equal(eps[3:], -eps[:3])
    assert np.all(eps[:3] != 0) and len({eps[i].tobytes() for i in range(3)}) == 3  # distinct pairs
    common = np.asarray(estimators.candidate_noise(jax.random.PRNGKey(1), 4, (5,), "common"))
    assert all(np.array_equal(common[0], common[i]) for i in range(4))
    indep = np.asarray(estimators.candidate_noise(jax.random.PRNGKey(1), 4, (5,), "independent"))
    assert len({indep[i].tobytes() for i in range(4)}) == 4
    with pytest.raises(ValueError, match="even"):
        estimators.candidate_noise(jax.random.PRNGKey(1), 3, (5,), "antithetic")
    with pytest.raises(ValueError, match="unknown noise mode"):
        estimators.candidate_noise(jax.random.PRNGKey(1), 2, (5,), "mirror")
    deltas = estimators.perturbations(jax.random.PRNGKey(2), {"a": jnp.zeros((3,)), "b": jnp.zeros((2, 2))}, 4)
    for leaf in jax.tree.leaves(deltas):
        np.testing.assert_array_equal(np.asarray(leaf[2:]), -np.asarray(leaf[:2]))


# --------------------------------------------------------------------------- mixed look-ahead
def _transitions(m, reward, ident):
    obs = jnp.stack([jnp.arange(m, dtype=jnp.float32), jnp.full((m,), ident, jnp.float32)], axis=1)
    z = jnp.zeros((m,), jnp.float32)
    return Transition(obs, jnp.zeros((m, 1)), jnp.full((m,), reward, jnp.float32), obs, z)


@pytest.mark.parametrize("fraction,n_d0", [(0.1, 6), (0.25, 16), (0.5, 32), (1.0, 64), (0.001, 1)])
def test_mixed_minibatch_has_exact_d0_count_and_common_buffer_rows(fraction, n_d0):
    cfg = validate(Config(meta=MetaConfig(lookahead_data="mixed", lookahead_d0_fraction=fraction)))
    assert cfg.lookahead_d0_rows == n_d0
    bs, k = cfg.student.batch_size, 3
    buffer = _transitions(500, -1.0, -1.0)

    def buffer_rows(key):  # the trainer's replay sample: batch_size uniform rows
        return jax.tree.map(lambda x: x[jax.random.randint(key, (bs,), 0, 500)], buffer), jnp.asarray(True)

    d0s = jax.tree.map(lambda *xs: jnp.stack(xs), *[_transitions(100, 1.0, float(i)) for i in range(k)])

    @jax.jit
    def batches(d0s, keys, buffer_key):
        def one(d0, key):
            sample = lookahead.lookahead_sampler(d0, bs, n_d0, buffer_rows)
            _, out = jax.lax.scan(lambda c, _: sample(c), (key, buffer_key), None, length=5)
            return out
        return jax.vmap(one)(d0s, keys)

    out = batches(d0s, jax.random.split(jax.random.PRNGKey(0), k), jax.random.PRNGKey(9))
    r, ident = np.asarray(out.reward), np.asarray(out.obs[..., 1])   # (K, 5 updates, bs)
    assert r.shape == (k, 5, bs)
    np.testing.assert_array_equal((r == 1.0).sum(-1), n_d0)          # exactly n_d0 D0 rows per minibatch
    np.testing.assert_array_equal((r == -1.0).sum(-1), bs - n_d0)
    for c in range(k):
        assert np.all(ident[c, :, :n_d0] == c)                         # each candidate's own D0
    np.testing.assert_array_equal(ident[:, :, n_d0:], -1.0)
    rows_b = np.asarray(out.obs[..., 0])[:, :, n_d0:]
    for c in range(1, k):
        np.testing.assert_array_equal(rows_b[c], rows_b[0])           # same buffer rows for every candidate
    if bs - n_d0 > 1:
        assert len(np.unique(rows_b[0])) > 1


def test_mixed_minibatch_falls_back_to_d0_while_the_buffer_is_empty():
    d0 = _transitions(100, 1.0, 0.0)
    empty = lambda key: (_transitions(64, -1.0, -1.0), jnp.asarray(False))  # noqa: E731
    sample = lookahead.lookahead_sampler(d0, 64, 16, empty)
    _, batch = jax.jit(sample)((jax.random.PRNGKey(0), jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(np.asarray(batch.reward), 1.0)


def test_option_validation():
    def rejects(field, **kw):
        parts = {"meta": MetaConfig, "teacher": TeacherConfig}
        cfg = Config(**{k: parts[k](**v) for k, v in kw.items()})
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            validate(cfg)

    rejects("meta.candidates", meta=dict(candidates=3, paired=True))
    rejects("meta.candidates", meta=dict(candidates=1), teacher=dict(estimator="es"))
    rejects("meta.lookahead_data", meta=dict(lookahead_data="both"))
    rejects("meta.lookahead_d0_fraction", meta=dict(lookahead_d0_fraction=0.0))
    rejects("meta.lookahead_lr_scale", meta=dict(lookahead_lr_scale=0.0))
    rejects("teacher.estimator", teacher=dict(estimator="sf"))
    rejects("teacher.es_sigma", teacher=dict(es_sigma=0.0))
    rejects("teacher.log_std_bound", teacher=dict(log_std_bound="tanh"))
    rejects("teacher.init_std", teacher=dict(init_std=math.exp(1.0)))  # on the sigmoid bound's open end
    validate(Config(teacher=TeacherConfig(init_std=math.exp(1.0), log_std_bound="clip")))
    assert validate(Config(teacher=TeacherConfig(estimator="es"))).paired
    assert not validate(Config(teacher=TeacherConfig(name="gaussian"), meta=MetaConfig(paired=True))).paired


# --------------------------------------------------------------------------- diagnostics
def test_diagnostics_by_hand():
    teacher = teachers.make(TeacherConfig(name="meta_variance", log_std_bound="clip"), 3, 2)
    p0 = {"log_std": jnp.asarray([-1.0, -2.0])}
    d = diagnostics.init_diagnostics(teacher, p0)
    p1 = {"log_std": jnp.asarray([-0.5, -2.0])}
    g1 = {"log_std": jnp.asarray([3.0, 4.0])}
    d, m = diagnostics.diagnose(teacher, d, p0, p1, g1, jnp.asarray([1.0, 3.0]), jnp.asarray([-2.0, 2.0]))
    assert set(m) == set(diagnostics.DIAGNOSTIC_METRICS)
    np.testing.assert_allclose(float(m["teacher_grad_norm"]), 5.0, rtol=1e-6)
    np.testing.assert_allclose(float(m["teacher_grad_log_std"]), 3.5, rtol=1e-6)
    assert float(m["grad_cosine_ema"]) == 0.0                      # no previous gradient yet
    np.testing.assert_allclose(float(m["advantage_rms"]), 2.0, rtol=1e-6)
    np.testing.assert_allclose(float(m["meta_reward_sd"]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(m["log_std_path"]), 0.25, rtol=1e-6)
    p2 = {"log_std": jnp.asarray([-1.0, -2.0])}                       # back to the start
    g2 = {"log_std": jnp.asarray([-4.0, 3.0])}                        # orthogonal to g1: cos 0
    d, m = diagnostics.diagnose(teacher, d, p1, p2, g2, jnp.asarray([0.0]), jnp.asarray([0.0]))
    assert float(m["grad_cosine_ema"]) == 0.0
    np.testing.assert_allclose(float(m["log_std_path"]), 0.5, rtol=1e-6)
    assert float(m["log_std_shift"]) == 0.0 and float(m["net_shift"]) == 0.0 and float(m["net_path"]) == 0.0
    d, m = diagnostics.diagnose(teacher, d, p2, p2, g2, jnp.asarray([0.0]), jnp.asarray([0.0]))  # same direction: cos 1
    np.testing.assert_allclose(float(m["grad_cosine_ema"]), 0.1, rtol=1e-6)
    zeros = diagnostics.zero_diagnostic_metrics()
    assert set(zeros) == set(m) and all(float(v) == 0.0 for v in zeros.values())


# --------------------------------------------------------------------------- item 8: toy with a known optimum
SIGMA_STAR, TOY_T = 0.3, 100
TOY_ITERATIONS = 3000


def toy_meta_reward(raw):
    """R = mean_t [a_t^2 - a_t^4 / (6 sigma*^2)] for raw (K, T, 1); E[R] = sigma^2 - sigma^4 / (2 sigma*^2)."""
    return jnp.mean(raw ** 2 - raw ** 4 / (6 * SIGMA_STAR ** 2), axis=(1, 2))


def toy_run(init_std: float, estimator: str, iterations: int = TOY_ITERATIONS):
    """log sigma over ``iterations`` meta-steps on the toy with the default K, baseline, lr and bound.

    Candidates are built as the trainer builds them: REINFORCE draws independent
    noise (antithetic when ``MetaConfig().paired``); ES perturbs theta
    antithetically with common noise.
    """
    tc = dataclasses.replace(TeacherConfig(), name="meta_variance", init_std=init_std, estimator=estimator)
    k = MetaConfig().candidates
    paired = MetaConfig().paired
    teacher = teachers.make(tc, 1, 1)
    inputs = jnp.zeros((k, TOY_T, 1), jnp.float32)  # mu(s) = 0

    def step(state, key):
        k_pert, k_eps = jax.random.split(key)
        deltas = None
        if estimator == "pathwise":  # a = sigma eps with eps fixed: differentiate R itself (mjxmeta.algo.pathwise)
            eps = estimators.candidate_noise(k_eps, k, (TOY_T, 1), "independent")
            sample = lambda p: teacher.sample(p, jnp.zeros((1, 1)), k_eps, inputs, eps)[0]  # noqa: E731
            grad = jax.grad(lambda p: jnp.mean(toy_meta_reward(sample(p))))(state.params)
            grad, _ = estimators.finite_or_zero(grad)
            state = estimators.teacher_step(teacher, state, grad)
            return state, teacher.log_std(state.params)[0]
        if estimator == "es":
            deltas = estimators.perturbations(k_pert, state.params, k)
            eps = estimators.candidate_noise(k_eps, k, (TOY_T, 1), "common")
            params_k = estimators.perturb(state.params, deltas, tc.es_sigma)
            raw = jax.vmap(lambda p, u, e: teacher.sample(p, jnp.zeros((1, 1)), k_eps, u, e)[0])(params_k, inputs, eps)
        else:
            eps = estimators.candidate_noise(k_eps, k, (TOY_T, 1), "antithetic" if paired else "independent")
            raw, _ = teacher.sample(state.params, jnp.zeros((1, 1)), k_eps, inputs, eps)
        rewards = toy_meta_reward(raw)
        grad, _, ema = estimators.meta_gradient(teacher, state, rewards, inputs, raw, deltas)
        state = estimators.teacher_step(teacher, state, grad).replace(baseline=ema)
        return state, teacher.log_std(state.params)[0]

    state = teacher.init(jax.random.PRNGKey(0), 1)
    _, log_std = jax.lax.scan(step, state, jax.random.split(jax.random.PRNGKey(1), iterations))
    return log_std


@functools.lru_cache(maxsize=None)
def toy_runs(estimator: str):
    run = jax.jit(functools.partial(toy_run, estimator=estimator), static_argnums=0)
    return {s0: np.asarray(run(s0)) for s0 in (0.05, 1.2)}


@pytest.mark.parametrize("estimator", [TeacherConfig().estimator, "es"])
def test_toy_sigma_moves_toward_the_known_optimum_from_both_sides(estimator):
    target = math.log(SIGMA_STAR)
    for s0, log_std in toy_runs(estimator).items():
        start = abs(math.log(s0) - target)
        end = abs(float(np.mean(log_std[-100:])) - target)
        # Within TOY_ITERATIONS meta-steps the distance to log sigma* shrinks to under half ...
        assert end < 0.5 * start, (estimator, s0, np.exp(log_std[[0, 999, 1999, -1]]))
        # ... and the path goes the right way: the last third is closer than the first third.
        thirds = np.array_split(np.abs(log_std - target), 3)
        assert thirds[2].mean() < thirds[0].mean()


def iterations_to_halve(log_std: np.ndarray, s0: float) -> int:
    """First meta-step after which |log sigma - log sigma*| stays below half its start value (len if never)."""
    far = np.abs(log_std - math.log(SIGMA_STAR)) >= 0.5 * abs(math.log(s0) - math.log(SIGMA_STAR))
    return int(np.nonzero(far)[0][-1] + 1) if far.any() else 0


def test_toy_pathwise_reaches_the_optimum_in_fewer_env_steps_than_reinforce():
    """The pathwise gradient of the same toy (a = sigma eps, eps held fixed) moves sigma toward sigma*
    from both sides, and gets there in fewer meta-steps, hence env steps (K T per meta-step, the same
    for both), than REINFORCE with the same K, lr and bound."""
    steps_per_iteration = MetaConfig().candidates * TOY_T
    for s0, log_std in toy_runs("pathwise").items():
        target = math.log(SIGMA_STAR)
        assert abs(float(np.mean(log_std[-100:])) - target) < 0.5 * abs(math.log(s0) - target)
        pathwise = iterations_to_halve(log_std, s0) * steps_per_iteration
        reinforce = iterations_to_halve(toy_runs(TeacherConfig().estimator)[s0], s0) * steps_per_iteration
        assert pathwise < reinforce, (s0, pathwise, reinforce)


# --------------------------------------------------------------------------- in the trainer (pendulum, tiny)
def tiny_config(teacher="meta_variance", **meta_kw):
    est = meta_kw.pop("estimator", "reinforce")
    return Config(env="pendulum", num_envs=2, rollout_steps=8, total_steps=1000, log_every=1, eval_envs=1,
                  visit_samples=0, student=StudentConfig(hidden=(8, 8), batch_size=16, buffer_size=5000),
                  teacher=TeacherConfig(name=teacher, hidden=(8, 8), estimator=est),
                  meta=MetaConfig(candidates=4, return_horizon=8, lookahead_updates=3, **meta_kw))


@functools.lru_cache(maxsize=None)
def paired_outputs():
    from mjxmeta.algo.trainer import Trainer

    out = {}
    for paired in (True, False):
        tr = Trainer(tiny_config(paired=paired, lookahead_data="mixed"))

        @jax.jit
        def run(key):
            state = tr.init(key)
            state, _ = tr.iteration(state)                     # B non-empty
            _, _, d0, _, raw = tr.rollout_d0(state, jax.random.PRNGKey(5))
            same = jax.tree.map(lambda x: jnp.broadcast_to(x[:1], x.shape), d0)   # one D0 for all K
            primes = tr.look_ahead(state, same, jax.random.PRNGKey(6))
            mu = tr.student.act(state.student, state.normalizer, d0.obs[:, 0])
            return d0, raw, mu, primes.actor

        out[paired] = run(jax.random.PRNGKey(0))
    return out


def test_paired_candidates_share_start_states_mirror_noise_and_share_lookahead_batches():
    d0, raw, mu, actors = paired_outputs()[True]
    obs0 = np.asarray(d0.obs[:, 0])                                    # (K, N, obs) at t = 0
    for k in range(1, 4):
        np.testing.assert_array_equal(obs0[k], obs0[0])
    noise0 = np.asarray(raw[:, 0]) - np.asarray(mu)                     # meta_variance: raw - mu(s) = sigma eps
    np.testing.assert_allclose(noise0[2:], -noise0[:2], atol=1e-6)      # antithetic (eps, -eps)
    assert np.all(np.abs(noise0) > 0)
    for leaf in jax.tree.leaves(actors):                                # same D0 + same indices: same pi'
        for k in range(1, 4):
            np.testing.assert_array_equal(np.asarray(leaf[k]), np.asarray(leaf[0]))
    d0_u, _, _, actors_u = paired_outputs()[False]
    assert not np.array_equal(np.asarray(d0_u.obs[0, 0]), np.asarray(d0_u.obs[1, 0]))
    assert any(not np.array_equal(np.asarray(leaf[0]), np.asarray(leaf[1])) for leaf in jax.tree.leaves(actors_u))


def test_es_estimator_in_the_trainer_perturbs_candidates_antithetically():
    from mjxmeta.algo.trainer import Trainer

    tr = Trainer(tiny_config(teacher="meta", estimator="es"))

    @jax.jit
    def run(key):
        state = tr.init(key)
        est = tr.meta_estimate(state, *jax.random.split(jax.random.PRNGKey(3), 3))
        new, metrics = tr.iteration(state)
        return state, est, new, metrics

    state, est, new, metrics = run(jax.random.PRNGKey(0))
    obs0 = np.asarray(est["d0"].obs[:, 0])
    for k in range(1, 4):
        np.testing.assert_array_equal(obs0[k], obs0[0])                 # common start states
    assert not np.array_equal(np.asarray(est["d0"].action[0, 0]), np.asarray(est["d0"].action[2, 0]))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(est["grad"]))
    assert float(metrics["teacher_grad_norm"]) > 0 and float(metrics["net_path"]) > 0
    moved = [not np.array_equal(np.asarray(a), np.asarray(b))
             for a, b in zip(jax.tree.leaves(state.teacher.params), jax.tree.leaves(new.teacher.params))]
    assert all(moved)


def test_mixed_lookahead_estimate_is_the_same_vmapped_over_seeds_and_single():
    """One meta-gradient estimate (mixed look-ahead, B non-empty) agrees between the seed-vmapped
    program and the single-seed one to float rounding: nothing but rounding differs."""
    from mjxmeta.algo.trainer import Trainer

    from conftest import tree_index

    cfg = dataclasses.replace(tiny_config(lookahead_data="mixed"), seeds=2)
    tr = Trainer(cfg)
    state, _ = programs_of(tr).run_chunk(programs_of(tr).init_seeds(tr.seed_keys()))
    keys = jax.random.split(jax.random.PRNGKey(3), 6).reshape(2, 3, 2)

    def est(s, k):
        e = tr.meta_estimate(s, k[0], k[1], k[2])
        return e["returns"], e["grad"]

    batched = jax.jit(jax.vmap(est))(state, keys)
    for i in range(2):
        single = jax.jit(est)(tree_index(state, i), keys[i])
        for x, y in zip(jax.tree.leaves(single), jax.tree.leaves(tree_index(batched, i))):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-4)
