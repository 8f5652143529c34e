"""``mjxmeta train`` through ``mjxmeta.cli.main`` (in process, no subprocess).

* one tiny pendulum run end to end: config.json, metrics.jsonl, the table;
* bad input: exit code 2 and a message naming the field, before anything
  compiles (``jax.jit`` and the training loop are replaced by functions that
  fail the test if called);
* an unwritable run directory: a clean exit-2 error naming ``run_dir``.
"""

from __future__ import annotations

import json
import math
import time

import jax
import pytest

import dataclasses

import mjxmeta.cli
import mjxmeta.runs.programs
from mjxmeta.cli import FLAGS, build_parser, config_from_args, main
from mjxmeta.algo.config import (BRAX_STUDENTS, BRAX_TEACHER, PATHWISE_ONLY_FIELDS, STUDENT_NAMES, TD3_ONLY_FIELDS,
                            Config, ConfigError, MetaConfig, StudentConfig, TeacherConfig, from_dict, student_preset,
                            to_dict)

# A tiny meta run: K=2, T=50, H=50, E=1 -> 2*50 + 50*3 = 250 env steps per
# iteration; 2000 steps -> 8 iterations -> 4 chunks of 2 = 4 log points (500, 1000, 1500, 2000 env steps).
TINY = ["train", "--env", "pendulum", "--teacher", "meta", "--seeds", "2", "--hidden", "16,16",
        "--teacher-hidden", "16,16", "--batch-size", "32", "--buffer-size", "20000", "--rollout-steps", "50",
        "--return-horizon", "50", "--total-steps", "2000", "--log-every", "2", "--eval-envs", "2", "--no-progress"]
# --eval-every 1000 evaluates at 1000 and 2000 env steps (iterations 4 and 8) only.
EVAL_EVERY = ["--eval-every", "1000"]
EVALUATED = (4, 8)
STEPS_PER_ITERATION = 2 * 50 + 1 * 50 * 3
ITERATIONS = 8
ROW_KEYS = {"env_steps", "seed", "eval_return", "meta_reward", "teacher_log_std", "critic_loss", "actor_loss",
            "wall_s", "teacher_grad_norm", "teacher_grad_log_std", "advantage_rms", "meta_reward_sd",
            "grad_cosine_ema", "log_std_path", "log_std_shift", "net_path", "net_shift", "d0_reward", "d0_max_reward"}


