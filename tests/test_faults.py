"""Fault injection on the run directory, end to end (issue: a run directory nobody can silently corrupt).

Each case damages or contends for a run the way a cluster user would and
asserts the exact exit code, one-line messages without tracebacks, and no data
loss (the files of the old run unchanged or moved aside byte for byte, the
previous checkpoint intact, resumed runs bit-identical to a straight run).

Runs are real subprocesses on the tiny ``pendulum`` setup of
``test_checkpoint.py`` (same ``FLAGS``, so the same compiled program; the
``--keep 20`` here keeps every checkpoint of the reference run). The cases that
need a fault inside a running trainer use ``tests/_fault_launcher.py``:
``SLOW_CHUNK`` parks a known chunk in flight (to signal it there) and
``FAIL_SAVE_NTH`` raises ``OSError(ENOSPC)`` in Orbax's commit of a save, where
a full disk surfaces.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mjxmeta.runs.programs import programs_of
from test_checkpoint import (FLAGS, HERE, LAUNCHER, STEPS_PER_ITERATION, TIMEOUT, _cmd, _kill, assert_bit_identical,
                             check_ok, finalized_steps, metrics_rows, mjx, record_wo_wall, restore, run_proc,
                             sub_env, tmp_dirs, without_wall, workdir)

__all__ = ["sub_env", "workdir"]  # module-scoped fixtures reused from test_checkpoint

KEEP_ALL = [*FLAGS, "--keep", "20"]
X = 8 * STEPS_PER_ITERATION   # 4 chunks of 2 iterations, checkpoints 2, 4, 6, 8
BIG = 400 * STEPS_PER_ITERATION


# ------------------------------------------------------------------ helpers
def tree_bytes(root: Path) -> dict[str, bytes]:
    """{relative path: content} of every file under ``root`` (the no-data-loss snapshot)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def copy_run(ref: Path, dst: Path) -> Path:
    shutil.copytree(ref, dst)
    return dst


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("mjxmeta: error")]


def assert_clean(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]


def assert_same_state(run: Path, ref: Path, step: int) -> None:
    """Checkpoint ``step`` of ``run`` equals the reference's bit for bit (arrays, position and array checksum)."""
    (got, rg), (want, rw) = restore(run, [step])[step], restore(ref, [step])[step]
    assert_bit_identical(got, want, f"{run.name} vs {ref.name} at iteration {step}")
    from mjxmeta.runs.checkpoint import DIGEST

    assert record_wo_wall(rg) == record_wo_wall(rw) and rg[DIGEST] == rw[DIGEST]


