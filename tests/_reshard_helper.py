"""Test-only helper, run in a subprocess with a forced device count:

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/_reshard_helper.py SRC DST OUT.npz [EPISODES]

1. restores the latest checkpoint of run ``SRC`` into ``Programs.abstract_state()``
   of *this* process (seed axis sharded over all devices when the seed count
   divides the device count) and checks that every restored leaf lives on
   the devices of that sharding;
2. writes every restored leaf, in flatten order, to ``OUT.npz`` (``arr_0`` ...)
   so the test can compare them bit for bit with a 1-device restore;
3. saves the restored (sharded) state as a checkpoint of a new run ``DST``
   (``config.json`` copied) with ``mjxmeta.runs.checkpoint.Checkpointer``, printing
   ``SAVE_SECONDS`` and ``CHECKPOINT_BYTES``;
4. runs ``mjxmeta eval SRC --episodes EPISODES`` (``mjxmeta.cli.main``) in
   this process, so its per-seed table is printed from a sharded restore.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np

from mjxmeta.runs.programs import programs_of
import mjxmeta.cli
from mjxmeta.runs.checkpoint import Checkpointer
from mjxmeta.runs.loop import CONFIG, load_config
from mjxmeta.algo.trainer import Trainer


def main(src: Path, dst: Path, out: Path, episodes: int) -> int:
    config = load_config(src)
    trainer = Trainer(config)
    sharding = programs_of(trainer).seed_sharding()
    print(f"DEVICES {jax.device_count()} SHARDING {type(sharding).__name__} "
          f"SHARDING_DEVICES {len(sharding.device_set)}", flush=True)
    ckpt = Checkpointer(src, config.keep)
    try:
        state, record = ckpt.restore(programs_of(trainer).abstract_state())
    finally:
        ckpt.close()
    leaves = jax.tree.leaves(state)
    wrong = [i for i, x in enumerate(leaves) if x.sharding.device_set != sharding.device_set]
    assert not wrong, f"leaves {wrong} were not restored onto {sharding}"
    np.savez(out, *[np.asarray(jax.device_get(x)) for x in leaves])
    print(f"RESTORED_ITERATION {record['iteration']} LEAVES {len(leaves)}", flush=True)

    dst.mkdir(parents=True)
    shutil.copy(src / CONFIG, dst / CONFIG)
    ckpt = Checkpointer(dst, config.keep)
    t = time.perf_counter()
    ckpt.save(record["iteration"], state, record)
    ckpt.close()
    step_dir = dst / "checkpoints" / str(record["iteration"])
    size = sum(f.stat().st_size for f in step_dir.rglob("*") if f.is_file())
    print(f"SAVE_SECONDS {time.perf_counter() - t:.3f} CHECKPOINT_BYTES {size}", flush=True)

    return mjxmeta.cli.main(["eval", str(src), "--episodes", str(episodes)])


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(Path(args[0]), Path(args[1]), Path(args[2]), int(args[3]) if len(args) > 3 else 3))
