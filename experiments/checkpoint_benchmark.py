"""Checkpoint size and save/restore time of a whole train state.

Builds the batched state of a config (default: baselines2017 DDPG on MJX
``hopper``, S=4 seeds, 1e6-transition replay per seed), optionally trains a
chunk, then times an Orbax save (blocking part and until committed), measures
the bytes on disk, and times a restore. Prints one Markdown table.

Usage:
  python experiments/checkpoint_benchmark.py --env hopper --seeds 4 --buffer-size 1000000 [--chunks 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from mjxmeta.runs.programs import programs_of
from mjxmeta.runs.checkpoint import CHECKPOINTS, Checkpointer
from mjxmeta.algo.config import Config, TeacherConfig, student_preset
from mjxmeta.algo.trainer import Trainer


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="hopper")
    p.add_argument("--teacher", default="gaussian")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--buffer-size", type=int, default=1_000_000)
    p.add_argument("--chunks", type=int, default=0, help="chunks to train before saving (fills part of the buffer)")
    p.add_argument("--fill", action="store_true",
                   help="fill the replay buffer with random floats, as a full buffer (Orbax compresses zeros)")
    a = p.parse_args()
    config = Config(env=a.env, seeds=a.seeds, log_every=2, teacher=TeacherConfig(name=a.teacher),
                    student=student_preset("baselines2017", buffer_size=a.buffer_size))
    trainer = Trainer(config)
    t0 = time.perf_counter()
    state = jax.block_until_ready(programs_of(trainer).init_seeds(trainer.seed_keys()))
    t_init = time.perf_counter() - t0
    for _ in range(a.chunks):
        state, _ = programs_of(trainer).run_chunk(state)
    if a.fill:
        data = state.buffer.data
        noise = jax.random.normal(jax.random.PRNGKey(1), data.experience.shape, data.experience.dtype)
        state = state.replace(buffer=state.buffer.replace(data=data.replace(experience=noise)))
    state = jax.block_until_ready(state)
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
    with tempfile.TemporaryDirectory(dir=".") as d:
        ckpt = Checkpointer(d, keep=3)
        t0 = time.perf_counter()
        ckpt.save(2, state, {"iteration": 2, "chunk": 1, "env_steps": 0, "wall_s": 0.0})
        t_block = time.perf_counter() - t0
        ckpt.wait()
        t_total = time.perf_counter() - t0
        disk = dir_bytes(Path(d) / CHECKPOINTS)
        t0 = time.perf_counter()
        restored, _ = ckpt.restore(programs_of(trainer).abstract_state())
        jax.block_until_ready(restored)
        t_restore = time.perf_counter() - t0
        same = all(np.array_equal(np.asarray(x), np.asarray(y))
                   for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(restored)))
        ckpt.close()
    print(f"| env | S | buffer/seed | state MiB | on disk MiB | save blocking s | save committed s | restore s | "
          f"bit-identical | init s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    print(f"| {a.env} | {a.seeds} | {a.buffer_size}{' (full)' if a.fill else ' (empty)'} | {state_bytes / 2**20:.1f} | {disk / 2**20:.1f} | "
          f"{t_block:.2f} | {t_total:.2f} | {t_restore:.2f} | {same} | {t_init:.1f} |")


if __name__ == "__main__":
    main()
