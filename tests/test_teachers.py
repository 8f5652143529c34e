"""Teachers (exploration policies): log-densities, sampling noise, OU process, memory.

Expected values come from scipy.stats and from a NumPy re-implementation of the
teacher's mean network; sampling statistics are checked against their exact
values within a few Monte-Carlo standard errors. Every teacher is exercised by a
single jitted function (few compiles: the machine is shared).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mjxmeta.algo.config import TeacherConfig
from mjxmeta.algo import teachers
from mjxmeta.algo.teachers import Teacher, gaussian_log_prob

OBS, A = 3, 2
HIDDEN = (8, 8)
INIT_STD = 0.5
LOG_STD = np.log([0.3, 0.7])  # per-dimension stds set explicitly (not the init value)
N_SAMPLES = 20_000
# The paper's teachers; pink and meta_latent have their own files (tests/test_pink.py, tests/test_meta_latent.py).
PAPER_TEACHERS = ("gaussian", "ou", "meta_variance", "meta", "meta_state")


def np_mean_net(net_params, x):
    """NumPy forward pass of ``GaussianMean`` (Dense -> ReLU hidden, tanh output)."""
    p = net_params["params"]
    x = np.asarray(x, np.float64)
    i = 0
    while f"hidden_{i}" in p:
        d = p[f"hidden_{i}"]["Dense_0"]
        x = np.maximum(x @ np.asarray(d["kernel"], np.float64) + np.asarray(d["bias"], np.float64), 0.0)
        i += 1
    o = p["output"]
    return np.tanh(x @ np.asarray(o["kernel"], np.float64) + np.asarray(o["bias"], np.float64))


def make_teacher(name: str, **kw) -> Teacher:
    return teachers.make(TeacherConfig(name=name, init_std=INIT_STD, hidden=HIDDEN, **kw), OBS, A)


def make_params(teacher: Teacher, seed=0):
    """Params of ``teacher``'s structure: the net's leaves N(0, 0.5^2) from NumPy
    (O(1) means; no RNG compile), log_std = LOG_STD (log ou_sigma for ``ou``)."""
    shapes = jax.eval_shape(lambda k: teacher.init(k, 1).params, jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.normal(size=s.shape), s.dtype), shapes)
    log_std = math.log(teacher.config.ou_sigma) * np.ones(A) if teacher.name == "ou" else LOG_STD
    params["log_std"] = jnp.asarray(teacher.log_std_param(log_std), jnp.float32)
    return params


def make_inputs(teacher: Teacher, n: int, seed=1):
    """Teacher inputs u for n env rows, built with ``Teacher.inputs``; also returns mu."""
    rng = np.random.default_rng(seed)
    obs_n = jnp.asarray(rng.normal(size=(n, OBS)), jnp.float32)
    mu = jnp.asarray(rng.uniform(-0.9, 0.9, size=(n, A)), jnp.float32)
    q = jnp.asarray(rng.normal(scale=30.0, size=(n,)), jnp.float32)
    memory = jnp.asarray(rng.normal(size=(n, teacher.memory_size)), jnp.float32)
    return teacher.inputs(obs_n, mu, lambda: q, memory), mu


@functools.lru_cache(maxsize=None)
def teacher_outputs(name: str):
    """One jitted pass per teacher: log-probs of given raw actions, samples, means."""
    teacher = make_teacher(name)
    params = make_params(teacher)
    u_small, mu_small = make_inputs(teacher, 4)
    # Unclipped raw actions, every row outside [-1, 1] in some dimension.
    raw_small = jnp.asarray([[1.7, -0.2], [-2.3, 1.4], [0.3, 3.0], [-1.2, -1.9]], jnp.float32)
    u_big, mu_big = make_inputs(teacher, N_SAMPLES, seed=2)
    mem_big = jnp.asarray(np.random.default_rng(3).normal(scale=0.1, size=(N_SAMPLES, teacher.memory_size)),
                          jnp.float32)

    @jax.jit
    def run(params, key):
        k0, k1 = jax.random.split(key)
        raw0, m0 = teacher.sample(params, jnp.zeros_like(mem_big), k0, u_big)
        raw1, m1 = teacher.sample(params, mem_big, k1, u_big)
        return dict(
            logp=teacher.log_prob(params, u_small, raw_small),
            logp_clipped=teacher.log_prob(params, u_small, jnp.clip(raw_small, -1, 1)),
            mean_small=teacher.mean(params, u_small),
            mean_big=teacher.mean(params, u_big),
            log_std=teacher.log_std(params),
            raw0=raw0, mem0=m0, raw1=raw1, mem1=m1,
        )

    out = run(params, jax.random.PRNGKey(4))
    return teacher, params, dict(u_small=u_small, mu_small=mu_small, raw_small=raw_small, u_big=u_big,
                                 mu_big=mu_big, mem_big=mem_big), out


# --------------------------------------------------------------------------- (a) density
@pytest.mark.parametrize("shape,std_shape", [((2,), (2,)), ((5, 1), (1,)), ((4, 3), (3,)),
                                             ((2, 3, 4), (4,)), ((2, 3, 4), (2, 3, 4))])
def test_gaussian_log_prob_matches_scipy(shape, std_shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.normal(scale=2.0, size=shape).astype(np.float32)
    m = rng.normal(size=shape).astype(np.float32)
    log_std = rng.uniform(-2.0, 1.0, size=std_shape).astype(np.float32)
    got = np.asarray(jax.jit(gaussian_log_prob)(a, m, log_std))
    want = stats.norm.logpdf(a.astype(np.float64), m, np.exp(log_std.astype(np.float64))).sum(-1)
    assert got.shape == shape[:-1]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if std_shape == shape[-1:]:  # diagonal multivariate normal, row by row
        cov = np.diag(np.exp(2.0 * log_std.astype(np.float64)))
        flat_a, flat_m = a.reshape(-1, shape[-1]), m.reshape(-1, shape[-1])
        mvn = [stats.multivariate_normal(mm, cov).logpdf(aa) for aa, mm in zip(flat_a, flat_m)]
        np.testing.assert_allclose(got.reshape(-1), mvn, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- (b) per teacher
def expected_mean(teacher, params, u, mu):
    """The mean the teacher should use: the student's mu(s) for the noise teachers
    and meta_variance, the NumPy mean network on u for meta / meta_state."""
    if teacher.has_net:
        return np_mean_net(params["net"], u)
    return np.asarray(mu, np.float64)


@pytest.mark.parametrize("name", PAPER_TEACHERS)
def test_log_prob_is_density_of_unclipped_action(name):
    teacher, params, d, out = teacher_outputs(name)
    mean = expected_mean(teacher, params, d["u_small"], d["mu_small"])
    np.testing.assert_allclose(np.asarray(out["mean_small"]), mean, rtol=1e-5, atol=1e-5)
    std = np.exp(np.asarray(out["log_std"], np.float64))
    raw = np.asarray(d["raw_small"], np.float64)
    assert (np.abs(raw) > 1).any(axis=1).all()
    want = stats.norm.logpdf(raw, mean, std).sum(-1)
    np.testing.assert_allclose(np.asarray(out["logp"]), want, rtol=1e-5, atol=1e-4)
    # ... and not the density of the clipped (executed) action.
    clipped = stats.norm.logpdf(np.clip(raw, -1, 1), mean, std).sum(-1)
    np.testing.assert_allclose(np.asarray(out["logp_clipped"]), clipped, rtol=1e-5, atol=1e-4)
    assert np.all(np.abs(np.asarray(out["logp"]) - np.asarray(out["logp_clipped"])) > 0.1)
    # NOTE (ou): log_prob is N(mu, ou_sigma^2), which is *not* the OU transition
    # density N(mu + (1 - theta dt) x_{t-1}, sigma^2 dt). It is never used (ou is
    # not a meta teacher, so no meta-gradient is taken), see the report.


@pytest.mark.parametrize("name", PAPER_TEACHERS)
def test_sampled_noise_has_configured_std(name):
    teacher, params, d, out = teacher_outputs(name)
    mean = expected_mean(teacher, params, d["u_big"], d["mu_big"])
    np.testing.assert_allclose(np.asarray(out["mean_big"]), mean, rtol=1e-5, atol=1e-5)
    for raw, mem_in, mem_out in ((out["raw0"], np.zeros_like(d["mem_big"]), out["mem0"]),
                                 (out["raw1"], np.asarray(d["mem_big"]), out["mem1"])):
        noise = np.asarray(raw, np.float64) - mean
        if name == "ou":
            c = teacher.config
            # x_{t+1} = (1 - theta dt) x_t + sigma sqrt(dt) eps; raw = mu + x_{t+1}; memory <- x_{t+1}.
            np.testing.assert_allclose(np.asarray(mem_out), noise, atol=1e-5)
            noise = noise - (1.0 - c.ou_theta * c.ou_dt) * mem_in
            want_std = np.full(A, c.ou_sigma * math.sqrt(c.ou_dt))
        else:
            np.testing.assert_array_equal(np.asarray(mem_out), mem_in)  # memory untouched
            want_std = np.exp(LOG_STD)
        sd = noise.std(axis=0)
        # Relative SE of a sample std ~ 1/sqrt(2n) = 0.5 %; allow 3 %.
        np.testing.assert_allclose(sd, want_std, rtol=0.03)
        assert np.all(np.abs(noise.mean(axis=0)) < 4 * want_std / math.sqrt(N_SAMPLES))
        # Raw samples are not clipped: plenty fall outside [-1, 1] (std 0.7 on dim 1).
        if name != "ou":
            assert (np.abs(np.asarray(raw)) > 1).mean() > 0.05


@pytest.mark.parametrize("name", ["gaussian", "ou", "meta_variance"])
def test_init_log_std(name):
    teacher = make_teacher(name)
    st = teacher.init(jax.random.PRNGKey(0), 3)
    std = teacher.config.ou_sigma if name == "ou" else INIT_STD
    np.testing.assert_allclose(np.asarray(teacher.log_std(st.params)), np.log(std) * np.ones(A), rtol=1e-5)
    assert st.memory.shape == (3, teacher.memory_size)
    assert float(st.baseline) == 0.0


def test_log_std_is_clipped_to_configured_range():
    teacher = teachers.make(TeacherConfig(name="meta_variance", min_log_std=-2.0, max_log_std=0.5, log_std_bound="clip"),
                      OBS, A)
    got = np.asarray(teacher.log_std({"log_std": jnp.asarray([-7.0, 3.0])}))
    np.testing.assert_array_equal(got, [-2.0, 0.5])


def test_sigmoid_bound_by_hand_and_its_inverse():
    teacher = teachers.make(TeacherConfig(name="meta_variance", min_log_std=-2.0, max_log_std=0.5), OBS, A)
    raw = np.array([-30.0, 0.0, 1.0, 30.0], np.float32)
    want = -2.0 + 2.5 / (1.0 + np.exp(-raw.astype(np.float64)))
    got = np.asarray(teacher.log_std({"log_std": jnp.asarray(raw)}))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[0] > -2.0 - 1e-6 and got[-1] < 0.5 + 1e-6
    inner = np.array([-1.9, -0.3, 0.4])
    np.testing.assert_allclose(np.asarray(teacher.log_std({"log_std": jnp.asarray(teacher.log_std_param(inner))})),
                               inner, rtol=1e-5)
    # d log sigma / d raw = (hi - lo) s (1 - s): 2.5 / 4 at raw = 0, positive even far outside.
    g = jax.grad(lambda r: jnp.sum(teacher.log_std({"log_std": r})))(jnp.asarray([0.0, 12.0]))
    np.testing.assert_allclose(np.asarray(g)[0], 0.625, rtol=1e-6)
    assert 0.0 < float(g[1]) < 1e-4


def test_hard_clip_parks_adam_outside_the_range_and_sigmoid_bound_recovers():
    """Item 7's measurement: J = -(log sigma - target)^2 with target 2.0 > max_log_std = 1.0 for
    300 Adam steps (lr 0.05), then target -1.0 for 700 steps. The hard clip's gradient is exactly 0
    once the parameter has crossed the bound (Adam momentum carries it there), so log sigma stays at
    the bound for ever; the sigmoid bound's gradient never vanishes and log sigma returns to -1.0."""
    import optax

    def run(bound):
        teacher = teachers.make(TeacherConfig(name="meta_variance", log_std_bound=bound), OBS, 1)
        params = {"log_std": jnp.asarray(teacher.log_std_param(np.array([-1.6])), jnp.float32)}
        opt = optax.adam(0.05)
        targets = jnp.concatenate([jnp.full((300,), 2.0), jnp.full((700,), -1.0)])

        def step(carry, target):
            p, s = carry
            g = jax.grad(lambda q: -jnp.sum(jnp.square(teacher.log_std(q) - target)))(p)
            u, s = opt.update(jax.tree.map(jnp.negative, g), s, p)
            return (optax.apply_updates(p, u), s), (teacher.log_std(p)[0], g["log_std"][0])

        _, out = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), targets))(params)
        return jax.tree.map(np.asarray, out)

    ls_clip, g_clip = run("clip")
    ls_sig, g_sig = run("sigmoid")
    assert ls_clip[299] == 1.0 and np.all(g_clip[300:] == 0.0)       # parked: zero gradient after the switch
    assert ls_clip[-1] == 1.0
    assert np.all(g_sig != 0.0)
    assert abs(ls_sig[-1] - (-1.0)) < 0.05, ls_sig[-1]


