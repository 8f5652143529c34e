"""``mjxmeta bench``: throughput, iteration profile, memory and a roofline projection.

For every cell of the product envs x teachers x presets x S x K x N x replay
capacities it measures, in one process:

* **compile**: lowering + XLA compile of the fused chunk (``Programs.run_chunk``,
  ``log_every`` iterations in one ``lax.scan``, vmapped over S seeds), wall
  seconds and the process's CPU seconds (all threads; on a loaded machine the
  wall time grows with the load, the CPU time much less);
* **chunk**: steady-state env steps/s and student updates/s of the fused chunk
  (total over seeds and per seed), the median over ``--rounds`` rounds; the
  rounds alternate over the cells (the order reversed every other round), so
  ratios between cells of one call are measured under the same load;
* **profile**: the share of an iteration spent in D0 rollout / look-ahead /
  R-hat + D1 (with the teacher step) / replay (insert + sampling) / student
  updates, each piece jitted and vmapped over S on its own and timed with
  ``block_until_ready`` (sum of pieces vs the fused iteration is reported as
  ``fused / sum``);
* **FLOP/s**: the student update's achieved FLOP/s (XLA's FLOP count of one
  update, vmapped over S, times updates per second) next to a dense 256^3
  float32 matmul measured in the same process;
* **cost / roofline**: FLOPs and bytes accessed per iteration from XLA's cost
  analysis and a *projection* of the chunk on one A100, H100 and TPU v5e
  (below);
* **train**: a whole ``mjxmeta train`` run of the same config (evaluation,
  metrics.jsonl, TensorBoard, checkpoints included) in a temporary run
  directory: time to the first log point, steady env steps/s between log
  points and end-to-end env steps/s (after the first log point, final
  checkpoint included);
* **peak RSS** of the process (``resource.getrusage``; one process serves all
  cells, so it is the maximum so far).

XLA's cost analysis counts the body of a ``while`` loop (``lax.scan``) once,
whatever its trip count (checked: a 10-step scan reports the FLOPs of one
step). The compiled chunk therefore reports one iteration with every inner
loop counted once. Per iteration we add the inner loop bodies' remaining trips,
each body's cost taken from its own compile:

    cost/iter = chunk + (T-1) d0_step + (U-1) update + (L-1) lookahead_update
                + (H-1) rhat_step          (L, H only for meta teachers)

XLA also counts a gather as reading its whole operand, so each replay sample
would "read" the whole buffer; the projection counts the rows a sample really
moves (``2 * batch * row bytes``) for every replay gather of an iteration (one
per student update, plus one per look-ahead update when the look-ahead mixes
buffer rows in) and the JSON keeps XLA's raw figure too.

Roofline projection (a projection, not a measurement): time per iteration
>= max(FLOPs / peak FLOP/s, bytes / HBM bandwidth, trips * 10 us), with vendor
peak figures (:data:`ACCELERATORS`) and an *assumed* 10 us per sequential loop
trip (T + U, plus L + H for meta teachers, per iteration; the K candidates and
S seeds run side by side) for kernel launches and loop control, which bound
small networks on accelerators long before FLOPs or bytes do. Read it as what
to expect before anyone measures, not as a result.

Output: one markdown table per section on stdout and everything in ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib.metadata
import itertools
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from mjxmeta.runs.programs import programs_of
from mjxmeta.algo.config import (ENV_NAMES, META_TEACHERS, PRESET_NAMES, TEACHER_NAMES, Config, ConfigError,
                            MetaConfig, TeacherConfig, student_preset, validate)

# Vendor peak figures for the roofline projection (dense, no sparsity).
ACCELERATORS = {
    "A100-SXM4-80GB": dict(
        flops=156e12, bandwidth=2.039e12,
        source="NVIDIA A100 datasheet: TF32 tensor core 156 TFLOP/s (JAX's default precision for float32 "
               "matmuls on Ampere; plain FP32 19.5 TFLOP/s), HBM2e 2,039 GB/s"),
    "H100-SXM5": dict(
        flops=494.7e12, bandwidth=3.35e12,
        source="NVIDIA H100 datasheet: TF32 tensor core 494.7 TFLOP/s dense (plain FP32 67 TFLOP/s), "
               "HBM3 3.35 TB/s"),
    "TPU-v5e": dict(
        flops=197e12, bandwidth=819e9,
        source="Google Cloud TPU v5e spec: 197 TFLOP/s bf16 (JAX's default precision for float32 matmuls "
               "on TPU is one bf16 pass), HBM2 819 GB/s"),
}
PIECES = ("d0", "lookahead", "rhat_d1", "replay", "updates")
PIECE_LABELS = {"d0": "D0 rollout", "lookahead": "look-ahead", "rhat_d1": "R̂ + D1 + teacher step",
                "replay": "replay insert + sample", "updates": "student updates"}
MATMUL_N = 256
# Assumed cost of one sequential loop trip (a few fused kernels plus loop control) on a GPU/TPU: an
# assumption for the latency floor of the projection, not a measurement.
TRIP_LATENCY_S = 10e-6


# ----------------------------------------------------------------- helpers
def machine() -> dict[str, Any]:
    """nproc, CPU model, load averages and uptime of this machine."""
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    uptime = None
    with contextlib.suppress(OSError, ValueError):
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    return {"nproc": os.cpu_count(), "cpu": model, "loadavg": list(os.getloadavg()), "uptime_s": uptime,
            "python": platform.python_version(), "platform": platform.platform()}


def versions(packages: Sequence[str] = ("jax", "jaxlib", "brax", "mujoco", "mujoco-mjx", "flax", "optax",
                                         "orbax-checkpoint")) -> dict[str, str | None]:
    """Installed versions of ``packages`` (None when absent)."""
    out: dict[str, str | None] = {}
    for p in packages:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = None
    return out


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cost(compiled) -> dict[str, float]:
    """{'flops', 'bytes'} of a compiled executable from XLA's cost analysis (loop bodies counted once)."""
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else {}
    ca = ca or {}
    return {"flops": float(ca.get("flops", 0.0)), "bytes": float(ca.get("bytes accessed", 0.0))}


