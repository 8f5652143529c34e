"""Fault injection on the run directory, end to end (issue: a run directory nobody can silently corrupt).

Each case damages or contends for a run the way a cluster user would and
asserts the exact exit code, one-line messages without tracebacks, and no data
loss (the files of the old run unchanged or moved aside byte for byte, the
previous checkpoint intact, resumed runs bit-identical to a straight run).

Runs are real subprocesses on the tiny ``pendulum`` setup of
``test_checkpoint.py`` (same ``FLAGS``, so the same compiled program; the
``--keep 20`` here keeps every checkpoint of the reference run). The cases that
need a fault inside a running trainer use ``tests/_fault_launcher.py``:
``SLOW_CHUNK`` parks a known chunk in flight (to signal it there),
``FAIL_SAVE_NTH`` raises ``OSError(ENOSPC)`` in Orbax's commit of a save and
``FAIL_WRITE_STEP`` TensorStore's ENOSPC error in its array writes, where a
full disk surfaces.

No test depends on how fast anything runs: a test acts on an observed event
(a marker of the launcher or a line on stderr, :class:`Launched`), a parked
chunk or save goes on only when the test creates its gate file, and the
assertions are on what was written (checkpoints, rows, stderr lines).
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
from test_checkpoint import (CLI, FLAGS, HERE, LAUNCHER, STEPS_PER_ITERATION, TIMEOUT, _cmd, _kill,
                             assert_bit_identical, check_ok, finalized_steps, metrics_rows, mjx, record_wo_wall,
                             restore, run_proc, sub_env, tmp_dirs, without_wall, workdir)

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


class Launched:
    """A trainer subprocess whose stdout (the launcher's markers) and stderr are collected line by line, so a
    test can act on an observed event (:meth:`wait_for`) instead of on elapsed time."""

    def __init__(self, args, env, cwd, extra_env=None):
        self.proc = subprocess.Popen(_cmd(args), env={**env, **(extra_env or {})}, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._news: queue.Queue[str] = queue.Queue()
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            self._news.put(line)

    def wait_for(self, text: str) -> None:
        """Returns once a line of stdout or stderr starts with ``text``; fails if the process ends first."""
        deadline = time.monotonic() + TIMEOUT
        while not any(line.startswith(text) for line in self.out + self.err):
            try:
                self._news.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"process ended (exit {self.proc.returncode}) before {text!r}: "
                                       f"{''.join(self.err)[-2000:]}")

    def finish(self) -> int:
        """Waits for the exit (and the last output); returns the exit code."""
        self.proc.wait(timeout=TIMEOUT)
        for t in self._readers:
            t.join(timeout=TIMEOUT)
        return self.proc.returncode

    def kill(self) -> None:
        _kill(self.proc)

    def __enter__(self) -> "Launched":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def after_banner(self) -> list[str]:
        """The stderr lines after the start banner ``run dir: ...``."""
        assert self.err and self.err[0].startswith("run dir: "), self.stderr[-2000:]
        return [line.rstrip("\n") for line in self.err[1:]]


FIRST_SIGTERM = "mjxmeta: SIGTERM received: stopping after the chunk in flight (send it again to abandon the chunk)"


def start_parked(run: Path, env, cwd, chunk: int, extra=(), extra_env=None) -> tuple[Launched, Path]:
    """Starts the launcher on ``run`` and returns once chunk ``chunk`` is in flight, parked until the returned
    gate file is created (``gate.touch()``)."""
    gate = cwd / f"{run.name}.gate"
    proc = Launched([sys.executable, LAUNCHER, "train", *KEEP_ALL, "--total-steps", BIG, "--run-dir", run, *extra],
                    env, cwd, {"SLOW_CHUNK": str(chunk), "SLOW_CHUNK_SECONDS": str(TIMEOUT),
                               "SLOW_CHUNK_GATE": str(gate), **(extra_env or {})})
    proc.wait_for(f"CHUNK_IN_FLIGHT {chunk}")
    return proc, gate


def stop_line(run: Path, iteration: int) -> str:
    return f"stopped at iteration {iteration}; resume with: mjxmeta train --resume {run}"


def assert_rows_match_reference(run: Path, ref: Path, last: int) -> None:
    """``metrics.jsonl`` of ``run`` holds exactly the reference's rows up to iteration ``last`` (each once)."""
    want = [r for r in without_wall(metrics_rows(ref)) if r["iteration"] <= last]
    assert without_wall(metrics_rows(run)) == want


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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_signal_mid_run_saves_stops_and_resumes_bit_exact(sig, ref, workdir, sub_env):
    """The signal arrives while chunk 3 (iterations 5-6) is parked in flight; the chunk goes on only once the
    handler said so on stderr, so it is finished, saved as iteration 6 and the run exits 128 + sig. SIGHUP (a
    closed terminal) is handled like SIGTERM."""
    run = workdir / f"SIG_{sig.name}"
    concurrent = sig == signal.SIGTERM  # while it runs, other trainers on the same dir are refused
    proc, gate = start_parked(run, sub_env, workdir, chunk=3)
    with proc:
        if concurrent:
            assert json.loads((run / ".lock").read_text())["pid"] == proc.proc.pid
            host = socket.gethostname()
            for args in (["--resume", run], [*KEEP_ALL, "--run-dir", run, "--total-steps", X],
                         [*KEEP_ALL, "--run-dir", run, "--total-steps", X, "--overwrite"]):
                q = mjx("train", *args, env=sub_env, cwd=workdir)
                assert q.returncode == 2, q.stderr[-2000:]
                (line,) = errors(q.stderr)
                assert f"PID {proc.proc.pid} on host {host}" in line, line
                assert_clean(q.stderr)
            assert proc.proc.poll() is None and not list(workdir.glob(f"{run.name}.old-*"))
        os.kill(proc.proc.pid, sig)
        proc.wait_for(f"mjxmeta: {sig.name} received: stopping after the chunk in flight")
        gate.touch()
        code = proc.finish()
    stderr = proc.stderr
    assert code == 128 + sig, stderr[-3000:]
    saved = finalized_steps(run)
    assert stderr.rstrip().splitlines()[-1] == stop_line(run, saved[-1])  # names the checkpoint on disk
    assert saved == [2, 4, 6] and tmp_dirs(run) == []  # the parked chunk, finished and saved
    assert_rows_match_reference(run, ref, 6)
    assert_same_state(run, ref, 6)
    assert_clean(stderr)
    assert not (run / ".lock").exists()

    p = check_ok(mjx("train", "--resume", run, "--total-steps", X, "--no-progress", env=sub_env, cwd=workdir))
    assert f"resumed {run} at iteration 6" in p.stderr
    assert_same_state(run, ref, 8)
    assert without_wall(metrics_rows(run)) == without_wall(metrics_rows(ref))


def test_signal_right_after_the_start_banner_stops_cleanly(ref, workdir, sub_env):
    """SIGTERM as soon as the banner is on stderr (before the imports, the compile and the first chunk): the
    handler is already installed, so the first chunk is finished and saved and the run stops with 143."""
    run = workdir / "EARLY"
    with Launched([*CLI, "train", *KEEP_ALL, "--total-steps", BIG, "--run-dir", run], sub_env, workdir) as proc:
        proc.wait_for(f"run dir: {run}  (")
        os.kill(proc.proc.pid, signal.SIGTERM)
        code = proc.finish()
    assert code == 143, proc.stderr[-3000:]
    assert proc.after_banner() == [FIRST_SIGTERM, stop_line(run, 2)]
    assert finalized_steps(run) == [2] and tmp_dirs(run) == [] and not (run / ".lock").exists()
    assert_rows_match_reference(run, ref, 2)
    assert_same_state(run, ref, 2)


def test_second_signal_during_the_final_save_finishes_it_in_one_line(ref, workdir, sub_env):
    """A second SIGTERM while the final checkpoint (iteration 6) is being committed: the save is finished, one
    note says so, no traceback, and the checkpoint is the straight run's."""
    run = workdir / "TWICE"
    save_gate = workdir / "TWICE.save_gate"
    proc, gate = start_parked(run, sub_env, workdir, chunk=3, extra_env={
        "SLOW_SAVE_NTH": "3", "SLOW_SAVE_SECONDS": str(TIMEOUT), "SLOW_SAVE_GATE": str(save_gate)})
    with proc:
        os.kill(proc.proc.pid, signal.SIGTERM)
        proc.wait_for(FIRST_SIGTERM)
        gate.touch()
        proc.wait_for("SAVE_STARTED 6 ")  # the commit of checkpoint 6 is parked
        os.kill(proc.proc.pid, signal.SIGTERM)
        proc.wait_for("mjxmeta: SIGTERM received again")
        save_gate.touch()
        code = proc.finish()
    assert code == 143, proc.stderr[-3000:]
    assert proc.after_banner() == [
        FIRST_SIGTERM, "mjxmeta: SIGTERM received again: finishing the checkpoint being written first",
        stop_line(run, 6)]
    assert finalized_steps(run) == [2, 4, 6] and tmp_dirs(run) == [] and not (run / ".lock").exists()
    assert_same_state(run, ref, 6)


def test_run_dir_deleted_mid_run_stops_with_exit_5_naming_it(workdir, sub_env):
    """The run directory is removed while chunk 3 is in flight (checkpoint 4 committed): the run stops with
    exit 5 before writing that chunk's rows or checkpoint, in one line naming the directory, and writes nothing
    more (the directory is not recreated)."""
    run = workdir / "GONE"
    proc, gate = start_parked(run, sub_env, workdir, chunk=3)
    with proc:
        deadline = time.monotonic() + TIMEOUT
        while not (run / "checkpoints" / "4").is_dir():  # the committed checkpoint 4 (chunk 3 is parked)
            assert proc.proc.poll() is None and time.monotonic() < deadline, proc.stderr[-2000:]
            time.sleep(0.1)
        shutil.rmtree(run)
        gate.touch()
        code = proc.finish()
    assert code == 5, proc.stderr[-3000:]
    assert proc.after_banner() == [f"mjxmeta: error: cannot write {run}: the run directory was deleted or moved "
                                   "while this run was writing it; stopped before writing more rows or checkpoints "
                                   "into it"]
    assert not run.exists()


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


@pytest.mark.parametrize("fault,path", [
    ({"FAIL_SAVE_NTH": "2", "FAIL_SAVE_ERRNO": "ENOSPC"}, "4.orbax-checkpoint-tmp"),
    ({"FAIL_WRITE_STEP": "4"}, "4.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/"),
], ids=["commit_oserror", "tensorstore_write"])
def test_disk_full_at_save_is_one_line_and_keeps_the_previous_checkpoint(fault, path, ref, workdir, sub_env):
    """ENOSPC in Orbax's commit (an OSError) or in TensorStore's array writes (a ValueError carrying the errno,
    logged by each of Orbax's save threads): one line naming the path, nothing else on stderr, exit 5."""
    run = workdir / f"FULL_{len(list(workdir.glob('FULL_*')))}"
    p = run_proc([sys.executable, LAUNCHER, "train", *KEEP_ALL, "--total-steps", X, "--run-dir", run], sub_env,
                 workdir, fault)
    assert ("SAVE_FAILED 4" if "FAIL_SAVE_NTH" in fault else "WRITE_FAILED 4") in p.stdout
    assert p.returncode == 5, p.stderr[-3000:]
    line = (f"mjxmeta: error: cannot write a checkpoint to {run / 'checkpoints'}/{path}: "
            "No space left on device (the checkpoints before it are intact: [2])")
    assert p.stderr.splitlines()[1:] == [line], p.stderr[-3000:]  # after the banner: the one line
    assert_clean(p.stderr)
    assert finalized_steps(run) == [2] and not (run / ".lock").exists()
    assert_same_state(run, ref, 2)
    # Space back: the resume continues from checkpoint 2 to the straight run's state.
    p = check_ok(mjx("train", "--resume", run, "--total-steps", X, "--no-progress", env=sub_env, cwd=workdir))
    assert f"resumed {run} at iteration 2" in p.stderr
    assert_same_state(run, ref, 8)


def test_truncated_latest_checkpoint_resume_falls_back_in_one_line_each(ref, workdir, sub_env):
    run = copy_run(ref, workdir / "TRUNC_RESUME")
    for f in (run / "checkpoints" / "8" / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    p = check_ok(mjx("train", "--resume", run, "--total-steps", X, "--no-progress", env=sub_env, cwd=workdir))
    after = p.stderr.splitlines()[1:]  # after the banner
    assert len(after) == 4, p.stderr[-3000:]
    assert after[0].startswith(f"mjxmeta: checkpoint 8 in {run / 'checkpoints'} failed verification: ")
    assert after[1] == "mjxmeta: using checkpoint 6 (verified) instead of 8"
    assert after[2].startswith(f"mjxmeta: moved failed checkpoint 8 to {run / 'failed_checkpoints'}/8.")
    assert after[3] == f"resumed {run} at iteration 6 (1500 env steps)"
    assert_clean(p.stderr)
    assert_same_state(run, ref, 8)


def test_resume_below_the_steps_done_is_refused_before_anything_is_written(ref, workdir, sub_env):
    run = copy_run(ref, workdir / "SHRINK")
    before = tree_bytes(run)
    p = mjx("train", "--resume", run, "--total-steps", 6 * STEPS_PER_ITERATION, "--no-progress", env=sub_env,
            cwd=workdir)
    assert p.returncode == 2, p.stderr[-2000:]
    (line,) = errors(p.stderr)
    assert line == (f"mjxmeta: error: config field 'total_steps' = {6 * STEPS_PER_ITERATION} is invalid: accepted "
                    f"at least {X}, the env steps per seed {run} has already done (its checkpoint at iteration 8); "
                    "a resume can extend the budget, not cut it")
    assert p.stderr.splitlines() == [line]  # refused before the banner
    assert tree_bytes(run) == before and not (run / ".lock").exists()


@pytest.mark.parametrize("kind", ["directory", "dangling_symlink"])
@pytest.mark.parametrize("fresh", [False, True], ids=["resume", "fresh"])
def test_lock_that_cannot_be_opened_is_exit_5_in_one_line(kind, fresh, ref, workdir, sub_env):
    run = workdir / f"LOCK_{kind}_{fresh}"
    if fresh:
        run.mkdir()
    else:
        copy_run(ref, run)
    if kind == "directory":
        (run / ".lock").mkdir()
        reason = "Is a directory"
    else:
        (run / ".lock").symlink_to(workdir / "no_such_dir" / "lock")
        reason = "No such file or directory"
    before = tree_bytes(run)
    args = [*KEEP_ALL, "--total-steps", X, "--run-dir", run] if fresh else ["--resume", run, "--total-steps", X]
    p = mjx("train", *args, env=sub_env, cwd=workdir)
    assert p.returncode == 5, p.stderr[-2000:]
    assert p.stderr.splitlines() == [f"mjxmeta: error: cannot write {run / '.lock'}: cannot open the run's lock "
                                     f"file ({reason}); a train needs to create and lock it"]
    assert tree_bytes(run) == before and (run / ".lock").is_symlink() == (kind == "dangling_symlink")


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


def test_known_startup_noise_is_dropped_and_nothing_else(tmp_path):
    """The two lines mujoco.mjx.warp prints when MuJoCo Warp cannot be imported, and Brax's "not actively
    maintained" warning, are dropped by the CLI's filters; other output and warnings pass. Without the filters
    the same script shows them (the case is real, not staged)."""
    script = (
        "import sys, warnings\n"
        "import mjxmeta.cli\n"
        "if sys.argv[1] == 'on': mjxmeta.cli.quiet_known_noise()\n"
        "sys.modules['warp'] = None  # MuJoCo Warp not importable\n"
        "import mujoco.mjx.warp\n"
        "print('other line')\n"
        "warnings.warn('Brax System, piplines and environments are not actively being maintained. Please see MJX')\n"
        "warnings.warn('another warning')\n")
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    out = {mode: subprocess.run([sys.executable, "-c", script, mode], env=env, capture_output=True, text=True,
                                timeout=TIMEOUT) for mode in ("off", "on")}
    for p in out.values():
        assert p.returncode == 0, p.stderr[-2000:]
    off, on = out["off"], out["on"]
    assert off.stdout.startswith("Failed to import warp: ") and "Failed to import mujoco_warp: " in off.stdout
    assert "not actively being maintained" in off.stderr
    assert on.stdout == "other line\n"
    assert "not actively being maintained" not in on.stderr and "UserWarning: another warning" in on.stderr


def test_stored_programs_directory_is_private(tmp_path):
    from mjxmeta.runs import program_cache

    before = program_cache.directory()
    try:
        new = program_cache.enable(tmp_path / "fresh")
        assert new == tmp_path / "fresh" / program_cache.SUBDIR and new.stat().st_mode & 0o777 == 0o700
        loose = tmp_path / "loose" / program_cache.SUBDIR
        loose.mkdir(parents=True)
        loose.chmod(0o755)
        assert program_cache.enable(loose.parent) == loose and loose.stat().st_mode & 0o777 == 0o700
    finally:
        program_cache._DIR = before
