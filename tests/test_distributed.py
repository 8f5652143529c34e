"""Seeds across processes: ``mjxmeta train`` as 2 processes on localhost equals a 1-process run, bit for bit.

Every run is a real subprocess: 2-process runs through ``tests/_launch_local.py``
(what ``srun``/``mpirun`` would do: a free port, ``--coordinator localhost:PORT
--num-processes 2 --process-id i``, CPU backend, one device per process), the
reference through ``python -m mjxmeta.cli`` with two forced host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``): the same seed mesh of
2 devices in one process. Tiny ``pendulum`` / ``gaussian`` setup, S = 4 (two
seeds per device), 4 chunks of 2 iterations, a checkpoint after each chunk.

What holds (measured here, asserted below): the 2-process run, its 2-process
resume, a 1-process resume of its half-way checkpoint and a 2-process resume
of the reference's half-way checkpoint all end in checkpoints whose every
leaf (float, integer and PRNG key) is bit-identical to the reference's, with
the same array checksum, and ``metrics.jsonl`` rows (wall time aside) equal to
the reference's. The 2-device partitioning, not the number of processes, is
what fixes the numerics: a 1-process run on ONE device (all 4 seeds in one
program) differs from these in the last bits of floats (XLA CPU with another
batch shape; integers and keys equal), which is why the reference uses two
forced devices.

Cost on 2 loaded cores: about 2 minutes (each 2-process run compiles its
programs in both processes; a shared persistent compilation cache, the test
session's (``conftest.TEST_JAX_CACHE``) or ``$MJXMETA_TEST_JAX_CACHE``, serves repeats).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TEST_JAX_CACHE
from mjxmeta.runs.checkpoint import DIGEST
from test_checkpoint import assert_bit_identical, check_ok, metrics_rows, restore, without_wall

HERE = Path(__file__).resolve().parent
LAUNCH = [sys.executable, str(HERE / "_launch_local.py"), "2"]
CLI = [sys.executable, "-m", "mjxmeta.cli"]
FLAGS = ["--env", "pendulum", "--teacher", "gaussian", "--seeds", "4", "--hidden", "16,16", "--batch-size", "32",
         "--buffer-size", "2000", "--rollout-steps", "50", "--log-every", "2", "--eval-envs", "2", "--no-progress",
         "--checkpoint-every", "2", "--keep", "10",
         "--eval-every", "100"]  # every log point evaluates, as in the straight reference run
STEPS = 50                # env steps per iteration (N*T)
X, HALF = 8 * STEPS, 4 * STEPS   # 4 chunks; the end of chunk 2
TIMEOUT = 600


def _run(cmd, env, cwd, extra=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env={**env, **(extra or {})}, cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT)


def per_process(p: subprocess.CompletedProcess) -> dict[tuple[int, str], str]:
    """{(process, 'stdout'|'stderr'): text} from the launcher's framed output."""
    out, key = {}, None
    for line in p.stdout.splitlines(keepends=True):
        if line.startswith("=== process "):
            _, _, i, name, _ = line.split()
            key = (int(i), name)
            out[key] = ""
        elif line.startswith("EXIT "):
            key = None
        elif key is not None:
            out[key] += line
    return out


def exits(p: subprocess.CompletedProcess) -> list[int]:
    return [int(line.split()[2]) for line in p.stdout.splitlines() if line.startswith("EXIT ")]