def timed(fn: Callable[[], Any], reps: int) -> float:
    """Median wall seconds of ``fn()`` (result blocked on) over ``reps`` calls after one warm-up call."""
    import jax

    jax.block_until_ready(fn())
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def matmul_flops(n: int = MATMUL_N, inner: int = 20, reps: int = 7) -> float:
    """Achieved float32 FLOP/s of a jitted dense n x n @ n x n matmul (2 n^3 FLOPs), median of reps."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)

    def many():
        out = None
        for _ in range(inner):
            out = mm(a, b)
        return out

    return 2.0 * n ** 3 * inner / timed(many, reps)


def roofline(flops: float, bytes_: float) -> dict[str, dict[str, float]]:
    """Per accelerator: compute- and memory-bound seconds for (flops, bytes) and the bound."""
    out = {}
    for name, acc in ACCELERATORS.items():
        t_c, t_m = flops / acc["flops"], bytes_ / acc["bandwidth"]
        out[name] = {"compute_s": t_c, "memory_s": t_m, "time_s": max(t_c, t_m),
                     "bound": "compute" if t_c >= t_m else "memory"}
    return out


# ------------------------------------------------------------------ cells
@dataclasses.dataclass(frozen=True)
class Cell:
    """One benchmark configuration."""

    env: str
    teacher: str
    preset: str
    seeds: int
    candidates: int
    num_envs: int
    buffer_size: int

    @property
    def name(self) -> str:
        k = f" K={self.candidates}" if self.teacher in META_TEACHERS else ""
        return (f"{self.env} {self.teacher} {self.preset} S={self.seeds}{k} N={self.num_envs} "
                f"B={self.buffer_size:.0e}".replace("e+0", "e"))


def cell_config(cell: Cell, log_every: int, chunks: int, eval_envs: int | None = None) -> Config:
    """Validated Config of ``cell`` with a budget of ``chunks`` chunks of ``log_every`` iterations.

    Raises:
      ConfigError: naming the invalid field.
    """
    base = Config(env=cell.env, seeds=cell.seeds, num_envs=cell.num_envs, log_every=log_every,
                  student=student_preset(cell.preset, buffer_size=cell.buffer_size),
                  teacher=TeacherConfig(name=cell.teacher), meta=MetaConfig(candidates=cell.candidates))
    if eval_envs is not None:
        base = dataclasses.replace(base, eval_envs=eval_envs)
    validate(base)
    return validate(dataclasses.replace(base, total_steps=chunks * log_every * base.steps_per_iteration))


@dataclasses.dataclass
class Bench:
    """A cell's trainer, compiled chunk and live state."""

    cell: Cell
    config: Config
    trainer: Any
    chunk: Any
    state: Any
    result: dict[str, Any]


