"""Whole-state checkpoints with Orbax (``CheckpointManager``, ``ocp.args`` API).

A checkpoint holds every leaf of the batched :class:`mjxmeta.trainer.TrainState`
(networks, optimizer states, teacher, replay buffer and cursors, env states of
the teacher envs, PRNG keys, normalizer statistics, baselines, counters) plus a
small JSON record (iteration, env steps, chunk).

MJX ``Data`` holds zero-size arrays (e.g. ``act`` of shape (N, 0)) that Orbax
refuses to save. They carry no data, so they are handled structurally: the
state is flattened to a ``{path: array}`` dict, zero-size leaves are left out
of the saved dict and re-created from the abstract state (shape and dtype) on
restore. Nothing else is dropped.

Orbax writes each step into a temporary directory and renames it when
complete, so a process killed mid-save leaves the previous checkpoints intact;
``latest_step`` only ever returns finalized steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp


def _flat(tree) -> tuple[dict[str, Any], list[str], Any]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = [jax.tree_util.keystr(p) for p, _ in leaves]
    return {n: x for n, (_, x) in zip(names, leaves)}, names, treedef


def _saved_part(flat: dict[str, Any]) -> dict[str, Any]:
    return {n: x for n, x in flat.items() if int(np.prod(x.shape)) > 0}


class Checkpointer:
    """Saves and restores the batched train state under ``run_dir/checkpoints``.

    Args:
      run_dir: the run directory.
      keep: number of most recent checkpoints kept (``max_to_keep``).
    """

    def __init__(self, run_dir: str | Path, keep: int = 3):
        self.directory = Path(run_dir).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True),
        )

    def save(self, step: int, state, record: dict[str, Any]) -> None:
        """Starts an asynchronous save of ``state`` at ``step`` (an iteration count).

        ``record`` is a JSON-serializable dict saved beside it.
        """
        flat, _, _ = _flat(state)
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_saved_part(flat)), record=ocp.args.JsonSave(record)))

    def wait(self) -> None:
        """Blocks until pending saves are complete on disk."""
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore(self, abstract_state, step: int | None = None):
        """Restores the state saved at ``step`` (default: latest) into the structure of ``abstract_state``.

        Args:
          abstract_state: a pytree of ``jax.ShapeDtypeStruct`` (with shardings
            for the current devices) of the same structure as the saved state,
            e.g. ``jax.eval_shape`` of the trainer's init.

        Returns:
          (state, record).

        Raises:
          FileNotFoundError: if there is no (complete) checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None or step not in self.manager.all_steps():
            raise FileNotFoundError(f"no complete checkpoint{'' if step is None else f' at step {step}'} in "
                                    f"{self.directory}; available steps: {self.all_steps()}")
        flat, names, treedef = _flat(abstract_state)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_saved_part(flat)), record=ocp.args.JsonRestore()))
        values = restored["state"]

        def leaf(name):
            if name in values:
                return values[name]
            a = flat[name]
            return jax.device_put(jnp.zeros(a.shape, a.dtype), getattr(a, "sharding", None))

        state = jax.tree_util.tree_unflatten(treedef, [leaf(n) for n in names])
        return state, dict(restored["record"])

    def close(self) -> None:
        self.wait()
        self.manager.close()