def truncate_to(src: Path, dst: Path, step: int) -> None:
    """``dst``: ``src`` as if stopped after the checkpoint at ``step`` (later checkpoints and rows removed)."""
    shutil.copytree(src, dst)
    for d in (dst / "checkpoints").iterdir():
        if d.name.isdigit() and int(d.name) > step:
            shutil.rmtree(d)
    rows = [line for line in (dst / "metrics.jsonl").read_text().splitlines() if json.loads(line)["iteration"] <= step]
    (dst / "metrics.jsonl").write_text("".join(r + "\n" for r in rows))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs every job (at most 3 processes at a time) and returns {name: (run dir, CompletedProcess)}."""
    work = tmp_path_factory.mktemp("dist")
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", PYTHONPATH=str(HERE.parent),
               JAX_COMPILATION_CACHE_DIR=os.environ.get("MJXMETA_TEST_JAX_CACHE") or TEST_JAX_CACHE,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    two_devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = {}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        ref = pool.submit(_run, [*CLI, "train", *FLAGS, "--total-steps", X, "--run-dir", work / "R"], env, work,
                          two_devices)
        out["D_half"] = work / "D", _run([*LAUNCH, "train", *FLAGS, "--total-steps", HALF, "--run-dir", work / "D"],
                                         env, work)
        out["R"] = work / "R", ref.result()
        check_ok(out["R"][1])
        check_ok(out["D_half"][1])
        shutil.copytree(work / "D", work / "D1")
        truncate_to(work / "R", work / "RH", HALF)
        # 2 -> 2 processes and 2 -> 1 process
        one = pool.submit(_run, [*CLI, "train", "--resume", work / "D1", "--total-steps", X, "--no-progress"], env,
                          work, two_devices)
        out["D"] = work / "D", _run([*LAUNCH, "train", "--resume", work / "D", "--total-steps", X, "--no-progress"],
                                    env, work)
        out["D1"] = work / "D1", one.result()
        # 1 -> 2 processes; and S = 3 on 2 devices, refused by both processes
        bad = pool.submit(_run, [*LAUNCH, "train", *FLAGS, "--seeds", "3", "--total-steps", X, "--run-dir",
                                 work / "S3"], env, work)
        out["RH"] = work / "RH", _run([*LAUNCH, "train", "--resume", work / "RH", "--total-steps", X,
                                       "--no-progress"], env, work)
        out["S3"] = work / "S3", bad.result()
    return out


def test_two_processes_equal_one_process_bit_for_bit(runs):
    ref, _ = runs["R"]
    for name in ("D_half", "D", "RH"):
        assert exits(runs[name][1]) == [0, 0], runs[name][1].stdout[-4000:]
    want = restore(ref)
    last = X // STEPS
    for name, steps in (("D_half", [2, HALF // STEPS]), ("D", [last]), ("D1", [last]), ("RH", [last])):
        run = runs[name][0]
        got = restore(run, steps)
        for s in steps:
            n = assert_bit_identical(got[s][0], want[s][0], f"{name} vs the 1-process reference at iteration {s}")
            assert n > 50
            for k in ("iteration", "chunk", "env_steps"):
                assert got[s][1][k] == want[s][1][k]
            assert got[s][1][DIGEST] == want[s][1][DIGEST], "the array checksum depends on the process count"
    # Cross-resumes really restored the other kind of run's checkpoint.
    assert "resumed" in per_process(runs["D"][1])[(0, "stderr")]
    assert "resumed" in runs["D1"][1].stderr and "resumed" in per_process(runs["RH"][1])[(0, "stderr")]


def test_one_metrics_file_with_every_seed_once_written_by_process_0(runs):
    ref, _ = runs["R"]
    want = without_wall(metrics_rows(ref))
    assert [(r["iteration"], r["seed"]) for r in want] == [(i, s) for i in (2, 4, 6, 8) for s in range(4)]
    for name in ("D", "D1", "RH"):
        assert without_wall(metrics_rows(runs[name][0])) == want, name
    assert json.loads((runs["D"][0] / "config.json").read_text()) == json.loads((ref / "config.json").read_text())
    streams = per_process(runs["D"][1])
    assert "| mean ± sd |" in streams[(0, "stdout")] and "run dir:" in streams[(0, "stderr")]
    assert "| mean ± sd |" not in streams[(1, "stdout")] and "run dir:" not in streams[(1, "stderr")]
    assert "Traceback" not in streams[(0, "stderr")] + streams[(1, "stderr")]
    assert not (runs["D"][0] / ".lock").exists()


def test_seeds_not_a_multiple_of_the_devices_refused_by_every_process(runs):
    run, p = runs["S3"]
    assert exits(p) == [2, 2], p.stdout[-3000:]
    streams = per_process(p)
    for i in (0, 1):
        assert "config field 'seeds' = 3 is invalid: accepted a multiple of the 2 devices of the 2 processes" \
            in streams[(i, "stderr")], streams[(i, "stderr")]
        assert "Traceback" not in streams[(i, "stderr")]
    assert "reported by process 0" in streams[(1, "stderr")]
    assert not run.exists(), "a refused run left its directory behind"
