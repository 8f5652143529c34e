"""``mjxmeta bench`` on a tiny pendulum config: every field printed and written (no speed assertions).

Speed targets live in the benchmark outputs (experiments/bench/results), not here.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import pytest

import mjxmeta.algo.trainer
from mjxmeta.tools import bench
from mjxmeta.cli import main

TINY = ["bench", "--env", "pendulum", "--teacher", "meta", "--seeds", "2", "--buffer-size", "20000",
        "--log-every", "2", "--chunks", "1", "--rounds", "2", "--reps", "1", "--train-chunks", "2"]


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_bench_prints_and_writes_every_field(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(TINY + ["--json", str(out)]) == 0
    text = capsys.readouterr().out
    r = json.loads(out.read_text())

    for pkg in ("jax", "brax", "mujoco"):
        assert r["versions"][pkg]
    assert r["machine"]["nproc"] >= 1 and r["machine"]["cpu"] and len(r["machine"]["loadavg"]) == 3
    assert r["command"][:2] == ["mjxmeta", "bench"]
    assert len(r["matmul_flop_per_s_rounds"]) == 2 and _positive(r["matmul_flop_per_s"])
    assert set(r["accelerators"]) == set(bench.ACCELERATORS)

    (c,) = r["cells"]
    assert c["cell"] == {"env": "pendulum", "teacher": "meta", "preset": "baselines2017", "seeds": 2,
                         "candidates": 2, "num_envs": 1, "buffer_size": 20000}
    for k in ("init_s", "compile_s", "compile_cpu_s", "first_chunk_s", "peak_rss_mib"):
        assert _positive(c[k]), k
    ch = c["chunk"]
    assert len(ch["rounds_s_per_chunk"]) == 2
    # K*N*T + E*H*(K+1) = 2*100 + 200*3 env steps and (200 + 400) / 2 updates per iteration.
    assert (c["steps_per_iteration"], c["updates_per_iteration"]) == (800, 300)
    assert ch["env_steps_per_s"] == pytest.approx(800 * 2 / ch["seconds_per_iteration"])
    assert ch["env_steps_per_s_per_seed"] == pytest.approx(ch["env_steps_per_s"] / 2)
    assert ch["updates_per_s"] == pytest.approx(ch["env_steps_per_s"] * 300 / 800)

    p = c["profile"]
    assert set(p["seconds"]) == set(bench.PIECES)
    assert all(_positive(v) for v in p["seconds"].values()), p["seconds"]  # meta: every piece runs
    assert sum(p["share"].values()) == pytest.approx(1.0)
    assert p["sum_s"] == pytest.approx(sum(p["seconds"].values()))
    assert p["seconds"]["replay"] == pytest.approx(p["insert_s"] + p["sample_s"])
    assert _positive(p["eval_s_per_log_point"]) and _positive(p["eval_over_chunk"])
    assert _positive(p["update_flops"]) and _positive(p["update_flop_per_s"])
    assert p["update_over_matmul"] == pytest.approx(p["update_flop_per_s"] / r["matmul_flop_per_s"])

    k = c["cost_per_iteration"]
    assert k["trips"] == {"d0_step": 99, "update": 299, "lookahead_update": 49, "rhat_step": 199}
    assert k["sequential_trips"] == 100 + 300 + 50 + 200
    # Scaling the loop bodies by their trips adds to the chunk's loops-once count.
    assert k["flops"] > c["chunk_cost_loops_once"]["flops"] > 0
    assert 0 < k["bytes"] <= k["bytes_xla"]
    # a sample moves 2 * batch rows of obs(3) + action(1) + reward + next_obs(3) + terminated floats per seed
    assert k["sample_bytes_rows"] == 2 * 64 * 9 * 4 * 2
    for name in bench.ACCELERATORS:
        proj = k["projection"][name]
        assert proj["bound"] in ("compute", "memory")
        assert proj["time_s"] == pytest.approx(max(proj["compute_s"], proj["memory_s"]))
        assert proj["with_latency_floor_env_steps_per_s"] <= proj["env_steps_per_s"]
        assert proj["with_latency_floor_env_steps_per_s"] == pytest.approx(
            1600 / max(proj["time_s"], k["sequential_trips"] * bench.TRIP_LATENCY_S))

    t = c["train"]
    assert t["log_points"] == 2 and t["chunks"] == 2
    for key in ("first_log_s", "total_s", "steady_env_steps_per_s", "after_first_env_steps_per_s", "steady_over_chunk"):
        assert _positive(float(t[key])), key
    assert t["first_log_s"] < t["total_s"] and t["run_dir_bytes"] > 0
    assert 0 < t["after_last_log_s"] < t["total_s"]

    for header in ("### Throughput", "### Share of an iteration", "### XLA cost per iteration", "PROJECTION",
                   "A100", "H100", "TPU-v5e"):
        assert header in text, header
    assert c["name"] in text


def test_xla_cost_analysis_counts_a_scan_body_once():
    """The premise of ``cost_per_iteration``: a 10-step scan reports the FLOPs of one step."""
    x = jnp.ones((32, 32))

    def scan(n):
        return jax.jit(lambda y: jax.lax.scan(lambda c, _: (c @ c, None), y, None, length=n)[0])

    one = bench.cost(scan(1).lower(x).compile())["flops"]
    ten = bench.cost(scan(10).lower(x).compile())["flops"]
    assert one == pytest.approx(2 * 32 ** 3, rel=0.01)
    assert ten == pytest.approx(one, rel=0.01)


@pytest.mark.parametrize("argv, field", [
    (["--env", "nope"], "--env"),
    (["--buffer-size", "80"], "student.buffer_size"),
    (["--seeds", "0"], "--seeds"),
    (["--train-chunks", "1"], "--train-chunks"),
    (["--json", "/nonexistent-dir/x.json"], "--json"),
])
def test_bench_bad_input_exits_2_before_compiling(monkeypatch, capsys, argv, field):
    def boom(*a, **k):
        raise AssertionError("compiled or built a trainer on bad input")

    monkeypatch.setattr(mjxmeta.algo.trainer.Trainer, "__init__", boom)
    with pytest.raises(SystemExit) as e:
        main(["bench", "--env", "pendulum", "--teacher", "gaussian"] + argv)
    assert e.value.code == 2
    assert field in capsys.readouterr().err


def _load_targets_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "bench" / "targets.py"
    spec = importlib.util.spec_from_file_location("bench_targets", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bench_file(cells, scale=(1.0, 1.0, 1.0)):
    """A minimal `mjxmeta bench` JSON with the given (cell settings, env steps/s, replay share) rows.

    Each cell's rounds run at ``sps * scale[i]`` env steps/s (100 steps per iteration, 10 per chunk).
    """
    shares = lambda replay: {p: (replay if p == "replay" else (1 - replay) / 4) for p in bench.PIECES}  # noqa: E731
    rounds = lambda c, sps: [100 * 10 * c["seeds"] / (sps * f) for f in scale]  # noqa: E731
    return {"cells": [{"cell": dict(env="pendulum", teacher="gaussian", preset="baselines2017", candidates=2,
                                    num_envs=1, **c), "steps_per_iteration": 100, "log_every": 10,
                       "chunk": {"env_steps_per_s": sps, "rounds_s_per_chunk": rounds(c, sps)},
                       "profile": {"share": shares(replay)}} for c, sps, replay in cells],
            "machine": bench.machine(), "versions": bench.versions(), "command": ["mjxmeta", "bench"]}


def test_targets_report_computes_ratios_and_verdicts(tmp_path):
    """Capacity and S-scaling targets from synthetic bench files: ratio, met / not met, bound, README section."""
    t = _load_targets_module()
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "capacity.json").write_text(json.dumps(_bench_file([
        (dict(seeds=4, buffer_size=10_000), 1000.0, 0.1), (dict(seeds=4, buffer_size=1_000_000), 950.0, 0.12),
        (dict(seeds=16, buffer_size=10_000), 2000.0, 0.1), (dict(seeds=16, buffer_size=1_000_000), 1000.0, 0.5)])))
    seeds_file = _bench_file([(dict(seeds=1, buffer_size=1_000_000), 1000.0, 0.1),
                              (dict(seeds=16, buffer_size=1_000_000), 5000.0, 0.1)])
    # S = 16's rounds at 0.9x, 1x, 1.2x of its median while S = 1's stay put: per-round ratios 4.5, 5, 6
    seeds_file["cells"][1]["chunk"]["rounds_s_per_chunk"] = [100 * 10 * 16 / (5000.0 * f) for f in (0.9, 1.0, 1.2)]
    (tmp_path / "targets" / "seeds.json").write_text(json.dumps(seeds_file))
    rows = {r["target"]: r for r in t.targets(tmp_path)}
    cap4 = rows["time per env step, capacity 1e6 ÷ 1e4 (pendulum gaussian, S = 4)"]
    cap16 = rows["time per env step, capacity 1e6 ÷ 1e4 (pendulum gaussian, S = 16)"]
    seeds = rows["aggregate env steps/s, S = 16 ÷ S = 1 (inverted_pendulum gaussian)"]
    assert cap4["value"] == pytest.approx(1000 / 950) and cap4["met"] is True and cap4["bound"] == ""
    assert cap16["value"] == pytest.approx(2.0) and cap16["met"] is False
    assert "replay share 50 % at 1e6 vs 10 % at 1e4" in cap16["bound"]
    assert seeds["value"] == pytest.approx(5.0) and seeds["met"] is True
    assert seeds["spread"] == pytest.approx((4.5, 6.0)) and cap4["spread"] == pytest.approx((1000 / 950,) * 2)
    assert seeds["load"] == seeds_file["machine"]["loadavg"][0]
    assert all(r["met"] is None and r["value"] is None for k, r in rows.items() if "capacity" not in k
               and "S = 16 ÷ S = 1" not in k)

    readme = tmp_path / "PROJECT_README.md"
    readme.write_text(f"# x\n## Speed\n{t.BEGIN}\nstale speed table\n{t.END}\nafter\n")
    out = t.report(tmp_path, readme)
    text = out.read_text()
    assert "| 2.00 | 2.00–2.00 | ≤ 1.15 | **not met** |" in text and "| 1.05 | 1.05–1.05 | ≤ 1.15 | met |" in text
    new = readme.read_text()
    assert "stale speed table" not in new and new.endswith(f"{t.END}\nafter\n") and "| 5.00 | 4.50–6.00 | ≥ 4 | met |" in new