# --------------------------------------------------------------------------- (c) OU process
OU_THETA, OU_DT, OU_SIGMA = 15.0, 0.01, 0.2
OU_STEPS, OU_BURN, OU_ENVS = 1200, 100, 256


def test_ou_noise_is_the_discrete_ar1_process():
    teacher = teachers.make(TeacherConfig(name="ou", ou_theta=OU_THETA, ou_dt=OU_DT, ou_sigma=OU_SIGMA), OBS, 1)
    params = {"log_std": jnp.full((1,), math.log(OU_SIGMA), jnp.float32)}

    @jax.jit
    def run(key):
        u = jnp.zeros((OU_ENVS, 1), jnp.float32)  # mu(s) = 0: raw action = OU state

        def body(mem, k):
            raw, mem = teacher.sample(params, mem, k, u)
            return mem, raw[:, 0]

        _, xs = jax.lax.scan(body, jnp.zeros((OU_ENVS, 1), jnp.float32), jax.random.split(key, OU_STEPS))
        return xs

    x = np.asarray(run(jax.random.PRNGKey(0)), np.float64)[OU_BURN:]  # (T, envs), stationary after burn-in
    a = 1.0 - OU_THETA * OU_DT                       # 0.85
    s2 = OU_SIGMA**2 * OU_DT                         # innovation variance
    var_exact = s2 / (1.0 - a**2)                    # stationary variance of x_{t+1} = a x_t + s eps
    n = x.size
    rho = np.sum(x[1:] * x[:-1]) / np.sum(x[:-1] ** 2)
    var = np.mean(x**2)
    # SEs of an AR(1): rho ~ sqrt((1 - a^2) / n); var ~ var * sqrt(2 (1 + a^2) / ((1 - a^2) n)).
    se_rho = math.sqrt((1 - a**2) / n)
    se_var = var_exact * math.sqrt(2 * (1 + a**2) / ((1 - a**2) * n))
    assert abs(rho - a) < 5 * se_rho, (rho, a, se_rho)
    assert abs(var - var_exact) < 5 * se_var, (var, var_exact, se_var)
    assert abs(var / var_exact - 1) < 0.03
    assert abs(np.mean(x)) < 5 * math.sqrt(var_exact * (1 + a) / ((1 - a) * n))
    # Lag-2 autocorrelation is a^2 (an AR(1), not e.g. white noise with a lag-1 term).
    rho2 = np.sum(x[2:] * x[:-2]) / np.sum(x[:-2] ** 2)
    assert abs(rho2 - a**2) < 0.01