def setup(cell: Cell, log_every: int) -> Bench:
    """Builds the trainer, compiles the chunk (timed) and runs one warm-up chunk."""
    import jax

    from mjxmeta.algo.trainer import Trainer

    config = cell_config(cell, log_every, chunks=1000)
    tr = Trainer(config)
    t0 = time.perf_counter()
    state = jax.block_until_ready(programs_of(tr).shard(programs_of(tr).init_seeds(tr.seed_keys())))
    t_init = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    compiled = programs_of(tr).run_chunk.lower(state).compile()
    t_compile, cpu_compile = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    state, _ = compiled(state)
    jax.block_until_ready(state)
    t_first = time.perf_counter() - t0
    c = config
    result = {"cell": dataclasses.asdict(cell), "name": cell.name, "log_every": log_every,
              "steps_per_iteration": c.steps_per_iteration, "updates_per_iteration": c.student_updates,
              "rollout_steps": c.rollout_steps, "return_horizon": c.meta.return_horizon if c.is_meta else 0,
              "lookahead_updates": c.lookahead_updates if c.is_meta else 0,
              "init_s": t_init, "compile_s": t_compile, "compile_cpu_s": cpu_compile, "first_chunk_s": t_first,
              "chunk_cost_loops_once": cost(compiled)}
    return Bench(cell, config, tr, compiled, state, result)


def time_chunks(b: Bench, chunks: int) -> float:
    """Seconds per chunk over ``chunks`` consecutive chunks (state donated and carried on)."""
    import jax

    t0 = time.perf_counter()
    for _ in range(chunks):
        b.state, _ = b.chunk(b.state)
    jax.block_until_ready(b.state)
    return (time.perf_counter() - t0) / chunks


def rates(config: Config, seconds_per_iteration: float) -> dict[str, float]:
    """Env steps/s and student updates/s, total over seeds and per seed."""
    s = config.seeds
    sps = config.steps_per_iteration / seconds_per_iteration
    ups = config.student_updates / seconds_per_iteration
    return {"env_steps_per_s": sps * s, "env_steps_per_s_per_seed": sps,
            "updates_per_s": ups * s, "updates_per_s_per_seed": ups}


# ---------------------------------------------------------------- profile
def _keys(key, s: int):
    import jax

    return jax.random.split(key, s)


