"""Each sink of :mod:`mjxmeta.runs.sinks` alone, fed hand-made log points (no JAX, no training)."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest

from mjxmeta.runs import sinks
from mjxmeta.runs.loop import metric_rows
from mjxmeta.tools.visitation import load_visits


def rows_at(iteration: int, seeds: int = 2, steps_per_iteration: int = 100, evaluated: bool = True) -> list[dict]:
    """One log point's rows; ``evaluated=False``: a log point without evaluation (no ``eval_return``)."""
    rows = [{"env_steps": iteration * steps_per_iteration, "iteration": iteration, "seed": s,
             "eval_return": float(10 * iteration + s), "wall_s": 0.5 * iteration, "meta_reward": 0.25 * s - 0.1}
            for s in range(seeds)]
    return rows if evaluated else [{k: v for k, v in r.items() if k != "eval_return"} for r in rows]


# ---------------------------------------------------------------------- JSONL
def test_jsonl_writes_one_line_per_row_and_truncates_a_fresh_run(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iteration": 99, "seed": 0}\n')  # a stale file from an earlier run
    sink = sinks.JsonlSink(path, runs=2, log_every=1)
    assert path.read_text() == ""
    sink(1, rows_at(1))
    sink(2, rows_at(2))
    assert [json.loads(x) for x in path.read_text().splitlines()] == rows_at(1) + rows_at(2)  # flushed per call
    sink.close()


def test_jsonl_resume_keeps_rows_up_to_the_checkpoint_and_drops_a_torn_line(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps(r) for i in (1, 2, 3) for r in rows_at(i)]
    path.write_text("\n".join(lines) + '\n{"iteration": 4, "se')  # killed mid-write after iteration 3
    sink = sinks.JsonlSink(path, runs=2, log_every=1, keep_through=2)
    sink(3, rows_at(3, seeds=1))
    sink.close()
    got = [json.loads(x) for x in path.read_text().splitlines()]
    assert got == rows_at(1) + rows_at(2) + rows_at(3, seeds=1)
    assert capsys.readouterr().err == ""  # a complete log and a torn last line: nothing to report


def test_jsonl_resume_reports_missing_malformed_and_duplicate_rows(tmp_path, capsys):
    """Rows at or before the checkpoint are checked: one per seed per log point; every problem is reported."""
    path = tmp_path / "metrics.jsonl"
    good = [json.dumps(r) for i in (2, 4, 6) for r in rows_at(i)]
    no_iteration = json.dumps({k: v for k, v in rows_at(2)[1].items() if k != "iteration"})
    path.write_bytes("\n".join([good[0], "[1,2,3]", good[2], good[2], good[3], no_iteration, good[4], good[5]]).encode()
                     + b"\n\xff\n" + good[5][:20].encode())  # not UTF-8, then a torn last line
    rows, problems = sinks.read_rows(path, upto=4, runs=2, log_every=2)
    assert rows == [good[0], good[2], good[3]]  # (2,0), (4,0), (4,1); rows after iteration 4 dropped
    assert problems == [f"{path}: 3 malformed line(s) dropped (line 2, 6, 9)",
                        f"{path}: 1 row(s) missing at or before the checkpoint at iteration 4 (iteration 2 run 1); "
                        "these log points stay missing",
                        f"{path}: 1 duplicate row(s) dropped (first kept), e.g. iteration 4 run 0"]
    assert sinks.read_rows(tmp_path / "none.jsonl", upto=0, runs=2, log_every=2) == ([], [])
    sinks.JsonlSink(path, runs=2, log_every=2, keep_through=4).close()
    assert path.read_text() == "".join(line + "\n" for line in rows)
    assert capsys.readouterr().err.splitlines() == [f"mjxmeta: warning: {p}" for p in problems]


def test_jsonl_resume_keeps_log_points_without_evaluation(tmp_path, capsys):
    """Rows without ``eval_return`` (``eval_every``) are complete rows: kept, counted, not reported."""
    path = tmp_path / "metrics.jsonl"
    written = rows_at(1, evaluated=False) + rows_at(2) + rows_at(3, evaluated=False)
    path.write_text("".join(json.dumps(r) + "\n" for r in written))
    kept, problems = sinks.read_rows(path, upto=2, runs=2, log_every=1)
    assert [json.loads(x) for x in kept] == written[:4] and problems == []
    assert sinks.parse_row(json.dumps(rows_at(1, evaluated=False)[0]).encode()) is not None
    assert sinks.parse_row(b'{"env_steps": 100, "iteration": 1, "eval_return": 1.0}') is None  # no seed


# ---------------------------------------------------------------- TensorBoard
def _scalars(logdir):
    """(tag, step, value) of every scalar in the TFRecord event files of ``logdir``."""
    from tensorboardX.proto import event_pb2

    out = []
    for f in sorted(logdir.glob("events.out.tfevents.*")):
        data = f.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                out.append((v.tag, event.step, v.simple_value))
    return out


def test_tensorboard_logs_every_scalar_per_seed_against_env_steps(tmp_path):
    sink = sinks.TensorBoardSink(tmp_path / "tb")
    sink(1, rows_at(1))
    sink(2, rows_at(2))
    sink.close()
    got = sorted(_scalars(tmp_path / "tb"))
    want = sorted((f"seed_{r['seed']}/{k}", r["env_steps"], pytest.approx(r[k]))
                  for i in (1, 2) for r in rows_at(i) for k in ("eval_return", "wall_s", "meta_reward"))
    assert got == want  # env_steps, iteration and seed are coordinates, not scalars


def test_tensorboard_writes_no_eval_return_where_none_was_evaluated(tmp_path):
    sink = sinks.TensorBoardSink(tmp_path / "tb")
    sink(1, rows_at(1, evaluated=False))
    sink(2, rows_at(2))
    sink.close()
    got = _scalars(tmp_path / "tb")
    assert sorted(step for tag, step, _ in got if tag == "seed_0/eval_return") == [200]
    assert sorted(step for tag, step, _ in got if tag == "seed_0/meta_reward") == [100, 200]


# --------------------------------------------------------------- progress bar
def test_progress_bar_advances_by_env_steps_and_shows_return_and_meta_reward():
    out = io.StringIO()
    bar = sinks.ProgressBar(total=1000, initial=200, file=out)
    bar(3, rows_at(3))
    assert bar.bar.n == 300
    bar(5, rows_at(5))
    assert bar.bar.n == 500
    text = str(bar.bar)
    assert "ret=50.5" in text and "meta_r=0.02" in text and "500/1000" in text
    bar(6, rows_at(6, evaluated=False))  # no evaluation here: the latest return stays shown
    assert bar.bar.n == 600 and "ret=50.5" in str(bar.bar)
    bar.close()
    fresh = sinks.ProgressBar(total=1000, file=io.StringIO())
    fresh(1, rows_at(1, evaluated=False))
    assert "ret=-" in str(fresh.bar)
    fresh.close()
    silent = io.StringIO()
    off = sinks.ProgressBar(total=10, enabled=False, file=silent)
    off(1, rows_at(1))
    off.close()
    assert silent.getvalue() == ""


# ----------------------------------------------------------------- visitation
def test_visitation_dumps_float32_arrays_that_load_visits_reads_back(tmp_path):
    sink = sinks.VisitationSink(tmp_path)
    a = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    sink(10, rows_at(10), a)
    sink(20, rows_at(20), a + 1)
    sink(30, rows_at(30), None)  # visitation disabled: nothing written
    sink.close()
    got = load_visits(tmp_path)
    assert [i for i, _ in got] == [10, 20]
    assert got[0][1].dtype == np.float32 and np.array_equal(got[1][1], (a + 1).astype(np.float32))


def test_fanout_calls_every_sink_in_order_then_closes_them():
    calls = []

    class Probe:
        def __init__(self, name):
            self.name = name

        def __call__(self, iteration, rows, visits=None):
            calls.append((self.name, iteration, len(rows), visits))

        def close(self):
            calls.append((self.name, "closed"))

    fan = sinks.Fanout([Probe("a"), Probe("b")])
    fan(4, rows_at(4), "v")
    fan.close()
    assert calls == [("a", 4, 2, "v"), ("b", 4, 2, "v"), ("a", "closed"), ("b", "closed")]


def test_metric_rows_average_a_chunk_and_keep_the_last_teacher_log_std():
    metrics = {"critic_loss": np.array([[1.0, 3.0], [5.0, 7.0]]), "teacher_log_std": np.array([[-1.0, -2.0],
                                                                                                [-3.0, -4.0]])}
    rows = metric_rows(2, metrics, np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), np.array([500, 500]), 1.23456)
    assert rows == [
        {"env_steps": 500, "iteration": 2, "seed": 0, "eval_return": 2.0, "wall_s": 1.235, "critic_loss": 2.0,
         "teacher_log_std": -2.0},
        {"env_steps": 500, "iteration": 2, "seed": 1, "eval_return": 5.0, "wall_s": 1.235, "critic_loss": 6.0,
         "teacher_log_std": -4.0},
    ]


def test_metric_rows_without_evaluation_have_no_eval_return():
    rows = metric_rows(4, {"critic_loss": np.array([[1.0, 3.0]])}, None, np.array([1000]), 2.0)
    assert rows == [{"env_steps": 1000, "iteration": 4, "seed": 0, "wall_s": 2.0, "critic_loss": 2.0}]
