"""Hyperparameter sweeps (``Config.sweep``, ``--sweep``): runs = combinations x seeds in one program.

* the flag parses into ``Config.sweep`` and bad fields/values are refused (exit 2) before anything compiles;
* a swept run equals the separate single-value runs: integer leaves (keys, cursors, counters) exactly, float
  leaves within a stated tolerance (XLA folds an unswept value into the program as a constant, while a swept
  one is read from the state, so the last bits of a product may differ and grow a little over iterations),
  and it compiles once;
* metric rows carry the run's seed and values, and ``report`` groups by them.
"""

from __future__ import annotations

import functools
import json

import jax
import numpy as np
import pytest

from conftest import small_config
from mjxmeta.runs.programs import programs_of
from mjxmeta.tools import report as R
from mjxmeta.cli import build_parser, config_from_args, main
from mjxmeta.algo.config import (ConfigError, from_dict, point_config, sweep_points, sweepable_fields, to_dict,
                            validate)
from mjxmeta.runs.loop import format_table, metric_rows, run_coordinates
from mjxmeta.runs.sinks import JsonlSink, parse_row
from mjxmeta.algo.trainer import Trainer

TINY = ["train", "--env", "pendulum", "--rollout-steps", "50", "--return-horizon", "50", "--hidden", "16,16",
        "--teacher-hidden", "16,16", "--batch-size", "32", "--buffer-size", "20000", "--log-every", "2",
        "--total-steps", "1000", "--eval-envs", "2", "--seeds", "2"]

# Float leaves of a swept run vs the separate run after 4 iterations: max |a - b| <= TOL max |b| per leaf.
# Measured on these configs: <= 1e-5 for ou; for meta <= 3e-3 in the networks and Adam states and 1.2e-2 in the
# REINFORCE gradient (a difference of two near-equal returns, so last-bit differences grow there). Pairing a
# run with another combination's separate run gives 0.6-1.0 (checked below: the comparison can fail).
TOL = 2e-2


def _parse(*argv: str):
    return config_from_args(build_parser().parse_args(list(TINY) + list(argv)))


# ------------------------------------------------------------------ config and flag
def test_sweep_flag_parses_repeats_and_round_trips():
    config = _parse("--sweep", "teacher.lr=1e-4,1e-3,1e-2", "--sweep", "student.tau=0.01,0.02")
    assert config.sweep == (("teacher.lr", (1e-4, 1e-3, 1e-2)), ("student.tau", (0.01, 0.02)))
    assert (config.num_points, config.num_runs) == (6, 12)
    points = sweep_points(config)  # first field slowest
    assert points[:3] == [{"teacher.lr": 1e-4, "student.tau": 0.01}, {"teacher.lr": 1e-4, "student.tau": 0.02},
                          {"teacher.lr": 1e-3, "student.tau": 0.01}]
    one = point_config(config, points[3])
    assert (one.teacher.lr, one.student.tau, one.sweep, one.seeds) == (1e-3, 0.02, (), 2)
    assert from_dict(json.loads(json.dumps(to_dict(config)))) == config  # config.json keeps the sweep
    assert _parse().sweep == () and _parse().num_runs == 2


@pytest.mark.parametrize("argv, field, accepted", [
    (["--sweep", "teacher.hidden=16,32"], "sweep", "'student.actor_lr', 'student.critic_lr', 'student.tau'"),
    (["--teacher", "gaussian", "--sweep", "teacher.lr=1e-3,1e-2"], "sweep", "teacher 'gaussian' reads"),
    (["--teacher", "ou", "--sweep", "teacher.init_std=0.1,0.2"], "sweep", "'teacher.ou_sigma')"),
    (["--sweep", "student.tau=0.01,1.5"], "student.tau", "(0.0, 1.0]"),
    (["--sweep", "teacher.init_std=0.1,5.0"], "teacher.init_std", "strictly inside"),  # cross-field check
    (["--sweep", "student.actor_lr=0,1e-3"], "student.actor_lr", "(0.0, 1000.0]"),
    (["--sweep", "teacher.lr=1e-3,1e-3"], "sweep teacher.lr", "distinct values"),
    (["--sweep", "teacher.lr=1e-3", "--sweep", "teacher.lr=1e-2"], "sweep", "each field once"),
    (["--seeds", "3000", "--sweep", "teacher.lr=1e-3,1e-2"], "sweep", "at most 4096 runs"),
])
def test_bad_sweeps_are_refused_naming_the_field(argv, field, accepted):
    with pytest.raises(ConfigError) as e:
        _parse(*argv)
    assert e.value.field == field and accepted in str(e.value)