@pytest.mark.parametrize("name", PAPER_TEACHERS)
def test_observe_resets_memory_where_done(name):
    teacher = make_teacher(name)
    m = teacher.memory_size
    memory = jnp.asarray(np.arange(1, 4 * m + 1, dtype=np.float32).reshape(4, m))
    done = jnp.asarray([1.0, 0.0, 1.0, 0.0])
    td = jnp.asarray([0.5, -2.0, 3.0, 7.0])

    def td_fn():
        if not teacher.needs_td:
            raise AssertionError("td_fn must only be called by meta_state")
        return td

    got = np.asarray(teacher.observe(make_params(teacher), memory, done, td_fn, jax.random.PRNGKey(0)))
    want = (np.asarray(td)[:, None] if name == "meta_state" else np.asarray(memory)).copy()
    want[[0, 2]] = 0.0
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- (c) residual teacher
def np_residual_logp(net_params, log_std, u, raw, teacher):
    """float64 NumPy log pi_e of the residual teacher: N(mu(s) + g(.), sigma^2), summed over rows."""
    mu = np.asarray(u, np.float64)[:, OBS:OBS + A]
    g_in = np.asarray(u)[:, :OBS] if teacher.name == "meta" else u
    mean = mu + np_mean_net(net_params, g_in)
    return stats.norm.logpdf(np.asarray(raw, np.float64), mean, np.exp(log_std)).sum()


