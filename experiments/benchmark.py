"""Speed benchmark of the fused trainer: compile time and env steps per second.

Prints one line per configuration:
  env, teacher, seeds, compile_s (first chunk incl. XLA compile), steady-state
  env steps/s summed over seeds, student updates/s summed over seeds.

Usage:
  python experiments/benchmark.py --env pendulum inverted_pendulum --teacher gaussian meta --seeds 1 4
"""

from __future__ import annotations

import argparse
import itertools
import time

import jax

from mjxmeta.config import Config, MetaConfig, TeacherConfig, student_preset
from mjxmeta.trainer import Trainer


def bench(env: str, teacher: str, seeds: int, chunks: int, log_every: int, preset: str) -> dict:
    cfg = Config(env=env, seeds=seeds, log_every=log_every, total_steps=10**9,
                 student=student_preset(preset), teacher=TeacherConfig(name=teacher), meta=MetaConfig())
    tr = Trainer(cfg)
    t0 = time.perf_counter()
    state = jax.block_until_ready(tr.init_seeds(tr.seed_keys()))
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, _ = tr.run_chunk(state)
    jax.block_until_ready(state)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(chunks):
        state, _ = tr.run_chunk(state)
    jax.block_until_ready(state)
    dt = (time.perf_counter() - t0) / chunks
    steps = cfg.steps_per_iteration * log_every * seeds
    updates = cfg.student_updates * log_every * seeds
    return dict(env=env, teacher=teacher, seeds=seeds, init_s=t_init, compile_s=t_first - dt,
                env_steps_per_s=steps / dt, updates_per_s=updates / dt, cache=tr.run_chunk._cache_size())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", nargs="+", default=["pendulum"])
    p.add_argument("--teacher", nargs="+", default=["gaussian", "meta"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 4])
    p.add_argument("--chunks", type=int, default=3)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--preset", default="baselines2017")
    a = p.parse_args()
    print(f"jax {jax.__version__} devices={jax.devices()}")
    print("| env | teacher | S | init s | compile s | env steps/s | updates/s | jit cache |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for env, teacher, seeds in itertools.product(a.env, a.teacher, a.seeds):
        r = bench(env, teacher, seeds, a.chunks, a.log_every, a.preset)
        print(f"| {r['env']} | {r['teacher']} | {r['seeds']} | {r['init_s']:.1f} | {r['compile_s']:.1f} | "
              f"{r['env_steps_per_s']:.0f} | {r['updates_per_s']:.0f} | {r['cache']} |", flush=True)


if __name__ == "__main__":
    main()