def test_tiny_train_run_writes_config_metrics_and_table(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "tiny"  # parents do not exist yet
    argv = TINY + EVAL_EVERY + ["--run-dir", str(run_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out

    # config.json round-trips through from_dict to exactly the config the flags describe.
    saved = json.loads((run_dir / "config.json").read_text())
    config = from_dict(saved)
    assert isinstance(config, Config)
    assert config == config_from_args(build_parser().parse_args(argv))
    assert json.loads(json.dumps(to_dict(config))) == saved
    assert (config.env, config.teacher.name, config.seeds) == ("pendulum", "meta", 2)
    assert config.student.hidden == (16, 16) and config.teacher.hidden == (16, 16)
    assert config.steps_per_iteration == STEPS_PER_ITERATION and config.num_iterations == ITERATIONS

    # metrics.jsonl: exactly one row per (log point, seed).
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    log_points = list(range(config.log_every, ITERATIONS + 1, config.log_every))
    assert len(rows) == len(log_points) * config.seeds
    assert sorted((r["iteration"], r["seed"]) for r in rows) == [(i, s) for i in log_points for s in range(2)]
    for r in rows:
        keys = ROW_KEYS if r["iteration"] in EVALUATED else ROW_KEYS - {"eval_return"}
        assert keys <= set(r), keys - set(r)
        assert r["env_steps"] == r["iteration"] * STEPS_PER_ITERATION
        for k in keys - {"seed", "env_steps"}:
            assert isinstance(r[k], float) and math.isfinite(r[k]), (k, r[k])
        if r["iteration"] in EVALUATED:
            assert -1700.0 < r["eval_return"] <= 0.0  # pendulum: 200 steps of reward in [-16.3, 0]
        else:
            assert "eval_return" not in r  # no evaluation at this log point: no value at all, not a stale one
        # Meta-gradient diagnostics: a meta teacher moves; the path is at least the net shift.
        assert r["teacher_grad_norm"] > 0 and r["log_std_path"] > 0 and r["net_path"] >= r["net_shift"] > 0
        # float32: a path of ~1e-3 summed from differences of log sigma ~ -1.6 carries ~1e-7 rounding
        assert r["log_std_path"] >= r["log_std_shift"] - 1e-6 and -1.0 <= r["grad_cosine_ema"] <= 1.0
        # pendulum rewards are in [-16.3, 0]: the mean of per-iteration maxima lies between the mean and 0
        assert r["d0_reward"] < r["d0_max_reward"] <= 0.0
    for s in range(config.seeds):
        # Cumulative diagnostics are logged as end-of-chunk values, so they never decrease.
        paths = [r["log_std_path"] for r in sorted(rows, key=lambda r: r["iteration"]) if r["seed"] == s]
        assert paths == sorted(paths)
        walls = [r["wall_s"] for r in rows if r["seed"] == s]
        assert walls == sorted(walls) and walls[0] >= 0.0

    # The printed table: one line per seed with its final eval return, then mean ± sd.
    assert "mean ± sd" in out
    final = {r["seed"]: r["eval_return"] for r in rows if r["iteration"] == ITERATIONS}
    for s, x in final.items():
        assert f"| {s} | {x:.2f} |" in out
    mean = sum(final.values()) / len(final)
    assert f"| mean ± sd | {mean:.2f} ± " in out


# ------------------------------------------------------------------ bad input
def _forbid_compiles(monkeypatch):
    """Any jit, Trainer construction or training loop fails the test."""
    def boom(*args, **kwargs):
        raise AssertionError("compiled / started training before rejecting the input")
    monkeypatch.setattr(jax, "jit", boom)
    monkeypatch.setattr(mjxmeta.algo.trainer, "Trainer", boom)
    monkeypatch.setattr(mjxmeta.cli, "train", boom)


def _exit_code_and_stderr(argv, capsys):
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as info:
        main(argv)
    elapsed = time.perf_counter() - t0
    return info.value.code, capsys.readouterr().err, elapsed


def test_tiny_flags_are_valid():
    """The base of the bad-input cases is itself valid (so each case fails on its own flag)."""
    config = config_from_args(build_parser().parse_args(TINY))
    assert config.num_iterations == ITERATIONS


# (extra flags, text the message must contain)
BAD_INPUT = [
    (["--candidates", "0"], "'meta.candidates'"),
    (["--batch-size", "0"], "'student.batch_size'"),
    (["--actor-lr", "nan"], "'student.actor_lr'"),
    (["--critic-lr", "inf"], "'student.critic_lr'"),
    (["--env", "nope"], "'env' = 'nope' is invalid: accepted one of ('pendulum'"),
    (["--teacher", "boltzmann"], "'teacher.name' = 'boltzmann'"),
    (["--student", "td4"], "'student.name' = 'td4'"),
    (["--baseline", "mean"], "'teacher.baseline'"),
    (["--teacher-ou-sigma", "0"], "'teacher.ou_sigma'"),
    (["--teacher-min-log-std", "2"], "'teacher.min_log_std'"),
    (["--visit-samples", "-1"], "'visit_samples'"),
    (["--seeds", "-1"], "'seeds'"),
    (["--seeds", "1.5"], "argument --seeds: invalid int value"),
    (["--hidden", "16,x"], "argument --hidden"),
    (["--hidden", "0,16"], "'student.hidden'"),
    (["--teacher-std", "0"], "'teacher.init_std'"),
    (["--gamma", "1.0"], "'student.gamma'"),
    (["--log-every", "0"], "'log_every'"),
    (["--eval-envs", "0"], "'eval_envs'"),
    (["--eval-every", "-1"], "'eval_every' = -1 is invalid: accepted an integer in [0, "),
    (["--eval-every", "1e4"], "argument --eval-every: invalid int value"),
    (["--total-steps", "0"], "'total_steps'"),
    (["--baseline", "leave_one_out", "--candidates", "1"], "'teacher.baseline'"),
    # buffer smaller than one iteration's inserts (2*50 D0 + 2*50 D1 = 200)
    (["--buffer-size", "100"], "'student.buffer_size'"),
    # less than one chunk (log_every 2 x 250 env steps): a run always executes whole chunks
    (["--total-steps", "1"], "'total_steps' = 1 is invalid: accepted an integer >= one chunk"),
    # > 0 in Python, but 0 or denormal in float32
    (["--actor-lr", "1e-320"], "'student.actor_lr'"),
    (["--tau", "1e-39"], "smallest normal float32"),
    (["--run-dir", ""], "'run_dir' = '' is invalid: accepted a non-empty path"),
    # meta-only settings given explicitly for a noise teacher (even with their default values)
    (["--teacher", "gaussian", "--candidates", "3"], "'meta.candidates' = 3 is invalid: accepted no value for the noise"),
    (["--teacher", "ou", "--baseline", "auto"], "drop meta.return_horizon, teacher.baseline or pick"),
    (["--teacher", "gaussian", "--return-horizon", "50"], "'meta.return_horizon'"),
    # a residual mean needs a teacher network f
    (["--teacher", "meta_variance", "--teacher-residual"], "'teacher.residual' = True is invalid: accepted no value"),
    (["--teacher", "gaussian", "--no-teacher-residual"], "'teacher.residual' = False is invalid"),
    (["--teacher-latent-size", "0"], "'teacher.latent_size' = 0 is invalid: accepted an integer in [1, 1024]"),
    (["--teacher", "pink", "--candidates", "3"], "'meta.candidates' = 3 is invalid: accepted no value for the noise"),
]


@pytest.mark.parametrize("extra,expected", BAD_INPUT, ids=[" ".join(e) for e, _ in BAD_INPUT])
def test_bad_input_exits_2_naming_the_field_before_compiling(extra, expected, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    _forbid_compiles(monkeypatch)
    code, err, elapsed = _exit_code_and_stderr(TINY + ["--run-dir", str(run_dir)] + extra, capsys)
    assert code == 2
    assert expected in err, err
    assert "Traceback" not in err
    assert elapsed < 2.0, f"rejecting {extra} took {elapsed:.2f} s"
    assert not run_dir.exists()  # nothing written for a rejected config


def test_range_message_states_the_accepted_bounds(monkeypatch, capsys):
    """``--seeds 5000``: the message names the field and the accepted range [1, 4096] (4096 is valid)."""
    _forbid_compiles(monkeypatch)
    code, err, _ = _exit_code_and_stderr(TINY + ["--seeds", "5000"], capsys)
    assert code == 2 and "'seeds' = 5000" in err
    assert "[1, 4096]" in err, err
    assert config_from_args(build_parser().parse_args(TINY + ["--seeds", "4096"])).seeds == 4096


# ------------------------------------------------------------ unwritable run dir
@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_unwritable_run_dir_is_a_clean_error(where, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    run_dir = blocker / "run" if where == "under_a_file" else blocker
    _forbid_compiles(monkeypatch)
    code, err, elapsed = _exit_code_and_stderr(TINY + ["--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert "'run_dir'" in err and str(run_dir) in err and "writable directory" in err, err
    assert "Traceback" not in err
    assert elapsed < 2.0
    assert blocker.read_text() == "not a directory"


# ------------------------------------------------------- flags from the config
def _leaf_fields(cls=Config, prefix=""):
    """Dotted names of every leaf field of ``cls``, walked independently of the CLI."""
    subs = {"student": StudentConfig, "teacher": TeacherConfig, "meta": MetaConfig}
    out = []
    for f in dataclasses.fields(cls):
        if cls is Config and f.name in subs:
            out += _leaf_fields(subs[f.name], f.name + ".")
        else:
            out.append(prefix + f.name)
    return out


def _get(config, dotted):
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _other_value(flag):
    """A valid value different from the field's default."""
    # meta.candidates: an even K (the "other" --paired and --teacher-estimator es need one); env: an MJX env (the
    # other integrator, rk4, is refused for the pure-JAX ones)
    # teacher.estimator: es (pathwise needs a pure-JAX env and refuses meta_state; the all-flags test sets it)
    special = {"checkpoint_every": 110, "teacher.name": "meta_state", "env": "hopper", "meta.candidates": 4,
               "teacher.estimator": "es",
               "teacher.param_noise_alpha": 1.02,  # must stay > 1
               "sweep": (("student.tau", (0.005, 0.02)), ("student.actor_lr", (1e-4, 3e-4)))}
    if flag.field in special:
        return special[flag.field]
    d = flag.default
    if flag.choices:  # the only choice when there is one (student.name: ddpg)
        return next((c for c in reversed(flag.choices) if c != d), d)
    if isinstance(d, bool):
        return not d
    if isinstance(d, int):
        return d + 1
    if isinstance(d, float):
        return d / 2 if d else 0.5
    if isinstance(d, tuple):
        return tuple(w + 1 for w in d)
    raise AssertionError(f"no test value for {flag.field} = {d!r}")


def _argv(flag, value):
    if isinstance(value, bool):
        return [flag.option if value else "--no-" + flag.option[2:]]
    if flag.field == "sweep":  # repeated: --sweep FIELD=V1,V2 per field
        return [x for name, vs in value for x in (flag.option, f"{name}={','.join(map(str, vs))}")]
    if isinstance(value, tuple):
        return [flag.option, ",".join(map(str, value))]
    return [flag.option, str(value)]


def test_every_config_field_has_exactly_one_flag_with_help():
    fields = _leaf_fields()
    assert list(FLAGS) == fields  # every field, nothing else, in declaration order
    options = [f.option for f in FLAGS.values()]
    assert len(set(options)) == len(options)
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for flag in FLAGS.values():
        assert flag.help, f"{flag.field} has no line in its class docstring's Attributes section"
        assert flag.option in help_text
        assert _get(Config(), flag.field) == flag.default


@pytest.mark.parametrize("field", _leaf_fields())
def test_each_flag_round_trips_to_its_field(field):
    """``--flag value`` alone -> Config with that field == value and every other field at its default."""
    flag = FLAGS[field]
    value = _other_value(flag)
    assert value != flag.default or flag.choices == (flag.default,)
    student = []
    # refused for the default student / estimator (they would do nothing); read by td3 / pathwise
    needs = {**{f: {"student.name": "td3"} for f in TD3_ONLY_FIELDS},
             **{f: {"teacher.estimator": "pathwise", "env": "pendulum"} for f in PATHWISE_ONLY_FIELDS}}.get(field, {})
    if needs:
        with pytest.raises(ConfigError) as e:
            config_from_args(build_parser().parse_args(["train", *_argv(flag, value)]))
        assert e.value.field == field
        student = [x for f, v in needs.items() for x in _argv(FLAGS[f], v)]
    config = config_from_args(build_parser().parse_args(["train", *_argv(flag, value), *student]))
    assert _get(config, field) == value and type(_get(config, field)) is type(value)
    for other in FLAGS.values():
        if other.field != field and other.field not in needs:
            brax = other.field == "teacher.name" and config.student.name in BRAX_STUDENTS  # sac/ppo: no teacher
            assert _get(config, other.field) == (BRAX_TEACHER if brax else other.default), other.field


def test_all_flags_at_once_round_trip_and_resume_keeps_unflagged_fields():
    values = {f.field: _other_value(f) for f in FLAGS.values()}
    values["student.name"] = [n for n in STUDENT_NAMES if n not in BRAX_STUDENTS][-1]  # sac/ppo refuse meta flags
    values["teacher.estimator"], values["teacher.name"] = "pathwise", "meta"  # the pathwise fields need both
    values["env"], values["integrator"] = "pendulum", "euler"  # pathwise needs a pure-JAX env: Euler only
    argv = ["train"] + [x for f in FLAGS.values() for x in _argv(f, values[f.field])]
    config = config_from_args(build_parser().parse_args(argv))
    assert {k: _get(config, k) for k in values} == values
    # --resume: the run's config with only the given flags applied.
    resumed = config_from_args(build_parser().parse_args(["train", "--resume", "RUN", "--seeds", "7"]), base=config)
    assert resumed == dataclasses.replace(config, seeds=7)


def test_one_set_of_defaults():
    """``mjxmeta train`` with no flags is ``Config()``: the main job (meta, inverted_pendulum, 4 seeds, 50k steps)."""
    config = config_from_args(build_parser().parse_args(["train"]))
    assert config == Config()
    assert (config.teacher.name, config.env, config.seeds, config.total_steps) == ("meta", "inverted_pendulum", 4,
                                                                                   50_000)
    assert Config().student == student_preset("baselines2017")
    modern = config_from_args(build_parser().parse_args(["train", "--preset", "modern", "--tau", "0.02"]))
    assert modern.student == student_preset("modern", tau=0.02)


def test_noise_teacher_without_meta_flags_and_tiny_but_normal_lr_are_valid():
    i = TINY.index("--return-horizon")
    base = TINY[:i] + TINY[i + 2:]
    config = config_from_args(build_parser().parse_args(base + ["--teacher", "gaussian", "--actor-lr", "1.2e-38"]))
    assert config.teacher.name == "gaussian" and config.student.actor_lr == 1.2e-38


def test_refused_free_space_leaves_no_run_dir(tmp_path, monkeypatch, capsys):
    """A run dir created by this call and refused before training is removed again (it was left empty)."""
    monkeypatch.setattr("mjxmeta.runs.loop.shutil.disk_usage", lambda path: type("Usage", (), {"free": 1024})())
    monkeypatch.setattr(mjxmeta.runs.programs.Programs, "run_chunk", property(lambda self: pytest.fail("trained")))
    run_dir = tmp_path / "new" / "run"
    assert main(TINY + ["--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "'run_dir'" in err and "MiB free" in err and "Traceback" not in err
    assert not run_dir.exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    assert main(TINY + ["--run-dir", str(existing)]) == 2
    assert existing.is_dir() and list(existing.iterdir()) == []  # a directory the user made is kept


def test_eval_of_a_run_without_checkpoints_creates_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(to_dict(config_from_args(build_parser().parse_args(TINY)))))
    assert main(["eval", str(run_dir)]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"]
