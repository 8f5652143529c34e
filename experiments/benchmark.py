"""Speed benchmark of the fused trainer: compile time and env steps per second.

Builds every configuration of the product env x teacher x seeds x buffer size
first, then times their fused chunks in alternating order (``--reps`` rounds,
the order reversed every other round) so that load on a shared machine hits
all of them alike, and prints one line per configuration with the median:
  env, teacher, seeds, buffer size, compile_s (first chunk incl. XLA compile),
  steady-state env steps/s summed over seeds, student updates/s summed over
  seeds, and the chunk time relative to the first configuration.

Usage:
  python experiments/benchmark.py --env pendulum --teacher gaussian --seeds 4 16 --buffer-size 10000 1000000
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import jax

from mjxmeta.config import Config, MetaConfig, TeacherConfig, student_preset
from mjxmeta.trainer import Trainer


def build(env: str, teacher: str, seeds: int, buffer_size: int, log_every: int, preset: str) -> dict:
    """Trainer, state after the first (compiling) chunk, and timings of init and the first chunk."""
    cfg = Config(env=env, seeds=seeds, log_every=log_every, total_steps=10**9,
                 student=student_preset(preset, buffer_size=buffer_size), teacher=TeacherConfig(name=teacher),
                 meta=MetaConfig())
    tr = Trainer(cfg)
    t0 = time.perf_counter()
    state = jax.block_until_ready(tr.init_seeds(tr.seed_keys()))
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, _ = tr.run_chunk(state)
    jax.block_until_ready(state)
    return dict(env=env, teacher=teacher, seeds=seeds, buffer_size=buffer_size, cfg=cfg, trainer=tr, state=state,
                init_s=t_init, first_s=time.perf_counter() - t0, times=[])


def time_chunk(r: dict) -> None:
    t0 = time.perf_counter()
    r["state"], _ = r["trainer"].run_chunk(r["state"])
    jax.block_until_ready(r["state"])
    r["times"].append(time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", nargs="+", default=["pendulum"])
    p.add_argument("--teacher", nargs="+", default=["gaussian", "meta"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 4])
    p.add_argument("--buffer-size", nargs="+", type=int, default=[1_000_000])
    p.add_argument("--reps", type=int, default=5, help="timed chunks per configuration (alternating)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--preset", default="baselines2017")
    a = p.parse_args()
    print(f"jax {jax.__version__} devices={jax.devices()}", flush=True)
    runs = [build(*c, a.log_every, a.preset) for c in itertools.product(a.env, a.teacher, a.seeds, a.buffer_size)]
    for rep in range(a.reps):
        for r in runs if rep % 2 == 0 else runs[::-1]:
            time_chunk(r)
    print("| env | teacher | S | buffer | init s | compile s | env steps/s | updates/s | time / first row | jit cache |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    ref = statistics.median(runs[0]["times"])
    for r in runs:
        dt, cfg = statistics.median(r["times"]), r["cfg"]
        steps = cfg.steps_per_iteration * a.log_every * r["seeds"]
        updates = cfg.student_updates * a.log_every * r["seeds"]
        print(f"| {r['env']} | {r['teacher']} | {r['seeds']} | {r['buffer_size']:.0e} | {r['init_s']:.1f} | "
              f"{r['first_s'] - dt:.1f} | {steps / dt:.0f} | {updates / dt:.0f} | {dt / ref:.3f} | "
              f"{r['trainer'].run_chunk._cache_size()} |", flush=True)


if __name__ == "__main__":
    main()