def start_parked(run: Path, env, cwd, chunk: int, seconds: float, extra=()) -> tuple[subprocess.Popen, list]:
    """Starts the launcher on ``run`` and returns once chunk ``chunk`` is in flight (parked ``seconds``)."""
    err = open(cwd / f"{run.name}.stderr", "w")
    proc = subprocess.Popen(_cmd([sys.executable, LAUNCHER, "train", *KEEP_ALL, "--total-steps", BIG,
                                  "--run-dir", run, *extra]),
                            env={**env, "SLOW_CHUNK": str(chunk), "SLOW_CHUNK_SECONDS": str(seconds)}, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=err, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            if lines.get(timeout=0.5).startswith(f"CHUNK_IN_FLIGHT {chunk}"):
                return proc, [err]
        except queue.Empty:
            if proc.poll() is not None or time.monotonic() > deadline:
                _kill(proc)
                raise RuntimeError(f"launcher ended (exit {proc.returncode}) before chunk {chunk}: "
                                   f"{(cwd / f'{run.name}.stderr').read_text()[-2000:]}")


@pytest.fixture(scope="module")
def ref(workdir, sub_env) -> Path:
    """The straight reference run: ``X`` env steps, every checkpoint (2, 4, 6, 8) kept."""
    run = workdir / "REF"
    check_ok(mjx("train", *KEEP_ALL, "--total-steps", X, "--run-dir", run, env=sub_env, cwd=workdir))
    assert finalized_steps(run) == [2, 4, 6, 8] and not (run / ".lock").exists()
    return run


# ------------------------------------------------------------------ tests
def test_fresh_train_over_a_run_is_refused_and_overwrite_moves_it_aside(ref, workdir, sub_env):
    run = copy_run(ref, workdir / "OVER")
    before = tree_bytes(run)
    p = mjx("train", *KEEP_ALL, "--seed", "1", "--total-steps", 2 * STEPS_PER_ITERATION, "--run-dir", run,
            env=sub_env, cwd=workdir)
    assert p.returncode == 2, p.stderr[-2000:]
    (line,) = errors(p.stderr)
    assert "already holds a run" in line and f"--resume {run}" in line and "--overwrite" in line
    assert_clean(p.stderr)
    assert tree_bytes(run) == before

    p = check_ok(mjx("train", *KEEP_ALL, "--seed", "1", "--total-steps", 2 * STEPS_PER_ITERATION, "--run-dir", run,
                     "--overwrite", env=sub_env, cwd=workdir))
    (old,) = sorted(workdir.glob("OVER.old-*"))
    assert f"moved the existing run {run} to {old}" in p.stderr
    assert tree_bytes(old) == before  # the old run, byte for byte
    assert json.loads((run / "config.json").read_text())["seed"] == 1
    assert finalized_steps(run) == [2] and [r["iteration"] for r in metrics_rows(run)] == [2, 2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_run_saves_stops_and_resumes_bit_exact(sig, ref, workdir, sub_env):
    """The signal arrives while chunk 3 (iterations 5-6) is in flight: it is finished, saved, exit 128 + sig."""
    run = workdir / f"SIG_{sig.name}"
    concurrent = sig == signal.SIGTERM  # while it runs, other trainers on the same dir are refused
    proc, files = start_parked(run, sub_env, workdir, chunk=3, seconds=20 if concurrent else 6)
    try:
        if concurrent:
            assert json.loads((run / ".lock").read_text())["pid"] == proc.pid
            host = socket.gethostname()
            for args in (["--resume", run], [*KEEP_ALL, "--run-dir", run, "--total-steps", X],
                         [*KEEP_ALL, "--run-dir", run, "--total-steps", X, "--overwrite"]):
                q = mjx("train", *args, env=sub_env, cwd=workdir)
                assert q.returncode == 2, q.stderr[-2000:]
                (line,) = errors(q.stderr)
                assert f"PID {proc.pid} on host {host}" in line, line
                assert_clean(q.stderr)
            assert proc.poll() is None and not list(workdir.glob(f"{run.name}.old-*"))
        os.kill(proc.pid, sig)
        proc.wait(timeout=TIMEOUT)
    finally:
        _kill(proc)
        for f in files:
            f.close()
    stderr = (workdir / f"{run.name}.stderr").read_text()
    assert proc.returncode == 128 + sig, stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == f"stopped at iteration 6; resume with: mjxmeta train --resume {run}"
    assert_clean(stderr)
    assert finalized_steps(run) == [2, 4, 6] and tmp_dirs(run) == []
    assert not (run / ".lock").exists()

    p = check_ok(mjx("train", "--resume", run, "--total-steps", X, "--no-progress", env=sub_env, cwd=workdir))
    assert f"resumed {run} at iteration 6" in p.stderr
    assert_same_state(run, ref, 8)
    assert without_wall(metrics_rows(run)) == without_wall(metrics_rows(ref))


def test_flipped_byte_and_damaged_metrics_fall_back_to_the_previous_verified_checkpoint(ref, workdir, sub_env):
    run = copy_run(ref, workdir / "FLIP")
    victim = max((p for p in (run / "checkpoints" / "8" / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
                 key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    damaged = bytes(data)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines = [x for x in lines if not (json.loads(x)["iteration"] == 4 and json.loads(x)["seed"] == 1)] + ["[1,2,3]"]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")

    p = check_ok(mjx("train", "--resume", run, "--total-steps", X, "--no-progress", env=sub_env, cwd=workdir))
    err = p.stderr
    assert f"checkpoint 8 in {run / 'checkpoints'} failed verification" in err, err[-3000:]
    assert "using checkpoint 6 (verified) instead of 8" in err
    assert "1 malformed line(s) dropped (line " in err
    assert "1 row(s) missing at or before the checkpoint at iteration 6 (iteration 4 run 1)" in err
    assert f"resumed {run} at iteration 6" in err
    assert_clean(err)
    (aside,) = (run / "failed_checkpoints").iterdir()  # kept, not deleted
    assert aside.name.startswith("8.") and (aside / victim.relative_to(run / "checkpoints" / "8")).read_bytes() == damaged
    assert_same_state(run, ref, 8)  # iterations 7-8 retrained from checkpoint 6: the straight run's state
    rows = [(r["iteration"], r["seed"]) for r in metrics_rows(run)]
    assert rows == [(2, 0), (2, 1), (4, 0), (6, 0), (6, 1), (8, 0), (8, 1)]


def test_truncated_latest_checkpoint_eval_falls_back_in_one_line(ref, workdir, sub_env):
    run = copy_run(ref, workdir / "TRUNC")
    for f in (run / "checkpoints" / "8" / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    before = tree_bytes(run)
    p = check_ok(mjx("eval", run, "--episodes", "2", env=sub_env, cwd=workdir))
    notes = [x for x in p.stderr.splitlines() if x.startswith("mjxmeta:")]
    assert len(notes) == 2 and "checkpoint 8" in notes[0] and "failed verification" in notes[0], p.stderr[-3000:]
    assert notes[1] == "mjxmeta: using checkpoint 6 (verified) instead of 8"
    assert "checkpoint at iteration 6, 2 episodes per seed" in p.stdout
    assert_clean(p.stderr)
    assert tree_bytes(run) == before  # eval reads only


def test_no_verified_checkpoint_is_an_error_not_a_restore(ref, workdir):
    from mjxmeta.runs.checkpoint import CheckpointCorrupt, Checkpointer
    from mjxmeta.runs.loop import load_config
    from mjxmeta.algo.trainer import Trainer

    run = copy_run(ref, workdir / "ALLBAD")
    for step in (2, 4, 6, 8):
        for f in (run / "checkpoints" / str(step) / "state").rglob("*"):
            if f.is_file() and f.parent.name == "d":
                f.write_bytes(b"")
    ckpt = Checkpointer(run, read_only=True)
    said = []
    try:
        with pytest.raises(CheckpointCorrupt, match="no verified checkpoint to restore"):
            ckpt.restore_verified(programs_of(Trainer(load_config(run))).abstract_state(), say=said.append)
    finally:
        ckpt.close()
    assert [m.split(" in ")[0] for m in said] == ["checkpoint 8", "checkpoint 6", "checkpoint 4", "checkpoint 2"]


@pytest.mark.parametrize("edit,expected", [
    (lambda d: d["student"].update(gamma=0.5), "student.gamma: 0.99 -> 0.5"),
    (lambda d: d["student"].pop("tau"), "student.tau: 0.01 -> '<missing>'"),
    (lambda d: d.update(bogus=1), "bogus: '<missing>' -> 1"),
    ("{", "does not parse"),
    ("", "does not parse"),
    ("[1, 2]", "holds a list"),
], ids=["gamma", "deleted_field", "unknown_field", "invalid_json", "empty", "json_list"])
def test_edited_config_json_is_refused_on_resume(edit, expected, ref, workdir, capsys):
    import mjxmeta.cli

    run = copy_run(ref, workdir / f"EDIT_{len(list(workdir.glob('EDIT_*')))}")
    if callable(edit):
        d = json.loads((run / "config.json").read_text())
        edit(d)
        (run / "config.json").write_text(json.dumps(d))
    else:
        (run / "config.json").write_text(edit)
    before = tree_bytes(run)
    with pytest.raises(SystemExit) as e:  # refused before anything compiles
        mjxmeta.cli.main(["train", "--resume", str(run), "--total-steps", str(2 * X), "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 4, err[-2000:]
    (line,) = errors(err)
    assert f"cannot resume {run}" in line and expected in line, line
    assert tree_bytes(run) == before and not (run / ".lock").exists()
    if not callable(edit):  # eval/render refuse it too, in one line (exit 2)
        assert mjxmeta.cli.main(["eval", str(run)]) == 2
        (line,) = errors(capsys.readouterr().err)
        assert "config.json" in line


def test_disk_full_at_save_is_one_line_and_keeps_the_previous_checkpoint(ref, workdir, sub_env):
    run = workdir / "FULL"
    p = run_proc([sys.executable, LAUNCHER, "train", *KEEP_ALL, "--total-steps", X, "--run-dir", run], sub_env,
                 workdir, {"FAIL_SAVE_NTH": "2", "FAIL_SAVE_ERRNO": "ENOSPC"})
    assert "SAVE_FAILED 4" in p.stdout
    assert p.returncode == 5, p.stderr[-3000:]
    (line,) = errors(p.stderr)
    assert line == (f"mjxmeta: error: cannot write a checkpoint to {run / 'checkpoints' / '4.orbax-checkpoint-tmp'}: "
                    "No space left on device (the checkpoints before it are intact: [2])")
    assert_clean(p.stderr)
    assert finalized_steps(run) == [2] and not (run / ".lock").exists()
    assert_same_state(run, ref, 2)
    # Space back: the resume continues from checkpoint 2 to the straight run's state.
    p = check_ok(mjx("train", "--resume", run, "--total-steps", X, "--no-progress", env=sub_env, cwd=workdir))
    assert f"resumed {run} at iteration 2" in p.stderr
    assert_same_state(run, ref, 8)


# ------------------------------------------------------------------ in-process units
def test_lock_is_exclusive_across_processes_reentrant_and_stale_locks_are_taken_over(tmp_path, capsys):
    from mjxmeta.runs.layout import RunDirError, RunLock

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from mjxmeta.runs.layout import RunLock; "
                               f"RunLock({str(tmp_path)!r}).acquire(); print('HELD', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    try:
        assert holder.stdout.readline().strip() == "HELD"
        with pytest.raises(RunDirError, match=f"PID {holder.pid} on host {socket.gethostname()}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its lock file stays, the kernel dropped the flock.
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid
    outer = RunLock(tmp_path).acquire()
    assert f"stale lock of {tmp_path} left by PID {holder.pid}" in capsys.readouterr().err
    with RunLock(tmp_path):  # re-entrant in one process (train() inside the CLI's lock)
        assert (tmp_path / ".lock").exists()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    outer.release()
    assert not (tmp_path / ".lock").exists()
