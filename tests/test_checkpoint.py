"""Checkpoint, resume and failure handling of ``mjxmeta train`` / ``mjxmeta eval``, end to end.

Every training run here is a real ``python -m mjxmeta.cli`` subprocess (or a
test-only launcher around ``mjxmeta.cli.main``) on the pure-JAX ``pendulum`` env
with tiny settings (``FLAGS``), so the tests see what a user sees: exit codes,
stderr, ``metrics.jsonl`` and the Orbax directories. Checkpoints are then
restored *in this process* with
``Checkpointer(run).restore(programs_of(Trainer(config)).abstract_state())`` and compared
leaf by leaf, bit for bit. Only the resume refusal and the resume of a finished
run call ``mjxmeta.cli.main`` in-process (neither trains).

Cost control (2 shared CPU cores): the subprocesses share a JAX persistent
compilation cache (the test session's, ``conftest.TEST_JAX_CACHE``, shared with the other test files, or
``$MJXMETA_TEST_JAX_CACHE`` if set, to reuse it across sessions), so only the
first training process compiles the chunk program: every run with ``FLAGS``
has the same program, ``--total-steps`` does not enter it. Run A (straight,
``X`` steps, the reference for the resume, kill, non-finite and eval tests)
runs in the main thread while the absurd-learning-rate run (a program of its
own) compiles beside it; once A is done, the other subprocess jobs (B, kill
during training, kill during a save, poisoned chunk, eval) are queued on a pool
of two worker threads and the tests collect their results. At most two of this
module's processes run at a time.

Sizes for ``FLAGS``: K = 2 candidates of N*T = 50 D0 steps plus E*H*(K+1) =
150 D1/R-hat steps = 250 env steps per iteration; ``--log-every 2`` makes a
chunk 2 iterations = 500 env steps, so X = 2000 is 4 chunks and X/2 = 1000 is a
chunk boundary. ``--checkpoint-every 2`` saves after every chunk; ``--keep 3``
(default) keeps the last three.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TEST_JAX_CACHE
from mjxmeta.runs.programs import programs_of

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "mjxmeta.cli"]
LAUNCHER = HERE / "_fault_launcher.py"  # mjxmeta.cli with faults injected (its docstring lists them)
FLAGS = ["--env", "pendulum", "--teacher", "meta", "--seeds", "2", "--hidden", "16,16", "--teacher-hidden", "16,16",
         "--batch-size", "32", "--buffer-size", "20000", "--rollout-steps", "50", "--return-horizon", "50",
         "--log-every", "2", "--eval-envs", "2", "--no-progress", "--checkpoint-every", "2",
         "--eval-every", "1"]  # every log point evaluates: a half run's last point would otherwise add one
SEEDS = (0, 1)
STEPS_PER_ITERATION = 250
X = 2000                 # 8 iterations = 4 chunks
HALF = X // 2            # 4 iterations: the end of chunk 2
BIG = 400 * STEPS_PER_ITERATION  # budget of the runs that get killed (never reached)
TIMEOUT = 900            # seconds, per subprocess (a hang fails instead of blocking the suite)
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax 0.12.8: atomicity_types.TMP_DIR_SUFFIX

# Non-finite run from an absurd learning rate: Adam moves each weight by up to lr
# per step, so with lr = 1e3 (the largest student lr config.py accepts) and a
# 3-layer critic without LayerNorm, observation normalization or L2, Q (a product
# of 3 weight matrices) and its squared TD error overflow float32 within the
# first chunk. Measured (meta teacher, log_every=1): lr 1e3 on 16x3 or 16x4
# critics and lr >= 30 on 16x4 diverge in iteration 1; lr <= 20 spikes in
# iteration 1 (tiny buffer) and then trains normally; 16x2 without LayerNorm
# never overflows (its ReLUs die first). A real divergence therefore cannot be
# placed in a later chunk here; ``_fault_launcher.py`` (``POISON_CHUNK``) injects one for that
# case. The ``gaussian`` teacher keeps this run's separate compile small.
NONFINITE_FLAGS = ["--env", "pendulum", "--teacher", "gaussian", "--seeds", "2", "--hidden", "16,16,16",
                   "--batch-size", "32", "--buffer-size", "20000", "--rollout-steps", "50", "--log-every", "2",
                   "--eval-envs", "2", "--no-progress", "--checkpoint-every", "2", "--no-layer-norm",
                   "--no-normalize-observations", "--critic-l2", "0", "--actor-lr", "1e3", "--critic-lr", "1e3"]
NONFINITE_STEPS = 20 * 50  # 20 iterations of N*T = 50 env steps

RESUMED = re.compile(r"resumed (?P<run>\S+) at iteration (?P<iteration>\d+) \((?P<env_steps>\d+) env steps\)")
TABLE_ROW = re.compile(r"^\| (?P<seed>\d+) \| (?P<ret>-?\d+(?:\.\d+)?) \|$", re.M)
NONFINITE = re.compile(r"non-finite (?P<quantity>.+?) in seed (?P<seed>\d+) at "
                       r"(?:iteration (?P<iteration>\d+)|the chunk of iterations (?P<lo>\d+)\.\.(?P<hi>\d+))")


# ------------------------------------------------------------------ helpers
class Run:
    """A finished subprocess run: its directory and captured output."""

    def __init__(self, path: Path, *procs: subprocess.CompletedProcess, seconds: float = 0.0):
        self.path, self.procs, self.seconds = path, procs, seconds

    @property
    def last(self) -> subprocess.CompletedProcess:
        return self.procs[-1]


def _cmd(args) -> list[str]:
    return [str(a) for a in args]


def run_proc(args, env, cwd, extra_env=None) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(args), env={**env, **(extra_env or {})}, cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT)


def mjx(*args, env, cwd, extra_env=None) -> subprocess.CompletedProcess:
    """``mjxmeta ARGS`` in a subprocess."""
    return run_proc([*CLI, *args], env, cwd, extra_env)


def check_ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"exit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    return p


def finalized_steps(run: Path) -> list[int]:
    """Steps Orbax has committed (renamed from ``<step>.orbax-checkpoint-tmp`` to ``<step>``)."""
    d = run / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit()) if d.is_dir() else []


def tmp_dirs(run: Path) -> list[str]:
    d = run / "checkpoints"
    return sorted(p.name for p in d.iterdir() if TMP_SUFFIX in p.name) if d.is_dir() else []


def metrics_rows(run: Path) -> list[dict]:
    """All rows of ``metrics.jsonl``; fails on a torn or unparsable line."""
    text = (run / "metrics.jsonl").read_text()
    assert text == "" or text.endswith("\n"), "metrics.jsonl ends with a torn line"
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"metrics.jsonl line {n} is torn/unparsable: {line!r}") from e
    return rows


def without_wall(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def assert_each_log_point_once(rows: list[dict], last_iteration: int) -> None:
    keys = [(r["iteration"], r["seed"]) for r in rows]
    dup = [k for k, n in collections.Counter(keys).items() if n > 1]
    assert not dup, f"log points written more than once: {dup}"
    expected = [(i, s) for i in range(2, last_iteration + 1, 2) for s in SEEDS]
    assert keys == expected, f"metrics.jsonl has log points {keys}, expected {expected}"


def table_returns(stdout: str) -> dict[int, float]:
    """Per-seed returns from ``format_table`` output."""
    return {int(m["seed"]): float(m["ret"]) for m in TABLE_ROW.finditer(stdout)}


@functools.lru_cache(maxsize=None)
def _abstract(config):
    from mjxmeta.algo.trainer import Trainer

    return programs_of(Trainer(config)).abstract_state()


def restore(run: Path, steps=None) -> dict[int, tuple]:
    """{step: (state, record)} for ``steps`` (default: every committed step), restored in this process."""
    from mjxmeta.runs.checkpoint import Checkpointer
    from mjxmeta.runs.loop import load_config

    config = load_config(run)
    ckpt = Checkpointer(run, config.keep)
    try:
        steps = ckpt.all_steps() if steps is None else steps
        return {s: ckpt.restore(_abstract(config), s) for s in steps}
    finally:
        ckpt.close()


def leaves_with_names(tree) -> tuple[list[tuple[str, np.ndarray]], object]:
    import jax

    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(p), np.asarray(jax.device_get(x))) for p, x in flat], treedef


def assert_bit_identical(a, b, what: str) -> int:
    """Same tree structure and every leaf the same dtype, shape and bytes. Returns the leaf count."""
    la, ta = leaves_with_names(a)
    lb, tb = leaves_with_names(b)
    assert ta == tb, f"{what}: tree structures differ"
    diff = [n for (n, x), (_, y) in zip(la, lb)
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes()]
    assert not diff, f"{what}: {len(diff)} of {len(la)} leaves differ, e.g. {diff[:8]}"
    return len(la)


def record_wo_wall(record: dict) -> dict:
    """The position fields of a checkpoint record (not wall_s, the config with its budget, nor checksums)."""
    return {k: record[k] for k in ("iteration", "chunk", "env_steps")}


def assert_same_as_reference(run: Path, ref: Path, steps) -> None:
    """Checkpoints ``steps`` of ``run`` equal those of the straight reference run bit for bit."""
    got, want = restore(run, steps), restore(ref, steps)
    for s in steps:
        assert_bit_identical(got[s][0], want[s][0], f"{run.name} vs {ref.name} at iteration {s}")
        assert record_wo_wall(got[s][1]) == record_wo_wall(want[s][1])


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------- subprocess jobs
# Plain functions run in the worker threads of the ``lane`` pool; they return data, the tests assert.
def job_nonfinite_lr(workdir: Path, env) -> tuple[Path, subprocess.CompletedProcess, float]:
    run = workdir / "NaN"
    t = time.perf_counter()
    p = mjx("train", *NONFINITE_FLAGS, "--total-steps", NONFINITE_STEPS, "--run-dir", run, env=env, cwd=workdir)
    return run, p, time.perf_counter() - t


def job_poison(workdir: Path, env) -> tuple[Path, subprocess.CompletedProcess]:
    run = workdir / "P"
    p = run_proc([sys.executable, LAUNCHER, "train", *FLAGS, "--total-steps", X,
                  "--run-dir", run], env, workdir, {"POISON_CHUNK": "3", "POISON_SEED": "1"})
    return run, p


def job_kill_during_save(workdir: Path, env) -> tuple[Path, dict, subprocess.CompletedProcess]:
    """kill -9 while Orbax is parked in the commit of the 2nd save; snapshot; resume to 6 iterations."""
    from mjxmeta.runs.checkpoint import Checkpointer

    run = workdir / "W"
    lines: queue.Queue[str] = queue.Queue()
    markers: list[list[str]] = []
    with open(workdir / "W.stderr", "w") as err:
        proc = subprocess.Popen(
            _cmd([sys.executable, LAUNCHER, "train", *FLAGS, "--total-steps", BIG,
                  "--run-dir", run]),
            env={**env, "SLOW_SAVE_NTH": "2", "SLOW_SAVE_SECONDS": "600"}, cwd=workdir,
            stdout=subprocess.PIPE, stderr=err, text=True)
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
        try:
            deadline = time.monotonic() + TIMEOUT
            while len(markers) < 2:
                try:
                    line = lines.get(timeout=0.5)
                except queue.Empty:
                    if proc.poll() is not None:
                        raise RuntimeError(f"launcher ended (exit {proc.returncode}) after markers {markers}")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"only markers {markers} before the timeout")
                    continue
                if line.startswith("SAVE_STARTED"):
                    markers.append(line.split())
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            _kill(proc)
    tmp = Path(markers[1][2])
    ckpt = Checkpointer(run)
    try:
        orbax_steps, orbax_latest = ckpt.all_steps(), ckpt.latest_step()
    finally:
        ckpt.close()
    snapshot = dict(returncode=proc.returncode, markers=markers, tmp=tmp, tmp_is_dir=tmp.is_dir(),
                    tmp_has_state=(tmp / "state").is_dir(), tmp_committed=(tmp / "commit_success.txt").exists(),
                    finalized=finalized_steps(run), tmp_dirs=tmp_dirs(run),
                    orbax_steps=orbax_steps, orbax_latest=orbax_latest)
    p = mjx("train", "--resume", run, "--total-steps", 6 * STEPS_PER_ITERATION, "--no-progress", env=env,
            cwd=workdir)
    return run, snapshot, p


def job_b(workdir: Path, env) -> Run:
    """Run B: the same flags stopped at ``X/2`` (one process), resumed to ``X`` (a second process)."""
    run = workdir / "B"
    first = mjx("train", *FLAGS, "--total-steps", HALF, "--run-dir", run, env=env, cwd=workdir)
    if first.returncode:
        return Run(run, first)
    second = mjx("train", "--resume", run, "--total-steps", X, "--no-progress", env=env, cwd=workdir)
    return Run(run, first, second)


def job_kill_during_training(workdir: Path, env) -> tuple[Path, dict, subprocess.CompletedProcess]:
    """A long run, kill -9 once two checkpoints are committed; snapshot; resume for one more chunk."""
    run = workdir / "K"
    with open(workdir / "K.stderr", "w") as err:
        proc = subprocess.Popen(_cmd([*CLI, "train", *FLAGS, "--total-steps", BIG, "--run-dir", run]),
                                env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + TIMEOUT
            while len(finalized_steps(run)) < 2:
                if proc.poll() is not None:
                    raise RuntimeError(f"run ended (exit {proc.returncode}) before two checkpoints")
                if time.monotonic() > deadline:
                    raise TimeoutError("no two checkpoints before the timeout")
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            _kill(proc)
    n = max(finalized_steps(run))
    # Iterations whose log row was written before the kill (a chunk's rows are appended before its save).
    logged = [json.loads(line)["iteration"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if line.strip().endswith("}")]
    snapshot = dict(returncode=proc.returncode, n=n, logged=max(logged), finalized=finalized_steps(run),
                    tmp_dirs=tmp_dirs(run))
    p = mjx("train", "--resume", run, "--total-steps", (n + 2) * STEPS_PER_ITERATION, "--no-progress",
            env=env, cwd=workdir)
    return run, snapshot, p


def job_eval(workdir: Path, env, a: Path):
    """``mjxmeta eval A`` on 1 device; then the 2-device helper (restore, re-save sharded, eval)."""
    p1 = mjx("eval", a, "--episodes", "3", env=env, cwd=workdir)
    resaved, npz = workdir / "A_saved_from_2_devices", workdir / "A_2dev_leaves.npz"
    p2 = run_proc([sys.executable, HERE / "_reshard_helper.py", a, resaved, npz, 3], env, workdir,
                  {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    return p1, p2, resaved, npz


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ckpt")


@pytest.fixture(scope="module")
def sub_env(workdir) -> dict[str, str]:
    """Environment of every subprocess: 1 CPU device, shared persistent compilation cache."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
               JAX_COMPILATION_CACHE_DIR=os.environ.get("MJXMETA_TEST_JAX_CACHE") or TEST_JAX_CACHE,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


