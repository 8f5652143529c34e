"""experiments/sparse_exploration/run.py: the goal-reaching flags and the piece list (no training)."""

import importlib.util
import json
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location(
    "sparse_run", Path(__file__).resolve().parents[1] / "experiments" / "sparse_exploration" / "run.py")
run = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(run)


def write_rows(path: Path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_goal_stats_per_seed_and_fractions(tmp_path):
    m = tmp_path / "metrics.jsonl"
    rows = []
    # seed 0: D0 reaches the goal at 2000 steps, the student is positive at the end
    # seed 1: D0 never does, one evaluation is positive, the final one is not
    # seed 2: nothing: action costs only
    for step, ev in ((1000, None), (2000, None), (3000, True)):
        for seed, d0, e in ((0, 9.9 if step >= 2000 else -0.01, 90.0), (1, -0.05, 5.0 if step == 1000 else -1.0),
                            (2, -0.02, -0.3)):
            row = {"seed": seed, "env_steps": step, "d0_max_reward": d0}
            if ev or step == 1000:
                row["eval_return"] = e
            rows.append(row)
    write_rows(m, rows)
    g = run.goal_stats("mountain_car_continuous", m)
    p = g["per_seed"]
    assert (p[0]["explored"], p[0]["eval_reached"], p[0]["solved"], p[0]["first_env_steps"]) == (True, True, True, 1000)
    assert (p[1]["explored"], p[1]["eval_reached"], p[1]["solved"], p[1]["reached"]) == (False, True, False, True)
    assert (p[2]["reached"], p[2]["first_env_steps"], p[2]["final_eval_return"]) == (False, None, -0.3)
    assert g["fraction"] == pytest.approx({"explored": 1 / 3, "eval_reached": 2 / 3, "solved": 1 / 3,
                                           "reached": 2 / 3})


def test_goal_stats_without_d0_metric_reports_none(tmp_path):
    """A student whose rows carry no d0_max_reward (Brax SAC): explored is unknown, not False."""
    m = tmp_path / "metrics.jsonl"
    write_rows(m, [{"seed": 0, "env_steps": 1000, "eval_return": 3.0}, {"seed": 1, "env_steps": 1000,
                                                                        "eval_return": 0.0}])
    g = run.goal_stats("cartpole_swingup_sparse", m)
    assert g["fraction"]["explored"] is None and g["fraction"]["reached"] == 0.5


def test_pieces_order_and_unavailable_names():
    ps = run.pieces(["mountain_car_continuous"], ["ddpg", "sac"], ["gaussian", "meta"])
    assert ps == [("mountain_car_continuous", "ddpg", "gaussian"), ("mountain_car_continuous", "ddpg", "meta"),
                  ("mountain_car_continuous", "sac", run.NO_TEACHER)]
    assert run.unavailable("mountain_car_continuous", "ddpg", "gaussian") is None
    assert "no_such" in run.unavailable("mountain_car_continuous", "ddpg", "no_such")
    assert "no_such" in run.unavailable("mountain_car_continuous", "no_such", "gaussian")