@pytest.mark.parametrize("name", ["meta", "meta_state"])
def test_residual_teacher_starts_at_students_mean_and_its_gradient_matches_hand_and_fd(name):
    teacher = make_teacher(name, residual=True)
    plain = make_teacher(name)
    u, mu = make_inputs(teacher, 6)
    assert u.shape == (6, teacher.input_size)
    np.testing.assert_array_equal(np.asarray(u[:, OBS:OBS + A]), np.asarray(mu))
    raw = jnp.asarray(np.random.default_rng(5).normal(scale=1.5, size=(6, A)), jnp.float32)
    params0 = teacher.init(jax.random.PRNGKey(0), 1).params  # the real init: g's output layer is 0
    log_std0 = np.asarray(teacher.log_std(params0), np.float64)

    @jax.jit
    def run(params, params_plain, u, raw):
        logp = lambda p: jnp.sum(teacher.log_prob(p, u, raw))  # noqa: E731
        d_mu = jax.grad(lambda uu: jnp.sum(teacher.mean(params, uu)))(u)  # through the inputs
        return teacher.mean(params, u), plain.mean(params_plain, make_inputs(plain, 6)[0]), jax.grad(logp)(params), d_mu

    mean0, plain_mean0, grad0, d_mu = run(params0, plain.init(jax.random.PRNGKey(0), 1).params, u, raw)
    # (1) at init the residual teacher's mean is mu(s) exactly; the paper's f starts near 0 instead
    np.testing.assert_allclose(np.asarray(mean0), np.asarray(mu), rtol=0, atol=1e-7)
    assert np.max(np.abs(np.asarray(plain_mean0))) < 0.05 < np.max(np.abs(np.asarray(mu)))
    # (2) hand value at init: tanh'(0) = 1, so d logp / d b_out = sum_rows (a - mu) / sigma^2,
    #     d logp / d W_out = h^T (a - mu) / sigma^2 with h the last hidden activation
    resid = (np.asarray(raw, np.float64) - np.asarray(mu, np.float64)) / np.exp(2 * log_std0)
    p = params0["net"]["params"]
    h = np.asarray(u, np.float64)[:, :OBS] if name == "meta" else np.asarray(u, np.float64)
    for i in range(len(HIDDEN)):
        d = p[f"hidden_{i}"]["Dense_0"]
        h = np.maximum(h @ np.asarray(d["kernel"], np.float64) + np.asarray(d["bias"], np.float64), 0.0)
    g_out = grad0["net"]["params"]["output"]
    np.testing.assert_allclose(np.asarray(g_out["bias"]), resid.sum(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(g_out["kernel"]), h.T @ resid, rtol=1e-4, atol=1e-4)
    assert np.abs(resid.sum(0)).min() > 0.1  # the hand value is not trivially 0
    # mu is held fixed: no gradient flows into the student's action through the teacher's mean
    np.testing.assert_array_equal(np.asarray(d_mu)[:, OBS:OBS + A], 0.0)
    # (3) away from init (O(1) weights): the gradient along a random direction equals a float64
    #     central finite difference of the NumPy density
    params = make_params(teacher)
    _, _, grad, _ = run(params, plain.init(jax.random.PRNGKey(0), 1).params, u, raw)
    rng = np.random.default_rng(7)
    direction = jax.tree.map(lambda x: rng.normal(size=x.shape), params["net"])
    net64 = jax.tree.map(lambda x: np.asarray(x, np.float64), params["net"])
    log_std = np.asarray(teacher.log_std(params), np.float64)
    eps = 1e-5
    f = lambda s: np_residual_logp(jax.tree.map(lambda x, d: x + s * d, net64, direction),  # noqa: E731
                                   log_std, u, raw, teacher)
    fd = (f(eps) - f(-eps)) / (2 * eps)
    got = sum(float(np.sum(np.asarray(g, np.float64) * d)) for g, d in
              zip(jax.tree.leaves(grad["net"]), jax.tree.leaves(direction)))
    assert abs(fd) > 1.0
    np.testing.assert_allclose(got, fd, rtol=1e-3)
    # and log_prob itself is that density
    np.testing.assert_allclose(float(jnp.sum(teacher.log_prob(params, u, raw))),
                               np_residual_logp(net64, log_std, u, raw, teacher), rtol=1e-5)