@pytest.fixture(scope="module")
def lane():
    """Two worker threads for the subprocess jobs; {job name: Future}, filled by ``run_a``."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="job")
    jobs: dict[str, concurrent.futures.Future] = {}
    yield pool, jobs
    pool.shutdown(wait=True, cancel_futures=True)


def _selected(request, *prefixes: str) -> bool:
    return any(item.name.startswith(prefixes) for item in request.session.items)


@pytest.fixture(scope="module")
def run_a(request, lane, workdir, sub_env) -> Run:
    """Reference run A: ``X`` steps straight, in one process (this thread). Queues the jobs.

    The absurd-lr run (its own program) compiles beside A; every other job
    reuses A's compiled program from the cache, so they are queued after A.
    """
    pool, jobs = lane
    if _selected(request, "test_nonfinite_from_an_absurd"):
        jobs["nonfinite_lr"] = pool.submit(job_nonfinite_lr, workdir, sub_env)
    run = workdir / "A"
    t = time.perf_counter()
    p = check_ok(mjx("train", *FLAGS, "--total-steps", X, "--run-dir", run, env=sub_env, cwd=workdir))
    a = Run(run, p, seconds=time.perf_counter() - t)
    if _selected(request, "test_resume_"):
        jobs["b"] = pool.submit(job_b, workdir, sub_env)
    if _selected(request, "test_kill_9_during_training"):
        jobs["kill_during_training"] = pool.submit(job_kill_during_training, workdir, sub_env)
    if _selected(request, "test_kill_9_during_a_checkpoint"):
        jobs["kill_during_save"] = pool.submit(job_kill_during_save, workdir, sub_env)
    if _selected(request, "test_nonfinite_in_a_later"):
        jobs["poison"] = pool.submit(job_poison, workdir, sub_env)
    if _selected(request, "test_eval_"):
        jobs["eval"] = pool.submit(job_eval, workdir, sub_env, run)
    return a


@pytest.fixture
def job(lane, run_a):
    """``job(name)``: the result of a queued job (re-raises its exception)."""
    return lambda name: lane[1][name].result(timeout=6 * TIMEOUT)


@pytest.fixture(scope="module")
def run_b(lane, run_a) -> Run:
    b = lane[1]["b"].result(timeout=6 * TIMEOUT)
    for p in b.procs:
        check_ok(p)
    return b


# ------------------------------------------------------------------ tests
def test_flags_have_the_assumed_sizes():
    from mjxmeta.cli import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args(["train", *FLAGS, "--total-steps", str(X)]))
    assert config.steps_per_iteration == STEPS_PER_ITERATION
    assert config.num_iterations == X // STEPS_PER_ITERATION == 8
    assert (X // 2) % (STEPS_PER_ITERATION * config.log_every) == 0  # X/2 is a chunk boundary
    assert config.keep == 3


def test_unwritable_run_dir_and_full_disk(tmp_path, workdir, sub_env, monkeypatch):
    from mjxmeta.cli import build_parser, config_from_args
    from mjxmeta.algo.config import ConfigError
    from mjxmeta.runs.loop import check_free_space, prepare_run_dir, train

    # Not enough free space for keep + 1 checkpoints.
    with pytest.raises(ConfigError) as e:
        check_free_space(tmp_path, state_bytes=2**62, keep=3)
    assert e.value.field == "run_dir" and str(tmp_path) in str(e.value) and "MiB free" in str(e.value)
    check_free_space(tmp_path, state_bytes=1, keep=3)  # fits

    # Unwritable: the parent is a regular file (chmod does not stop root).
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    config = config_from_args(build_parser().parse_args(["train", *FLAGS]))
    with pytest.raises(ConfigError) as e:
        prepare_run_dir(blocker / "run", config)
    assert e.value.field == "run_dir" and str(blocker / "run") in str(e.value)
    p = mjx("train", *FLAGS, "--run-dir", blocker / "run", env=sub_env, cwd=workdir)
    assert p.returncode == 2 and "config field 'run_dir'" in p.stderr, p.stderr[-2000:]

    # A "full disk" stops train() before it writes config.json, a checkpoint or compiles anything.
    monkeypatch.setattr("mjxmeta.runs.loop.shutil.disk_usage", lambda path: type("Usage", (), {"free": 1024})())
    run = prepare_run_dir(tmp_path / "full", config)
    with pytest.raises(ConfigError) as e:
        train(config, run, progress=False)
    assert e.value.field == "run_dir" and "MiB free" in str(e.value)
    assert os.listdir(run) == []


def test_resume_in_a_new_process_is_bit_identical_to_a_straight_run(run_a, run_b):
    a, b = run_a.path, run_b.path
    first, second = run_b.procs
    assert "resumed" not in first.stderr
    m = RESUMED.search(second.stderr)
    assert m, second.stderr
    assert (int(m["iteration"]), int(m["env_steps"])) == (HALF // STEPS_PER_ITERATION, HALF)

    # keep=3: A saved 2,4,6,8; B saved 2,4 in the first process and 6,8 in the second.
    assert finalized_steps(a) == finalized_steps(b) == [4, 6, 8]
    assert tmp_dirs(a) == tmp_dirs(b) == []
    ra, rb = restore(a), restore(b)
    for step in (4, 6, 8):
        (sa, rec_a), (sb, rec_b) = ra[step], rb[step]
        n = assert_bit_identical(sa, sb, f"A vs B at iteration {step}")
        assert n > 50
        assert record_wo_wall(rec_a) == record_wo_wall(rec_b) == {
            "iteration": step, "chunk": step // 2, "env_steps": step * STEPS_PER_ITERATION}
        assert np.asarray(sa.iteration).tolist() == [step, step]
        assert np.asarray(sa.env_steps).tolist() == [step * STEPS_PER_ITERATION] * 2
    # Not vacuous: keys, buffer, env states, nets and normalizer are all compared, and all change.
    s4, s8 = ra[4][0], ra[8][0]
    for part in ("key", "buffer", "env_state", "student", "teacher", "normalizer"):
        la, _ = leaves_with_names(getattr(s4, part))
        lb, _ = leaves_with_names(getattr(s8, part))
        assert la, part
        assert any(x.tobytes() != y.tobytes() for (_, x), (_, y) in zip(la, lb)), f"{part} unchanged 4 -> 8"
    assert np.any(np.asarray(s4.buffer.data.experience) != 0)

    rows_a, rows_b = metrics_rows(a), metrics_rows(b)
    assert_each_log_point_once(rows_b, 8)
    assert_each_log_point_once(rows_a, 8)
    assert without_wall(rows_a) == without_wall(rows_b)
    assert table_returns(run_a.last.stdout) == table_returns(second.stdout)
    assert len(table_returns(second.stdout)) == 2
    sizes = {s: sum(f.stat().st_size for f in (a / "checkpoints" / str(s)).rglob("*") if f.is_file()) for s in (4, 8)}
    print(f"\nrun A: {run_a.seconds:.1f} s (cold compile); checkpoint bytes on disk {sizes}")


def test_resume_refuses_a_changed_config(run_b, capsys):
    import mjxmeta.cli

    b = run_b.path
    before = {name: (b / name).read_bytes() for name in ("config.json", "metrics.jsonl")}
    steps = finalized_steps(b)
    # In-process (the console script is ``sys.exit(main())``); refused before any compile.
    code = mjxmeta.cli.main(["train", "--resume", str(b), "--seeds", "3", "--gamma", "0.9", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 4, err[-2000:]
    assert "cannot resume" in err
    assert "seeds: 2 -> 3" in err
    assert "student.gamma: 0.99 -> 0.9" in err
    assert "total_steps" not in err.split("cannot resume")[1]
    assert {name: (b / name).read_bytes() for name in before} == before
    assert finalized_steps(b) == steps and tmp_dirs(b) == []


def test_resume_of_a_finished_run_reports_its_final_evaluation(run_a, run_b, capsys):
    """Nothing left to train: exit 0 with the same final table (was a ZeroDivisionError in format_table)."""
    import mjxmeta.cli

    b = run_b.path
    before = {name: (b / name).read_bytes() for name in ("config.json", "metrics.jsonl")}
    code = mjxmeta.cli.main(["train", "--resume", str(b), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    assert "resumed" in err and "at iteration 8" in err
    assert table_returns(out) == table_returns(run_a.last.stdout) and len(table_returns(out)) == 2
    assert {name: (b / name).read_bytes() for name in before} == before
    assert finalized_steps(b) == [4, 6, 8] and tmp_dirs(b) == []


def test_resume_sees_a_flag_given_with_its_parser_default(tmp_path):
    from mjxmeta.cli import build_parser, config_from_args
    from mjxmeta.algo.config import to_dict

    base = config_from_args(build_parser().parse_args(["train", *FLAGS]))  # seeds=2
    (tmp_path / "config.json").write_text(json.dumps(to_dict(base)))
    a = build_parser().parse_args(["train", "--resume", str(tmp_path), "--seeds", "4"])  # 4 = parser default
    assert config_from_args(a, base=base).seeds == 4  # then train() would refuse: "seeds: 2 -> 4"


def test_kill_9_during_training_resumes_from_the_latest_complete_checkpoint(job, run_a, record_property):
    run, snap, p = job("kill_during_training")
    assert snap["returncode"] == -signal.SIGKILL
    n = snap["n"]
    cost = snap["logged"] - n
    record_property("kill_cost_iterations", cost)
    print(f"\nkill -9 during training: latest committed checkpoint {n} (committed: {snap['finalized']}), last "
          f"iteration logged before the kill {snap['logged']}, cost {cost} iterations (+ the chunk in flight); "
          f"uncommitted tmp dirs at the kill: {snap['tmp_dirs']}")
    assert n >= 4 and cost >= 0

    check_ok(p)
    m = RESUMED.search(p.stderr)
    assert m, p.stderr[-2000:]
    assert (int(m["iteration"]), int(m["env_steps"])) == (n, n * STEPS_PER_ITERATION)
    target = n + 2
    assert target in finalized_steps(run)
    assert tmp_dirs(run) == []
    rows = metrics_rows(run)
    assert_each_log_point_once(rows, target)
    # Same program, same seeds: the killed-and-resumed run is the straight run A.
    rows_a = metrics_rows(run_a.path)
    upto = min(target, 8)
    assert without_wall([r for r in rows if r["iteration"] <= upto]) == \
        without_wall([r for r in rows_a if r["iteration"] <= upto])
    if target in finalized_steps(run_a.path):
        assert_same_as_reference(run, run_a.path, [target])


def check_nonfinite_stop(run: Path, returncode: int, stderr: str) -> tuple[re.Match, int]:
    """The contract of the non-finite guard; returns (message match, last good iteration)."""
    import jax

    assert returncode == 3, stderr[-3000:]
    m = NONFINITE.search(stderr)
    assert m, stderr[-3000:]
    assert int(m["seed"]) in SEEDS and m["quantity"].strip()
    bad = int(m["iteration"] or m["hi"])
    good = (bad - 1) // 2 * 2  # end of the last chunk before the poisoned one (log_every 2)
    if m["iteration"] is None:
        assert (int(m["lo"]), int(m["hi"])) == (good + 1, good + 2)
    last = re.search(r"Last verified checkpoint: (none|iteration (\d+))", stderr)
    assert last, stderr[-3000:]

    steps = finalized_steps(run)
    assert tmp_dirs(run) == []
    assert all(s <= good for s in steps), f"checkpoint after the last good chunk {good}: {steps}"
    assert (last[2] and int(last[2])) == (max(steps) if steps else None)
    for step, (state, record) in restore(run).items():
        assert record["iteration"] == step
        floats = [x for x in jax.tree.leaves(state) if np.issubdtype(x.dtype, np.floating)]
        assert all(bool(np.all(np.isfinite(np.asarray(x)))) for x in floats), f"checkpoint {step} is not finite"

    rows = metrics_rows(run)
    assert_each_log_point_once(rows, good)  # nothing from the poisoned chunk
    assert all(np.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    return m, good


def test_nonfinite_from_an_absurd_learning_rate_exits_3(job):
    run, p, seconds = job("nonfinite_lr")
    m, good = check_nonfinite_stop(run, p.returncode, p.stderr)
    print(f"\nabsurd lr: exit 3 after {seconds:.1f} s: {m[0]} (last good iteration {good}, "
          f"checkpoints {finalized_steps(run)})")


def test_nonfinite_in_a_later_chunk_keeps_only_the_good_checkpoints(job, run_a):
    run, p = job("poison")
    assert "POISONED chunk=3 seed=1" in p.stdout
    m, good = check_nonfinite_stop(run, p.returncode, p.stderr)
    assert good == 4 and int(m["seed"]) == 1, m[0]
    assert finalized_steps(run) == [2, 4]
    assert "Last verified checkpoint: iteration 4" in p.stderr
    # What was kept is exactly the straight run's state and log.
    assert_same_as_reference(run, run_a.path, [4])
    assert without_wall(metrics_rows(run)) == without_wall([r for r in metrics_rows(run_a.path)
                                                            if r["iteration"] <= 4])
    print(f"\npoisoned chunk 3: {m[0]}")


def test_kill_9_during_a_checkpoint_write_keeps_the_previous_checkpoint(job, run_a):
    run, snap, p = job("kill_during_save")
    # At the kill, Orbax was parked in the commit of save #2: data written to 4.orbax-checkpoint-tmp, not renamed.
    assert snap["returncode"] == -signal.SIGKILL
    assert [mk[1] for mk in snap["markers"]] == ["2", "4"]
    assert snap["tmp"].name == "4" + TMP_SUFFIX
    assert snap["tmp_is_dir"] and snap["tmp_has_state"] and not snap["tmp_committed"]
    assert snap["finalized"] == [2] and snap["tmp_dirs"] == ["4" + TMP_SUFFIX]
    assert snap["orbax_steps"] == [2] and snap["orbax_latest"] == 2

    check_ok(p)
    m = RESUMED.search(p.stderr)
    assert m and (int(m["iteration"]), int(m["env_steps"])) == (2, 2 * STEPS_PER_ITERATION), p.stderr[-2000:]
    assert finalized_steps(run) == [2, 4, 6]
    assert tmp_dirs(run) == []
    rows = metrics_rows(run)
    assert_each_log_point_once(rows, 6)
    assert without_wall(rows) == without_wall([r for r in metrics_rows(run_a.path) if r["iteration"] <= 6])
    assert_same_as_reference(run, run_a.path, [4, 6])


def test_eval_prints_per_seed_returns_and_restores_under_another_device_count(job, run_a):
    p1, p2, resaved, npz = job("eval")
    # 1 device (as trained).
    check_ok(p1)
    assert "checkpoint at iteration 8, 3 episodes per seed" in p1.stdout
    r1 = table_returns(p1.stdout)
    assert sorted(r1) == list(SEEDS) and all(np.isfinite(list(r1.values())))

    # 2 devices: the seed axis is sharded over both devices for the restore and the eval.
    check_ok(p2)
    assert "DEVICES 2 SHARDING NamedSharding SHARDING_DEVICES 2" in p2.stdout, p2.stdout
    assert "checkpoint at iteration 8, 3 episodes per seed" in p2.stdout
    r2 = table_returns(p2.stdout)
    assert sorted(r2) == list(SEEDS)
    for s in SEEDS:
        assert r2[s] == pytest.approx(r1[s], rel=1e-3)
    print("\n1 device: " + str(r1) + "  2 devices: " + str(r2) + "\n"
          + "\n".join(line for line in p2.stdout.splitlines() if line.startswith(("SAVE_", "RESTORED"))))

    # The 2-device restore read exactly the bytes a 1-device restore reads.
    state_a, _ = restore(run_a.path, [8])[8]
    leaves, _ = leaves_with_names(state_a)
    with np.load(npz) as z:
        assert len(z.files) == len(leaves)
        other = [z[f"arr_{i}"] for i in range(len(leaves))]
    diff = [n for (n, x), y in zip(leaves, other) if x.dtype != y.dtype or x.tobytes() != y.tobytes()]
    assert not diff, f"2-device restore differs in {diff[:8]}"

    # Reverse: a checkpoint written from 2-device-sharded arrays restores on 1 device bit for bit.
    assert finalized_steps(resaved) == [8]
    assert_bit_identical(restore(resaved, [8])[8][0], state_a, "saved from 2 devices vs A")