def profile(b: Bench, reps: int) -> dict[str, Any]:
    """Times the pieces of one iteration, each jitted and vmapped over S on its own.

    Returns:
      {'seconds': {piece: s per iteration}, 'sum_s', 'share': {piece: fraction of sum},
       'update_flops': FLOPs of one update for all S seeds, 'update_flop_per_s'}.
    """
    import jax
    import jax.numpy as jnp

    from mjxmeta.algo import estimators

    tr, c = b.trainer, b.config
    u = c.student_updates
    vm = lambda f, **kw: jax.jit(jax.vmap(f), **kw)  # noqa: E731
    key = jax.random.PRNGKey(7)
    ks = lambda i: _keys(jax.random.fold_in(key, i), c.seeds)  # noqa: E731
    st = b.state
    sec: dict[str, float] = {}

    d0_fn = vm(tr.rollout_d0)
    sec["d0"] = timed(lambda: d0_fn(st, ks(0)), reps)
    _, _, d0, inputs, raw = d0_fn(st, ks(0))
    batches = [d0]
    if tr.teacher.is_meta:
        look_fn = vm(tr.look_ahead)
        sec["lookahead"] = timed(lambda: look_fn(st, d0, ks(1)), reps)
        primes = look_fn(st, d0, ks(1))

        def rhat(s, p, k, inp, r):
            returns, d1, _ = tr.returns_and_d1(s, p, k)
            rewards = estimators.meta_rewards(returns)
            grad, adv, ema = estimators.meta_gradient(tr.teacher, s.teacher, rewards, inp, r)
            teacher, _, _ = tr.teacher_update(s, dict(grad=grad, adv=adv, ema=ema, rewards=rewards))
            return teacher, d1

        rhat_fn = vm(rhat)
        sec["rhat_d1"] = timed(lambda: rhat_fn(st, primes, ks(2), inputs, raw), reps)
        batches.append(rhat_fn(st, primes, ks(2), inputs, raw)[1])
    else:
        sec["lookahead"] = sec["rhat_d1"] = 0.0

    # Replay: insert (state donated, as in the fused chunk) + U samples.
    insert_fn = vm(lambda s, *bs: tr.insert(s, *bs), donate_argnums=0)
    probe = jax.tree.map(jnp.copy, st)

    def insert_once():
        nonlocal probe
        probe = insert_fn(probe, *batches)
        return probe

    t_insert = timed(insert_once, reps)

    def sample_many(buf):
        def body(bf, _):
            bf, batch = tr.replay.sample(bf)
            return bf, batch
        return jax.lax.scan(body, buf, None, length=u)

    # The buffer is donated, as in the fused chunk, so the scan carries it in place instead of copying it.
    sample_fn = vm(sample_many, donate_argnums=0)
    sampled = None

    def sample_once():
        nonlocal probe, sampled
        buf, sampled = sample_fn(probe.buffer)
        probe = probe.replace(buffer=buf)
        return sampled

    t_sample = timed(sample_once, reps)
    sec["replay"] = t_insert + t_sample

    # Student updates on the pre-drawn batches (no sampling inside).
    def updates(student, norm, bs):
        pick = lambda i: (i + 1, jax.tree.map(lambda x: x[i], bs))  # noqa: E731
        new, _, _ = tr.student.update_many(student, norm, pick, jnp.zeros((), jnp.int32), u)
        return new

    upd_fn = vm(updates)
    sec["updates"] = timed(lambda: upd_fn(probe.student, probe.normalizer, sampled), reps)
    del probe

    # Evaluation at a log point (outside the chunk): the trainer's own jitted evaluate_seeds.
    t_eval = timed(lambda: programs_of(tr).evaluate_seeds(st, tr.eval_keys(0)), reps)

    one_batch = jax.tree.map(lambda x: x[:, 0], sampled)
    one_update = lambda s, n, bt: tr.student.update_many(s, n, lambda c: (c, bt), 0, 1)[0]  # noqa: E731
    one = jax.jit(jax.vmap(one_update)).lower(
        b.state.student, b.state.normalizer, one_batch).compile()
    update_flops = cost(one)["flops"]
    total = sum(sec.values())
    return {"seconds": sec, "sum_s": total, "share": {k: v / total for k, v in sec.items()},
            "insert_s": t_insert, "sample_s": t_sample, "eval_s_per_log_point": t_eval,
            "update_flops": update_flops, "update_flop_per_s": update_flops * u / sec["updates"]}


def loops_of_one(trainer) -> Any:
    """A shallow copy of ``trainer`` whose inner loops (T, H, U, look-ahead updates) all run once.

    Only used to compile loop bodies for cost analysis; its config is not
    re-validated (one step may insert fewer rows than a batch).
    """
    one = copy.copy(trainer)
    c = trainer.config
    one.T = 1
    one.config = dataclasses.replace(
        c, rollout_steps=1, meta=dataclasses.replace(c.meta, return_horizon=1, lookahead_updates=1),
        student=dataclasses.replace(c.student, updates_per_iteration=1))
    return one


