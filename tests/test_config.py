"""Config validation: every bad value is a ConfigError naming its field, in pure Python.

Includes a hypothesis property test that throws malformed values at random
fields: ``validate`` must either accept the config or raise a ConfigError whose
``.field`` is the mutated field (or a field of a cross-field constraint it takes
part in) -- never another exception, and without touching JAX.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mjxmeta.algo.config import (Config, ConfigError, MetaConfig, StudentConfig, TeacherConfig, evaluates_at,
                            executed_iterations, from_dict, replace_field, to_dict, validate)

SUBS = {"student": StudentConfig, "teacher": TeacherConfig, "meta": MetaConfig}


def base() -> Config:
    """A small valid config with slack in every cross-field constraint."""
    return Config(env="pendulum", rollout_steps=100, student=StudentConfig(hidden=(8, 8)),
                  teacher=TeacherConfig(name="meta", hidden=(8, 8)), meta=MetaConfig(candidates=2))


mutate = replace_field  # Config with one (dotted) field replaced, not validated


def assert_rejects(config: Config, field: str):
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert info.value.field == field, (info.value.field, str(info.value))
    assert f"'{field}'" in str(info.value)
    return info.value


def test_base_and_default_configs_are_valid():
    assert validate(base()) is not None
    assert validate(Config()) == Config()


# --------------------------------------------------------------------------- explicit cases
BAD = [
    # unknown names
    ("env", "cartpole"), ("env", 3), ("teacher.name", "boltzmann"), ("student.name", "dqn"),
    ("teacher.baseline", "mean"),
    # counts
    ("seeds", 0), ("meta.candidates", 0), ("seeds", 5000), ("meta.candidates", -1),
    # negative sizes
    ("num_envs", -1), ("rollout_steps", -5), ("episode_length", -1), ("eval_envs", -2), ("reset_pool", -1),
    ("eval_every", -1), ("eval_every", 2.5), ("eval_every", 2_000_000_001),
    ("student.batch_size", -64), ("student.buffer_size", -1), ("meta.return_envs", -1),
    ("meta.return_horizon", -200), ("meta.lookahead_updates", -1), ("student.updates_per_iteration", -1),
    ("student.hidden", (64, -1)), ("teacher.hidden", (-3,)), ("student.hidden", ()), ("total_steps", 0),
    # non-finite / out-of-range floats
    ("student.actor_lr", float("nan")), ("student.actor_lr", float("inf")), ("student.critic_lr", float("nan")),
    ("student.critic_lr", -float("inf")), ("teacher.lr", float("nan")), ("teacher.lr", float("inf")),
    ("student.critic_l2", float("inf")), ("student.gamma", float("nan")), ("student.gamma", 1.0),
    ("student.tau", 0.0), ("student.actor_lr", 0.0), ("teacher.init_std", 0.0), ("teacher.ema_decay", 1.0),
    ("teacher.ou_dt", float("nan")), ("student.policy_noise", -0.1), ("student.noise_clip", float("inf")),
    ("student.policy_delay", 0), ("student.policy_delay", 2.0),
    # wrong types
    ("student.batch_size", "64"), ("seeds", True), ("num_envs", 1.0), ("student.actor_lr", "1e-4"),
    ("student.layer_norm", 1), ("student.normalize_observations", "yes"), ("student.hidden", [64, 64]),
    ("teacher.hidden", (8.0,)), ("teacher.hidden", (True,)), ("meta.candidates", 2.0), ("teacher.lr", None),
    ("student.gamma", True), ("seed", -1), ("teacher.residual", 1),
    # the pink and meta_latent teachers' fields
    ("teacher.noise_exponent", -1.0), ("teacher.noise_exponent", float("nan")), ("teacher.latent_size", 0),
    ("teacher.latent_size", 2.0), ("teacher.param_noise_alpha", 1.0), ("teacher.param_noise_delta", 0.0),
    # whole sub-configs of the wrong type
    ("student", None), ("teacher", {"name": "meta"}), ("meta", StudentConfig()),
]


@pytest.mark.parametrize("field,value", BAD, ids=[f"{f}={v!r}" for f, v in BAD])
def test_bad_value_names_the_field(field, value):
    assert_rejects(mutate(base(), field, value), field)


def test_batch_size_above_buffer_size():
    c = mutate(mutate(base(), "student.buffer_size", 1000), "student.batch_size", 2000)
    assert_rejects(c, "student.batch_size")


def test_buffer_smaller_than_one_iteration():
    # inserted per iteration = K*N*T + E*H*K = 2*1*100 + 1*200*2 = 600
    assert base().inserted_per_iteration == 600
    assert_rejects(mutate(base(), "student.buffer_size", 599), "student.buffer_size")
    validate(mutate(base(), "student.buffer_size", 600))


def test_leave_one_out_needs_two_candidates_for_meta_teachers():
    c = mutate(mutate(base(), "meta.candidates", 1), "teacher.baseline", "leave_one_out")
    for name in ("meta_variance", "meta", "meta_state"):
        assert_rejects(mutate(c, "teacher.name", name), "teacher.baseline")
    for baseline in ("auto", "ema", "none"):
        validate(mutate(c, "teacher.baseline", baseline))
    # Noise teachers have no meta-gradient: the baseline is irrelevant.
    validate(mutate(c, "teacher.name", "gaussian"))
    validate(mutate(mutate(c, "meta.candidates", 2), "teacher.baseline", "leave_one_out"))


def test_log_std_range_constraints():
    assert_rejects(mutate(base(), "teacher.min_log_std", 1.0), "teacher.min_log_std")   # == max
    assert_rejects(mutate(base(), "teacher.init_std", 5.0), "teacher.init_std")         # log 5 > 1
    assert_rejects(mutate(base(), "teacher.min_log_std", -1.0), "teacher.init_std")     # log 0.2 < -1


@pytest.mark.parametrize("field", ["student.actor_lr", "teacher.init_std", "teacher.min_log_std"])
def test_huge_int_in_float_field_is_a_config_error(field):
    """An int too large for a float must be rejected like any other out-of-range
    value (``math.isfinite(10**400)`` raises OverflowError)."""
    for value in (10**400, -(10**400)):
        assert_rejects(mutate(base(), field, value), field)


# --------------------------------------------------------------------------- round trip
def test_dict_round_trip():
    for c in (Config(), base(), mutate(mutate(base(), "student.hidden", (3, 5, 7)), "teacher.name", "ou")):
        d = to_dict(c)
        assert from_dict(d) == c
        assert from_dict(json.loads(json.dumps(d))) == c  # tuples survive JSON as lists


def test_from_dict_rejects_unknown_fields():
    d = to_dict(base())
    with pytest.raises(ConfigError) as info:
        from_dict({**d, "learning_rate": 1.0})
    assert info.value.field == "learning_rate"
    d["student"] = {**d["student"], "lr": 1.0}
    with pytest.raises(ConfigError) as info:
        from_dict(d)
    assert info.value.field == "student.lr"
    with pytest.raises(ConfigError) as info:
        from_dict({**to_dict(base()), "seeds": 0})
    assert info.value.field == "seeds"


# --------------------------------------------------------------------------- property test
def _fields() -> list[str]:
    out = [f.name for f in dataclasses.fields(Config)]
    for sub, cls in SUBS.items():
        out += [f"{sub}.{f.name}" for f in dataclasses.fields(cls)]
    return out


FIELDS = _fields()
_SIZES = {"student.batch_size", "student.buffer_size", "total_steps"}  # total_steps: whole chunks
# Fields whose change may make a *cross-field* constraint blame another field.
CROSS = {
    "teacher.min_log_std": {"teacher.init_std"},
    "teacher.max_log_std": {"teacher.min_log_std", "teacher.init_std"},
    "teacher.name": {"teacher.baseline"} | _SIZES,
    "meta.candidates": {"teacher.baseline"} | _SIZES,
    "student.buffer_size": {"student.batch_size"},
    "student.batch_size": {"student.buffer_size"},
    "num_envs": _SIZES, "rollout_steps": _SIZES, "meta.return_envs": _SIZES, "meta.return_horizon": _SIZES,
    "log_every": {"checkpoint_every"} | _SIZES,  # one chunk = log_every iterations: a large one exceeds total_steps
}

malformed = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-10, max_value=10), st.integers(),
    st.sampled_from([0, -1, 2**31, 10**12]), st.sampled_from([10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -0.0, 1e-300]),
    st.text(max_size=6),
    st.sampled_from(["pendulum", "meta", "ou", "ddpg", "ema", "leave_one_out", "none", "64", "1e-3"]),
    st.tuples(st.integers(min_value=-3, max_value=70000)), st.lists(st.integers(-2, 9), max_size=3),
    st.just(()), st.just((8.0, 8)), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(StudentConfig()), st.just(MetaConfig()),
)


def _forbid(*_a, **_k):
    raise AssertionError("validate must not call into JAX")


@settings(deadline=None, max_examples=200, database=None)
@given(field=st.sampled_from(FIELDS), value=malformed, field2=st.sampled_from(FIELDS), value2=malformed,
       two=st.booleans())
def test_validate_property(field, value, field2, value2, two):
    mutated = {field: value}
    config = mutate(base(), field, value)
    if two and field2 != field and "." in field2 and field2.split(".")[0] not in mutated:
        mutated[field2] = value2
        config = mutate(config, field2, value2)
    allowed = set(mutated)
    for f in mutated:
        allowed |= CROSS.get(f, set())
    import jax  # guard: validate must not jit / compile anything
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jax, "jit", _forbid)
        mp.setattr(jax, "device_put", _forbid)
        mp.setattr(jax.lax, "scan", _forbid)
        t0 = time.perf_counter()
        try:
            out = validate(config)
        except ConfigError as e:
            assert e.field in allowed, (e.field, mutated, str(e))
            assert f"'{e.field}'" in str(e)
        else:
            assert out is config
        assert time.perf_counter() - t0 < 1.0


def test_validate_does_not_import_jax():
    """In a fresh interpreter, importing mjxmeta.algo.config and validating (good and bad
    configs) leaves jax unimported."""
    code = (
        "import sys, time\n"
        "from mjxmeta.algo.config import Config, ConfigError, validate\n"
        "t = time.perf_counter()\n"
        "validate(Config())\n"
        "try:\n"
        "    validate(Config(seeds=0))\n"
        "except ConfigError:\n"
        "    pass\n"
        "assert time.perf_counter() - t < 0.5\n"
        "assert 'jax' not in sys.modules, 'jax imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_eval_schedule_evaluates_where_a_multiple_of_eval_every_is_passed_and_at_the_end():
    """``evaluates_at``: log points every 2 iterations x 250 env steps = 500 steps; 4 log points per 2000 steps."""
    base = Config(env="pendulum", rollout_steps=50, log_every=2, total_steps=3000,
                  meta=MetaConfig(return_horizon=50))  # K=2: 2*50 + 50*3 = 250 env steps per iteration
    assert base.steps_per_iteration == 250 and executed_iterations(base) == 12

    def evaluated(**kw):
        c = dataclasses.replace(base, **kw)
        return [i for i in range(c.log_every, executed_iterations(c) + 1, c.log_every) if evaluates_at(c, i)]

    assert evaluated(eval_every=0) == [12]                    # only the end
    assert evaluated(eval_every=500) == [2, 4, 6, 8, 10, 12]  # every log point
    assert evaluated(eval_every=1) == [2, 4, 6, 8, 10, 12]
    assert evaluated(eval_every=1000) == [4, 8, 12]           # 1000, 2000, 3000 env steps
    assert evaluated(eval_every=700) == [4, 6, 10, 12]        # passes 700 by 1000, 1400 by 1500, 2100 by 2500
    assert evaluated(eval_every=2500) == [10, 12]
    assert evaluated(eval_every=10**6) == [12]
    # The budget rounds up to whole chunks: 2900 steps still runs 12 iterations, the last one evaluates.
    assert evaluated(eval_every=0, total_steps=2900) == [12]


def test_main_job_defaults_evaluate_ten_episodes_three_times():
    """The README's main job: 7 chunks of 8000 env steps; evaluations at 24k, 40k and the end (56k)."""
    c = Config()
    assert c.eval_envs >= 10  # final returns are the mean of >= 10 episodes
    points = range(c.log_every, executed_iterations(c) + 1, c.log_every)
    assert [i * c.steps_per_iteration for i in points if evaluates_at(c, i)] == [24_000, 40_000, 56_000]