@pytest.mark.parametrize("item", ["teacher.lr", "teacher.lr=", "teacher.lr=1e-3,x", "=1,2"])
def test_malformed_sweep_items_exit_2_before_any_compile(item, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(TINY + ["--run-dir", str(run_dir), "--sweep", item])
    assert e.value.code == 2 and "argument --sweep: expected FIELD=V1,V2,..." in capsys.readouterr().err
    assert not run_dir.exists()


def test_bad_sweep_value_exits_2_naming_the_field_before_any_compile(tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(TINY + ["--run-dir", str(run_dir), "--sweep", "student.critic_lr=1e-3,-1"])
    assert e.value.code == 2 and "'student.critic_lr' = -1.0 is invalid" in capsys.readouterr().err
    assert not run_dir.exists()


def test_sweepable_fields_follow_the_teacher():
    assert sweepable_fields(small_config("meta")) == ("student.actor_lr", "student.critic_lr", "student.tau",
                                                      "teacher.init_std", "teacher.lr")
    assert "teacher.lr" not in sweepable_fields(small_config("gaussian"))
    assert sweepable_fields(small_config("ou"))[-1] == "teacher.ou_sigma"
    with pytest.raises(ConfigError, match="a tuple of"):
        validate(small_config("meta", sweep=(("teacher.lr", 1e-3),)))


# ------------------------------------------------------------------ one program, equal to separate runs
@functools.lru_cache(maxsize=None)
def _final(config):
    """(trainer, host state after 2 chunks, metrics of the 2nd chunk, eval returns) of ``config``."""
    trainer = Trainer(config)
    state = programs_of(trainer).init_seeds(trainer.seed_keys())
    for _ in range(2):
        state, metrics = programs_of(trainer).run_chunk(state)
    returns = programs_of(trainer).evaluate_seeds(state, trainer.eval_keys(4))
    return trainer, jax.device_get((state, metrics, returns))


def _assert_run_equals(swept, r: int, separate, s: int, what: str):
    """Run r of the swept (state, metrics, returns) equals run s of the separate one."""
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(swept), jax.tree.leaves(separate)):
        a, b = np.asarray(a)[r], np.asarray(b)[s]
        name = f"{what}{jax.tree_util.keystr(path)}"
        if np.issubdtype(a.dtype, np.floating):
            err, scale = (float(np.max(np.abs(x), initial=0.0)) for x in (a - b, b))
            assert err <= TOL * max(scale, 1e-6), f"{name}: max |a - b| = {err:.3g}, max |b| = {scale:.3g}"
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def _without_hyper(out):
    state, metrics, returns = out
    return state.replace(hyper=None), metrics, returns


# Every sweepable field a meta teacher reads, two values each: 2^5 = 32 runs of one seed in one program.
META_SWEEP = (("teacher.lr", (1e-3, 3e-2)), ("teacher.init_std", (0.2, 0.5)), ("student.actor_lr", (1e-4, 1e-3)),
              ("student.critic_lr", (1e-3, 3e-3)), ("student.tau", (0.01, 0.05)))


@pytest.mark.parametrize("teacher, sweep, seeds, checked", [
    ("meta", META_SWEEP, 1, (0, 21, 31)),  # all first values, a mix (binary 10101), all second values
    ("ou", (("teacher.ou_sigma", (0.2, 0.6)),), 2, (1,)),
])
def test_swept_run_equals_separate_runs_and_compiles_once(teacher, sweep, seeds, checked):
    config = small_config(teacher, seeds=seeds, sweep=sweep, visit_samples=20)
    trainer, swept = _final(config)
    assert programs_of(trainer).run_chunk._cache_size() == 1 and programs_of(trainer).init_seeds._cache_size() == 1  # one compile each
    assert swept[2].shape[0] == config.num_runs == 2 ** len(sweep) * seeds
    points = sweep_points(config)
    for v in checked:
        single = point_config(config, points[v])
        _, separate = _final(single)
        for s in range(seeds):
            r = v * seeds + s
            _assert_run_equals(_without_hyper(swept), r, _without_hyper(separate), s, f"{points[v]} seed {s}: ")
            hyper = jax.tree.map(lambda x: x[r], swept[0].hyper)  # the state carries the run's values exactly
            assert jax.tree.all(jax.tree.map(np.array_equal, hyper, Trainer(single).hyper()))
    # negative control: run 0 (the first combination) is not the separate run of the last one
    with pytest.raises(AssertionError):
        _assert_run_equals(_without_hyper(swept), 0, _without_hyper(separate), 0, "wrong pairing: ")


# ------------------------------------------------------------------ rows and report
def _write_swept_run(path, config, finals):
    """A run dir as ``train`` writes it: config.json and rows from ``metric_rows`` of every run."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(to_dict(config)))
    sink = JsonlSink(path / "metrics.jsonl", config.num_runs, config.log_every)
    R_ = config.num_runs
    for it in (2, 4):
        metrics = {"meta_reward": np.zeros((R_, 2)), "teacher_log_std": np.zeros((R_, 2))}
        returns = np.repeat(np.asarray(finals, float)[:, None] * it / 4, 2, axis=1)
        sink(it, metric_rows(it, metrics, returns, np.full(R_, it * 100), 1.0, run_coordinates(config)))
    sink.close()
    return path


def test_rows_carry_seed_and_values_and_report_groups_by_them(tmp_path):
    config = small_config("gaussian", seeds=2, sweep=(("student.tau", (0.01, 0.02)), ("teacher.init_std", (0.1, 0.3))))
    finals = [10.0, 12.0, 20.0, 22.0, 30.0, 32.0, 40.0, 42.0]  # combination v, seed s: 10 (v + 1) + 2 s
    swept = _write_swept_run(tmp_path / "swept", config, finals)
    rows = [parse_row(line) for line in (swept / "metrics.jsonl").read_bytes().splitlines()]
    assert rows[5]["run"] == 5 and rows[5]["seed"] == 1
    assert rows[5]["hparams"] == {"student.tau": 0.02, "teacher.init_std": 0.1}
    # a separate run of one combination (tau 0.02, std 0.3) with two more seeds pools with that combination
    single = point_config(config, {"student.tau": 0.02, "teacher.init_std": 0.3})
    other = _write_swept_run(tmp_path / "single", single, [100.0, 102.0])

    runs = R.load_runs([swept, other])
    assert [r.hparams for r in runs[:4]] == sweep_points(config) and runs[4].hparams == {}
    assert runs[1].config["student"]["tau"] == 0.01 and runs[1].config["teacher"]["init_std"] == 0.3
    groups = R.group_runs(runs)["pendulum"]
    assert len(groups) == 4
    by_label = {g.label: R.final_scores(g) for g in groups}
    assert by_label == {
        "gaussian (student.tau=0.01, teacher.init_std=0.1)": pytest.approx([10.0, 12.0]),
        "gaussian (student.tau=0.01, teacher.init_std=0.3)": pytest.approx([20.0, 22.0]),
        "gaussian (student.tau=0.02, teacher.init_std=0.1)": pytest.approx([30.0, 32.0]),
        "gaussian (student.tau=0.02, teacher.init_std=0.3)": pytest.approx([40.0, 42.0, 100.0, 102.0]),
    }
    md = R.write_report([swept, other], tmp_path / "out", reps=50).read_text()
    assert "| gaussian (student.tau=0.02, teacher.init_std=0.3) | 4 |" in md
    table = format_table(config, finals)  # the train/eval table: one block per combination
    assert "student.tau=0.02, teacher.init_std=0.1\n| seed | eval_return |" in table
    assert "| mean ± sd | 31.00 ± 1.41 |" in table


# ------------------------------------------------------------------ checkpoints carry the values
def test_checkpoint_restores_the_swept_values_and_fills_them_into_older_checkpoints(tmp_path):
    from mjxmeta.runs.checkpoint import Checkpointer

    config = small_config("gaussian", seeds=2, sweep=(("student.tau", (0.01, 0.02)),))
    trainer = Trainer(config)
    state = jax.device_get(programs_of(trainer).init_seeds(trainer.seed_keys()))
    assert np.array_equal(state.hyper.student.tau, np.float32([0.01, 0.01, 0.02, 0.02]))
    for name, saved in (("now", state), ("older", state.replace(hyper=None))):  # older: written before `hyper`
        ckpt = Checkpointer(tmp_path / name)
        ckpt.save(2, saved, {"iteration": 2})
        ckpt.wait()
        ckpt.close()
        restored, _ = Checkpointer(tmp_path / name, read_only=True).restore(programs_of(trainer).abstract_state(), 2)
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
            np.testing.assert_array_equal(np.asarray(a), b)
    # a checkpoint that lacks a leaf the trainer cannot derive from the config is still refused
    from mjxmeta.runs.checkpoint import CheckpointCorrupt
    ckpt = Checkpointer(tmp_path / "broken")
    ckpt.save(2, state.replace(key=None), {"iteration": 2})
    ckpt.wait()
    ckpt.close()
    with pytest.raises(CheckpointCorrupt):
        Checkpointer(tmp_path / "broken", read_only=True).restore(programs_of(trainer).abstract_state(), 2)


def test_train_writes_swept_rows_and_resumes_them(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--env", "pendulum", "--teacher", "gaussian", "--rollout-steps", "50", "--hidden", "16,16",
            "--batch-size", "32", "--buffer-size", "20000", "--log-every", "2", "--eval-envs", "2", "--seeds", "2",
            "--total-steps", "200", "--run-dir", str(run_dir), "--no-progress"]
    assert main(argv + ["--sweep", "student.tau=0.01,0.02"]) == 0
    out = capsys.readouterr().out
    assert "student.tau=0.02\n| seed | eval_return |" in out
    assert main(["train", "--resume", str(run_dir), "--total-steps", "400", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["iteration"], r["run"], r["seed"], r["hparams"]["student.tau"]) for r in rows] == [
        (it, v * 2 + s, s, tau) for it in (2, 4, 6, 8) for v, tau in enumerate((0.01, 0.02)) for s in range(2)]
    groups = R.group_runs(R.load_runs([run_dir]))["pendulum"]
    assert [(g.label, g.num_seeds, int(g.steps[-1])) for g in groups] == [
        ("gaussian (student.tau=0.01)", 2, 400), ("gaussian (student.tau=0.02)", 2, 400)]