def cost_per_iteration(b: Bench) -> dict[str, Any]:
    """FLOPs and bytes accessed per iteration (all S seeds), loop bodies scaled by their trip counts.

    Each inner loop body comes from its own compile with trip count 1 (see the
    module docstring); the chunk's own figure counts every loop once.

    Returns:
      {'flops', 'bytes', 'bodies': {body: cost}, 'trips': {body: extra trips},
       'sequential_trips': loop trips per iteration that run one after another}.
    """
    import jax

    c, st, tr = b.config, b.state, b.trainer
    one = loops_of_one(tr)
    keys = _keys(jax.random.PRNGKey(3), c.seeds)
    compile_cost = lambda f, *args: cost(jax.jit(jax.vmap(f)).lower(*args).compile())  # noqa: E731
    body = {"d0_step": compile_cost(one.rollout_d0, st, keys),
            "update": compile_cost(lambda s: one.student_update(s)[0].student, st)}
    trips = {"d0_step": c.rollout_steps - 1, "update": c.student_updates - 1}
    if c.is_meta:
        d0 = jax.eval_shape(jax.vmap(tr.rollout_d0), st, keys)[2]
        primes = jax.eval_shape(jax.vmap(tr.look_ahead), st, d0, keys)
        body["lookahead_update"] = compile_cost(one.look_ahead, st, d0, keys)
        body["rhat_step"] = compile_cost(one.returns_and_d1, st, primes, keys)
        trips["lookahead_update"] = c.lookahead_updates - 1
        trips["rhat_step"] = c.meta.return_horizon - 1
    base = b.result["chunk_cost_loops_once"]
    flops = base["flops"] + sum(body[k]["flops"] * n for k, n in trips.items())
    bytes_ = base["bytes"] + sum(body[k]["bytes"] * n for k, n in trips.items())
    # XLA counts a gather as reading its whole operand, so every replay sample
    # "reads" the whole buffer. Count the rows it really moves instead.
    sample_xla = compile_cost(lambda buf: tr.replay.sample(buf)[1], st.buffer)["bytes"]
    sample_rows = 2.0 * c.student.batch_size * replay_row_bytes(st.buffer) * c.seeds
    # Replay gathers per iteration: one per student update, and one per look-ahead update when the
    # look-ahead mixes buffer rows into its minibatches (its key is shared by the K candidates).
    gathers = c.student_updates + (c.lookahead_updates if c.is_meta and c.meta.lookahead_data == "mixed" else 0)
    sequential = c.rollout_steps + c.student_updates + (c.lookahead_updates + c.meta.return_horizon
                                                        if c.is_meta else 0)
    return {"flops": flops, "bytes_xla": bytes_,
            "bytes": bytes_ - gathers * max(sample_xla - sample_rows, 0.0), "replay_gathers": gathers,
            "sample_bytes_xla": sample_xla, "sample_bytes_rows": sample_rows,
            "bodies": body, "trips": trips, "sequential_trips": sequential}


def replay_row_bytes(buffer) -> int:
    """Bytes of one stored transition: the last axis of the replay's flat float32 rows.

    ``buffer`` is a :class:`mjxmeta.algo.replay.BufferState` (any leading axes):
    ``data.experience`` has shape (..., capacity, row_size).
    """
    x = buffer.data.experience
    return int(x.shape[-1]) * x.dtype.itemsize


# -------------------------------------------------------------- whole run
def whole_run(cell: Cell, log_every: int, chunks: int) -> dict[str, Any]:
    """A real ``mjxmeta train`` run (``run.train``) of ``chunks`` chunks in a temporary run dir.

    ``train`` runs in a worker thread while this thread polls ``metrics.jsonl``
    every 10 ms, so each log point gets a time on one clock.

    Returns:
      first_log_s: from the call (trainer construction, init, compile) to the
        first metrics row;
      steady_env_steps_per_s: env steps (all seeds) between the first and the
        last log point over the time between them (chunks, evaluation,
        logging, TensorBoard);
      after_first_env_steps_per_s: the same steps over the time from the first
        log point to ``train``'s return (final checkpoint and its commit
        included);
      after_last_log_s: from the last log point to the return (final
        checkpoint save and commit, closing);
      total_s, log_points, run_dir_bytes.
    """
    import threading

    from mjxmeta.runs.loop import METRICS, train

    config = cell_config(cell, log_every, chunks)
    seen: dict[int, float] = {}
    errors: list[BaseException] = []
    with tempfile.TemporaryDirectory(prefix="mjxmeta-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        metrics = run_dir / METRICS

        def work():
            try:
                train(config, run_dir, progress=False)
            except BaseException as e:  # re-raised in the calling thread
                errors.append(e)

        worker = threading.Thread(target=work)
        t0 = time.perf_counter()
        worker.start()
        while worker.is_alive():
            worker.join(0.01)
            with contextlib.suppress(OSError):
                n = metrics.read_text().count("\n")
                if n and n not in seen:
                    seen[n] = time.perf_counter()
        t_end = time.perf_counter()
        if errors:
            raise errors[0]
        rows = [json.loads(x) for x in metrics.read_text().splitlines()]
        size = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())
    s = config.seeds
    steps = sorted({r["env_steps"] for r in rows})
    walls = sorted({r["wall_s"] for r in rows})
    t_first = min(seen.values()) if seen else t_end
    t_last = max(seen.values()) if seen else t_end
    steps_between = (steps[-1] - steps[0]) * s
    dt_between = walls[-1] - walls[0]
    return {"chunks": chunks, "log_points": len(steps), "total_s": t_end - t0, "first_log_s": t_first - t0,
            "steady_env_steps_per_s": steps_between / dt_between if dt_between > 0 else None,
            "after_first_env_steps_per_s": steps_between / (t_end - t_first) if t_end > t_first else None,
            "after_last_log_s": t_end - t_last, "run_dir_bytes": size}


