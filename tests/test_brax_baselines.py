"""``mjxmeta train --student sac|ppo``: Brax's own trainers behind the project's config, run dir, metrics and report.

All runs use the JAX ``pendulum`` (compiles in seconds). The SAC learning test is the budget measured in
the README ("SAC and PPO from Brax"): 3 seeds x 8000 env steps, 64-64 nets, lr 1e-3, batch 256.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from mjxmeta.baselines import brax as brax_baselines
from mjxmeta.runs.checkpoint import Checkpointer
from mjxmeta.cli import build_parser, config_from_args, main
from mjxmeta.algo.config import (BRAX_FIELDS, BRAX_TEACHER, PPO_MINIBATCHES, SAC_LEARNING_STARTS, Config, ConfigError,
                            StudentConfig, from_dict, validate)
from mjxmeta.tools.report import load_run, write_report

SAC = ["train", "--student", "sac", "--env", "pendulum", "--no-progress"]
PPO = ["train", "--student", "ppo", "--env", "pendulum", "--no-progress"]


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _config(argv):
    return config_from_args(build_parser().parse_args(argv))


# ------------------------------------------------------------------ config, before anything compiles
def test_cli_gives_sac_ppo_a_noise_teacher_and_keeps_their_fields():
    config = _config(SAC + ["--total-steps", "5000", "--hidden", "32,32", "--actor-lr", "3e-4"])
    assert config.student.name == "sac" and config.teacher.name == BRAX_TEACHER and not config.is_meta
    fn, kw = brax_baselines.brax_arguments(config)
    assert fn.__module__ == "brax.training.agents.sac.train"
    assert (kw["num_timesteps"], kw["episode_length"], kw["num_envs"], kw["num_eval_envs"]) == (5000, 200, 1, 10)
    assert (kw["learning_rate"], kw["discounting"], kw["batch_size"], kw["tau"]) == (3e-4, 0.99, 64, 0.01)
    assert (kw["min_replay_size"], kw["max_replay_size"], kw["grad_updates_per_step"]) == (SAC_LEARNING_STARTS,
                                                                                            5000, 1)
    assert kw["deterministic_eval"] is True and kw["normalize_observations"] is True and kw["max_devices_per_host"] == 1
    assert kw["network_factory"].keywords["hidden_layer_sizes"] == (32, 32)
    assert kw["num_evals"] == 2  # eval_every 20000 > 5000: before training and at the end

    ppo = _config(PPO + ["--rollout-steps", "10", "--num-envs", "4", "--updates", "3", "--eval-every", "1000",
                         "--total-steps", "2500"])
    fn, kw = brax_baselines.brax_arguments(ppo)
    assert fn.__module__ == "brax.training.agents.ppo.train"
    assert (kw["unroll_length"], kw["num_envs"], kw["num_minibatches"], kw["num_updates_per_batch"]) == (
        10, 4, PPO_MINIBATCHES, 3)
    assert kw["network_factory"].keywords["policy_hidden_layer_sizes"] == (64, 64)
    assert kw["num_evals"] == 1 + 3  # ceil(2500 / 1000) epochs after the initial evaluation


@pytest.mark.parametrize("flags, field", [
    (["--teacher", "meta"], "teacher.name"),
    (["--teacher", "gaussian"], "teacher.name"),  # not read at all: refused by name, too
    (["--sweep", "student.tau=0.01,0.02"], "sweep"),
    (["--log-every", "5"], "log_every"),
    (["--critic-lr", "1e-3"], "student.critic_lr"),
    (["--candidates", "4"], "meta.candidates"),
    (["--total-steps", str(SAC_LEARNING_STARTS)], "total_steps"),
])
def test_sac_refuses_fields_it_does_not_read_before_compiling(flags, field, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(SAC + flags + ["--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"'{field}'" in err, err
    assert not run_dir.exists()


def test_validate_refuses_a_meta_teacher_and_a_sweep_for_brax_students():
    sac = Config(env="pendulum", student=StudentConfig(name="sac"))  # Config()'s teacher is meta
    with pytest.raises(ConfigError, match="teacher.name"):
        validate(sac)
    noise = dataclasses.replace(sac, teacher=dataclasses.replace(sac.teacher, name="ou"))
    assert validate(noise) is noise
    with pytest.raises(ConfigError, match="'sweep'"):
        validate(dataclasses.replace(noise, sweep=(("student.tau", (0.01, 0.02)),)))
    ppo = dataclasses.replace(noise, student=StudentConfig(name="ppo", batch_size=6), num_envs=5)
    with pytest.raises(ConfigError, match="'num_envs'"):  # 6 * 4 minibatches not divisible by 5 envs
        validate(ppo)
    # ppo reads rollout_steps, sac does not
    assert "rollout_steps" in BRAX_FIELDS["ppo"] and "rollout_steps" not in BRAX_FIELDS["sac"]


def test_brax_seeds_are_distinct_and_reproducible():
    base = Config(env="pendulum", seeds=3, student=StudentConfig(name="sac"))
    seeds = [brax_baselines.brax_seed(base, s) for s in range(3)]
    other = [brax_baselines.brax_seed(dataclasses.replace(base, seed=1), s) for s in range(3)]
    assert len(set(seeds + other)) == 6 and seeds == [brax_baselines.brax_seed(base, s) for s in range(3)]


# ------------------------------------------------------------------ runs
def test_sac_learns_pendulum_and_report_tables_it(tmp_path, capsys):
    """SAC (Brax) on pendulum, 3 seeds x 8000 env steps: every seed gains >= 500 over its untrained policy and
    the mean final return is above -500 (random policy: about -1200 to -1600; measured: see the README)."""
    run_dir = tmp_path / "sac"
    argv = SAC + ["--seeds", "3", "--total-steps", "8000", "--eval-every", "0", "--eval-envs", "8",
                  "--actor-lr", "1e-3", "--batch-size", "256", "--run-dir", str(run_dir)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    config = from_dict(json.loads((run_dir / "config.json").read_text()))
    assert config == _config(argv)
    rows = _rows(run_dir)
    assert [(r["seed"], r["iteration"]) for r in rows] == [(s, i) for s in range(3) for i in range(2)]
    first = {r["seed"]: r["eval_return"] for r in rows if r["iteration"] == 0}
    last = {r["seed"]: r for r in rows if r["iteration"] == 1}
    assert all(r["env_steps"] >= 8000 and math.isfinite(r["critic_loss"]) and 0 < r["alpha"] for r in last.values())
    gains = [last[s]["eval_return"] - first[s] for s in range(3)]
    final = [last[s]["eval_return"] for s in range(3)]
    print(f"sac pendulum 8000 steps: final {final}, gains {gains}")
    assert min(gains) >= 500, gains
    assert np.mean(final) > -500, final
    assert f"| 0 | {final[0]:.2f} |" in out  # the CLI's table

    # final parameters: one Orbax checkpoint, seed axis first
    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        record = ckpt.read_record(ckpt.latest_step())
        assert record["brax_trainer"] == "sac" and from_dict(record["config"]) == config
    finally:
        ckpt.close()

    # report: the run is the line "sac"
    run = load_run(run_dir)
    assert run.teacher == "sac" and run.seeds == [0, 1, 2]
    md = write_report([run_dir], tmp_path / "report", reps=200).read_text()
    assert "| sac | 3 | " in md

    # eval needs a Student's checkpoint: refused by name
    assert main(["eval", str(run_dir)]) == 2
    assert "'student.name' = 'sac'" in capsys.readouterr().err

    # not resumable: refused with the resume exit code, nothing changes
    before = (run_dir / "metrics.jsonl").read_bytes()
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 4
    assert "not resumable" in capsys.readouterr().err
    assert (run_dir / "metrics.jsonl").read_bytes() == before


def test_ppo_smoke_run_writes_rows_report_reads(tmp_path, capsys):
    run_dir = tmp_path / "ppo"
    argv = PPO + ["--seeds", "2", "--total-steps", "2000", "--rollout-steps", "10", "--batch-size", "16",
                  "--num-envs", "4", "--eval-envs", "4", "--eval-every", "1000", "--run-dir", str(run_dir)]
    assert main(argv) == 0
    rows = _rows(run_dir)
    # 1 + ceil(2000 / 1000) evaluations per seed; an epoch is whole training steps of 16 * 10 * 4 env steps
    assert [(r["seed"], r["iteration"]) for r in rows] == [(s, i) for s in range(2) for i in range(3)]
    assert [r["env_steps"] for r in rows if r["seed"] == 0] == [0, 1280, 2560]
    assert all(math.isfinite(r["eval_return"]) and -16.3 * 200 <= r["eval_return"] <= 0 for r in rows)
    assert all(math.isfinite(r["policy_loss"]) for r in rows if r["iteration"])
    md = write_report([run_dir], tmp_path / "report", reps=200).read_text()
    assert "| ppo | 2 | 2560 |" in md