# ------------------------------------------------------------------ driver
def make_cells(envs, teachers, presets, seeds, candidates, num_envs, buffer_sizes) -> list[Cell]:
    """The product of the options; K is dropped (first value kept) for noise teachers, duplicates removed."""
    cells: list[Cell] = []
    for env, teacher, preset, s, k, n, cap in itertools.product(envs, teachers, presets, seeds, candidates,
                                                                num_envs, buffer_sizes):
        if teacher not in META_TEACHERS:
            k = candidates[0]
        cell = Cell(env, teacher, preset, s, k, n, cap)
        if cell not in cells:
            cells.append(cell)
    return cells


def run(cells: Sequence[Cell], *, log_every: int = 10, chunks: int = 3, rounds: int = 3, reps: int = 5,
        train_chunks: int = 5, do_profile: bool = True, do_cost: bool = True,
        progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Runs every measurement of the module docstring on ``cells``; returns the JSON-ready result.

    Raises:
      ConfigError: an invalid cell (checked for all cells before anything compiles).
    """
    for cell in cells:
        cell_config(cell, log_every, max(train_chunks, 1))
    import jax

    out: dict[str, Any] = {
        "versions": versions(), "machine": machine(), "command": [os.path.basename(sys.argv[0])] + sys.argv[1:],
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "devices": [str(d) for d in jax.devices()],
        "compilation_cache": jax.config.jax_compilation_cache_dir
        if jax.config.jax_enable_compilation_cache else None,
        "settings": {"log_every": log_every, "chunks": chunks, "rounds": rounds, "reps": reps,
                     "train_chunks": train_chunks},
        "accelerators": ACCELERATORS,
    }
    benches = []
    for cell in cells:
        progress(f"compile {cell.name}")
        benches.append(setup(cell, log_every))
    per_chunk: dict[int, list[float]] = {i: [] for i in range(len(benches))}
    matmul: list[float] = []
    for r in range(rounds):  # alternate cells within every round, the order reversed every other round
        progress(f"round {r + 1}/{rounds}")
        matmul.append(matmul_flops())
        order = list(enumerate(benches))
        for i, b in order if r % 2 == 0 else order[::-1]:
            per_chunk[i].append(time_chunks(b, chunks))
    out["matmul_flop_per_s"] = statistics.median(matmul)
    out["matmul_flop_per_s_rounds"] = matmul
    for i, b in enumerate(benches):
        it = statistics.median(per_chunk[i]) / log_every
        b.result["chunk"] = {"seconds_per_iteration": it, "rounds_s_per_chunk": per_chunk[i],
                             **rates(b.config, it)}
        if do_profile:
            progress(f"profile {b.cell.name}")
            prof = profile(b, reps)
            prof["fused_over_sum"] = it / prof["sum_s"]
            prof["eval_over_chunk"] = prof["eval_s_per_log_point"] / (it * log_every)
            prof["update_over_matmul"] = prof["update_flop_per_s"] / out["matmul_flop_per_s"]
            b.result["profile"] = prof
        if do_cost:
            progress(f"cost analysis {b.cell.name}")
            cst = cost_per_iteration(b)
            steps = b.config.steps_per_iteration * b.config.seeds
            proj = roofline(cst["flops"], cst["bytes"])
            floor = cst["sequential_trips"] * TRIP_LATENCY_S
            for v in proj.values():
                v["env_steps_per_s"] = steps / v["time_s"] if v["time_s"] > 0 else None
                v["with_latency_floor_env_steps_per_s"] = steps / max(v["time_s"], floor)
            cst["latency_floor_s"] = floor
            cst["projection"] = proj
            cst["measured_flop_per_s"] = cst["flops"] / it
            b.result["cost_per_iteration"] = cst
        b.result["peak_rss_mib"] = peak_rss_mib()
        b.state = b.chunk = None  # free the replay buffers before the next cell's train run
    for b in benches:
        if train_chunks:
            progress(f"mjxmeta train {b.cell.name}")
            w = whole_run(b.cell, log_every, train_chunks)
            w["steady_over_chunk"] = (w["steady_env_steps_per_s"] or 0.0) / b.result["chunk"]["env_steps_per_s"]
            w["after_first_over_chunk"] = ((w["after_first_env_steps_per_s"] or 0.0)
                                           / b.result["chunk"]["env_steps_per_s"])
            b.result["train"] = w
            b.result["peak_rss_mib"] = peak_rss_mib()
    out["cells"] = [b.result for b in benches]
    out["peak_rss_mib"] = peak_rss_mib()
    out["machine_after"] = {"loadavg": list(os.getloadavg())}
    return out


def _f(x: float | None, fmt: str = ".0f") -> str:
    return "—" if x is None else format(x, fmt)


def tables(result: dict[str, Any]) -> str:
    """Markdown tables of a :func:`run` result."""
    cells = result["cells"]
    m = result["machine"]
    lines = [f"mjxmeta bench — {m['cpu']}, {m['nproc']} cores, load {m['loadavg'][0]:.2f} at start "
             f"({result['started']}); jax {result['versions']['jax']}, brax {result['versions']['brax']}, "
             f"mujoco {result['versions']['mujoco']}; median of {result['settings']['rounds']} alternating rounds",
             "", "### Throughput (env steps/s and student updates/s: total over S seeds / per seed)", "",
             "| cell | compile s | chunk env steps/s | chunk updates/s | train: s to 1st log | "
             "train env steps/s (steady / incl. checkpoint) | train ÷ chunk | peak RSS MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in cells:
        ch, tr = c["chunk"], c.get("train")
        t = (f"{_f(tr['first_log_s'], '.1f')} | {_f(tr['steady_env_steps_per_s'])} / "
             f"{_f(tr['after_first_env_steps_per_s'])} | {_f(tr['steady_over_chunk'], '.2f')}"
             if tr else "— | — | —")
        lines.append(f"| {c['name']} | {c['compile_s']:.1f} | {ch['env_steps_per_s']:.0f} / "
                     f"{ch['env_steps_per_s_per_seed']:.0f} | {ch['updates_per_s']:.0f} / "
                     f"{ch['updates_per_s_per_seed']:.0f} | {t} | {c['peak_rss_mib']:.0f} |")
    if any("profile" in c for c in cells):
        lines += ["", "### Share of an iteration (pieces jitted and timed separately)", "",
                  "| cell | " + " | ".join(PIECE_LABELS[p] for p in PIECES)
                  + " | fused iteration ÷ sum of pieces | update GFLOP/s | 256³ matmul GFLOP/s | update ÷ matmul |",
                  "| --- |" + " ---: |" * (len(PIECES) + 4)]
        for c in cells:
            if "profile" not in c:
                continue
            p = c["profile"]
            lines.append(f"| {c['name']} | " + " | ".join(f"{100 * p['share'][k]:.0f} %" for k in PIECES)
                         + f" | {p['fused_over_sum']:.2f} | {p['update_flop_per_s'] / 1e9:.1f} | "
                         f"{result['matmul_flop_per_s'] / 1e9:.1f} | {p['update_over_matmul']:.2f} |")
    if any("cost_per_iteration" in c for c in cells):
        names = list(ACCELERATORS)
        lines += ["", "### XLA cost per iteration and roofline PROJECTION (not measured)", "",
                  "Projected env steps/s = steps per iteration / max(FLOPs / peak, bytes / bandwidth, "
                  f"sequential loop trips × {TRIP_LATENCY_S * 1e6:.0f} µs (assumed)); in brackets the roofline "
                  "alone and its bound. Bytes count replay samples as the rows they move.", "",
                  "| cell | GFLOP/iter | MB/iter (XLA's count) | measured here GFLOP/s | sequential loop trips/iter | "
                  + " | ".join(f"{n} projected env steps/s" for n in names) + " |",
                  "| --- |" + " ---: |" * (4 + len(names))]
        for c in cells:
            if "cost_per_iteration" not in c:
                continue
            k = c["cost_per_iteration"]
            proj = " | ".join(f"{_f(k['projection'][n]['with_latency_floor_env_steps_per_s'], '.3g')} "
                              f"({_f(k['projection'][n]['env_steps_per_s'], '.3g')}, {k['projection'][n]['bound']})"
                              for n in names)
            lines.append(f"| {c['name']} | {k['flops'] / 1e9:.3f} | {k['bytes'] / 1e6:.1f} "
                         f"({k['bytes_xla'] / 1e6:.0f}) | "
                         f"{k['measured_flop_per_s'] / 1e9:.1f} | {k['sequential_trips']} | {proj} |")
        lines += [""] + [f"* {n}: {a['source']}" for n, a in ACCELERATORS.items()]
    return "\n".join(lines)


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from e
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def _count(text: str) -> int:
    try:
        v = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected an integer like 1000000 or 1e6, got {text!r}") from e
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mjxmeta bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", nargs="+", default=["inverted_pendulum"], choices=ENV_NAMES)
    p.add_argument("--teacher", nargs="+", default=["gaussian", "meta"], choices=TEACHER_NAMES)
    p.add_argument("--preset", nargs="+", default=["baselines2017"], choices=PRESET_NAMES)
    p.add_argument("--seeds", nargs="+", type=_positive, default=[1], help="S values")
    p.add_argument("--candidates", nargs="+", type=_positive, default=[2], help="K values (meta teachers)")
    p.add_argument("--num-envs", nargs="+", type=_positive, default=[1], help="N values")
    p.add_argument("--buffer-size", nargs="+", type=_count, default=[1_000_000], help="replay capacities")
    p.add_argument("--log-every", type=_positive, default=10, help="iterations per chunk")
    p.add_argument("--chunks", type=_positive, default=3, help="chunks timed per cell per round")
    p.add_argument("--rounds", type=_positive, default=3, help="alternating rounds (median taken)")
    p.add_argument("--reps", type=_positive, default=5, help="timed repetitions of each profile piece")
    p.add_argument("--train-chunks", type=int, default=5,
                   help="chunks of the whole `mjxmeta train` run per cell; 0 skips it")
    p.add_argument("--no-profile", action="store_true", help="skip the per-piece profile and FLOP/s")
    p.add_argument("--no-cost", action="store_true", help="skip XLA cost analysis and the roofline projection")
    p.add_argument("--cold", action="store_true",
                   help="disable JAX's persistent compilation cache (default: on, as for `mjxmeta train`)")
    p.add_argument("--json", default="bench.json", help="where to write the full result")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``mjxmeta bench``; returns the exit code (2 on invalid input, before any compile)."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.train_chunks < 0 or a.train_chunks == 1:
        parser.exit(2, f"mjxmeta bench: error: argument --train-chunks: {a.train_chunks} is invalid: "
                       "accepted 0 (skip) or an integer >= 2 (steady rate needs two log points)\n")
    cells = make_cells(a.env, a.teacher, a.preset, a.seeds, a.candidates, a.num_envs, a.buffer_size)
    out = Path(a.json)
    if not out.parent.is_dir():
        parser.exit(2, f"mjxmeta bench: error: argument --json: {a.json!r} is invalid: accepted a path in an "
                       "existing directory\n")
    for cell in cells:
        try:
            cell_config(cell, a.log_every, max(a.train_chunks, 1))
        except ConfigError as e:
            parser.exit(2, f"mjxmeta bench: error: {e} (cell: {cell.name})\n")
    from mjxmeta.runs import program_cache

    if a.cold:
        import jax

        jax.config.update("jax_enable_compilation_cache", False)
    else:  # the same persistent compilation cache as `mjxmeta train`
        from mjxmeta.runs import compile_cache

        compile_cache.enable()
    program_cache.enable(None)  # bench traces and times its programs itself (mjxmeta.runs.program_cache)
    result = run(cells, log_every=a.log_every, chunks=a.chunks, rounds=a.rounds, reps=a.reps,
                 train_chunks=a.train_chunks, do_profile=not a.no_profile, do_cost=not a.no_cost,
                 progress=lambda m: print(f"[bench] {m}", file=sys.stderr, flush=True))
    result["command"] = ["mjxmeta", "bench"] + list(argv if argv is not None else sys.argv[1:])
    out.write_text(json.dumps(result, indent=1))
    print(tables(result))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
