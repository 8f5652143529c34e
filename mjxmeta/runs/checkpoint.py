"""Whole-state checkpoints with Orbax (``CheckpointManager``, ``ocp.args`` API), verified on restore.

A checkpoint holds every leaf of the batched :class:`mjxmeta.algo.trainer.TrainState`
(networks, optimizer states, teacher, replay buffer and cursors, env states of
the teacher envs, PRNG keys, normalizer statistics, baselines, counters) plus a
small JSON record (iteration, env steps, chunk, the full config of the run).

Integrity: :meth:`Checkpointer.save` adds to the record ``arrays_sha256_rows``
(:func:`rows_digest`: SHA-256 over the digests of every seed's row of every
saved array, with names, dtypes and global shapes; computed from the very
arrays handed to Orbax) and ``record_sha256`` over the rest of the record
(config included). :meth:`Checkpointer.restore` recomputes both from what it
read and raises :class:`CheckpointCorrupt` on a mismatch, as it does for
anything Orbax/TensorStore cannot read (truncated or missing files).
Checkpoints of earlier versions carry ``arrays_sha256`` (:func:`arrays_digest`
over whole arrays) and are verified with it.

Several processes (:mod:`mjxmeta.runs.distributed`): the state's arrays are global
(the seed axis spread over all processes' devices); Orbax writes each
process's shards and process 0 the metadata and record. Each process hashes
the seed rows it holds and the row digests are gathered, so the checksum is
the same for any process count: a checkpoint written by P processes restores
and verifies in any other number of processes whose device count divides S.
Whether a restore failed is agreed between processes, so all fall back together.
:meth:`Checkpointer.restore_verified` walks back from the latest step to the
newest checkpoint that verifies, saying in one line which ones failed.

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

import hashlib
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mjxmeta.runs import distributed
from mjxmeta.runs.layout import CHECKPOINTS, FAILED_CHECKPOINTS


def _flat(tree) -> tuple[dict[str, Any], list[str], Any]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = [jax.tree_util.keystr(p) for p, _ in leaves]
    return {n: x for n, (_, x) in zip(names, leaves)}, names, treedef


def _saved_part(flat: dict[str, Any]) -> dict[str, Any]:
    return {n: x for n, x in flat.items() if int(np.prod(x.shape)) > 0}


DIGEST = "arrays_sha256_rows"  # rows_digest
LEGACY_DIGEST = "arrays_sha256"  # arrays_digest, checkpoints of earlier versions
RECORD_DIGEST = "record_sha256"


class CheckpointCorrupt(RuntimeError):
    """A checkpoint cannot be read or fails verification; ``str()`` is one line naming step and reason."""

    def __init__(self, step: int, directory: Path, reason: str):
        self.step = step
        super().__init__(f"checkpoint {step} in {directory} failed verification: {reason}")


class CheckpointWriteError(OSError):
    """An OS error (disk full, unwritable or vanished directory, ...) while writing a checkpoint."""


def arrays_digest(flat: dict[str, Any]) -> str:
    """SHA-256 (hex) over ``{name: array}`` in name order: name, dtype, shape and raw bytes of each.

    Typed PRNG keys are hashed through ``jax.random.key_data``. Independent
    of sharding and device count (the arrays are fetched whole to the host,
    gathered from all processes when several run). Verifies checkpoints of
    earlier versions; new ones carry :func:`rows_digest`.
    """
    names = sorted(flat)
    arrays = [flat[n] for n in names]
    arrays = [jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x for x in arrays]
    h = hashlib.sha256()
    for name, a in zip(names, distributed.to_host(arrays)):
        a = np.ascontiguousarray(a)
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def rows_digest(flat: dict[str, Any]) -> str:
    """SHA-256 (hex) over ``{name: array}`` with a leading seed axis S, the same for any process count.

    For each name (sorted) and seed ``s``: the SHA-256 of ``name|dtype|global
    shape|s`` and the bytes of row ``s``; this process hashes the rows its
    devices hold and the row digests of all processes are gathered
    (collective when several processes run). The result is the SHA-256 of the
    names, dtypes and shapes followed by all row digests in (name, seed)
    order. Typed PRNG keys are hashed through ``jax.random.key_data``.
    """
    names = sorted(flat)
    arrays = [flat[n] for n in names]
    arrays = [jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x for x in arrays]
    seeds = {int(x.shape[0]) for x in arrays}
    if len(seeds) != 1:
        raise ValueError(f"arrays of a checkpoint must share their leading seed axis; got sizes {sorted(seeds)}")
    (S,) = seeds
    rows = np.zeros((len(names), S, 32), np.uint8)
    have = np.zeros((len(names), S), bool)
    for i, (name, x) in enumerate(zip(names, arrays)):
        head = f"{name}|{np.dtype(x.dtype).str}|{tuple(x.shape)}|"
        parts = [(s.index[0] if s.index else slice(None), s.data) for s in x.addressable_shards] \
            if isinstance(x, jax.Array) else [(slice(None), x)]
        for index, data in parts:
            data = np.ascontiguousarray(jax.device_get(data))
            for r, seed in enumerate(range(S)[index]):
                if not have[i, seed]:
                    h = hashlib.sha256(f"{head}{seed}\n".encode())
                    h.update(memoryview(np.ascontiguousarray(data[r])).cast("B"))
                    rows[i, seed] = np.frombuffer(h.digest(), np.uint8)
                    have[i, seed] = True
    if distributed.process_count() > 1:
        from jax.experimental import multihost_utils

        all_rows, all_have = multihost_utils.process_allgather((rows, have))  # (P, names, S, 32), (P, names, S)
        first = np.argmax(all_have, axis=0)
        rows = np.take_along_axis(all_rows, first[None, ..., None], axis=0)[0]
        have = np.any(all_have, axis=0)
    if not have.all():
        raise ValueError("some seed rows of the checkpoint's arrays are held by no process")
    h = hashlib.sha256(json.dumps([[n, np.dtype(x.dtype).str, list(x.shape)] for n, x in zip(names, arrays)]).encode())
    h.update(rows.tobytes())
    return h.hexdigest()


def record_digest(record: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``record`` without its ``record_sha256`` field."""
    body = {k: v for k, v in record.items() if k != RECORD_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _one_line(e: BaseException, limit: int = 240) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


class _QuietOrbaxIOErrors(logging.Filter):
    """Drops Orbax's multi-page tracebacks of I/O errors in its save threads.

    :meth:`Checkpointer.save` / :meth:`Checkpointer.wait` re-raise the same
    error as one :class:`CheckpointWriteError` line; other records pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if "orbax" not in record.pathname or record.levelno < logging.ERROR:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or os_error_in(exc) is None


logging.getLogger("absl").addFilter(_QuietOrbaxIOErrors())


def _quiet_late_read_callbacks() -> None:
    """Drops tracebacks of TensorStore reads that complete after a failed restore closed Orbax's loop.

    When one array of a checkpoint cannot be read, Orbax's restore fails and
    closes its asyncio loop while TensorStore still finishes the other reads;
    their completion callbacks then raise ``RuntimeError('Event loop is
    closed')``, which TensorStore reports through ``sys.unraisablehook``, one
    traceback per array. The failure itself is reported as one
    :class:`CheckpointCorrupt` line; every other unraisable exception still
    reaches the previous hook.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_mjxmeta_quiet", False):
        return

    def hook(unraisable):
        if unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed":
            return
        previous(unraisable)

    hook._mjxmeta_quiet = True
    sys.unraisablehook = hook


_TS_ERRNO = re.compile(r"\[os_error_code='(\d+)'\]")  # TensorStore's I/O errors (a ValueError) end with this
_TS_PATH = re.compile(r'local file "([^"]+)"')


def os_error_in(e: BaseException) -> OSError | None:
    """The first OSError in ``e``'s cause/context chain (Orbax re-raises I/O errors of its threads).

    TensorStore reports a failed write (a full disk, a vanished directory) as
    ``ValueError("RESOURCE_EXHAUSTED: Error writing local file \"PATH\": ...
    [os_error_code='28']")``; such an error counts as ``OSError(28, strerror, PATH)``.
    """
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        code = _TS_ERRNO.search(str(e))
        if code:
            path = _TS_PATH.search(str(e))
            return OSError(int(code[1]), os.strerror(int(code[1])), path[1] if path else None)
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


class Checkpointer:
    """Saves and restores the batched train state under ``run_dir/checkpoints``.

    Args:
      run_dir: the run directory.
      keep: number of most recent checkpoints kept (``max_to_keep``).
      read_only: never creates ``checkpoints/``, never saves (so never
        deletes). With several processes (:mod:`mjxmeta.runs.distributed`) a
        read-only Checkpointer belongs to the calling process alone (no
        collective: e.g. process 0 reading the config of a run); otherwise
        every process must create and use the Checkpointer together.
    """

    def __init__(self, run_dir: str | Path, keep: int = 3, read_only: bool = False):
        self.directory = Path(run_dir).absolute() / CHECKPOINTS
        self.read_only = read_only
        alone = {}
        if read_only and distributed.process_count() > 1:
            me = jax.process_index()
            alone = dict(multiprocessing_options=ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"mjxmeta_alone_{me}"))
        self.manager = None if read_only and not self.directory.is_dir() else ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                                 enable_async_checkpointing=True, **alone),
        )

    def save(self, step: int, state, record: dict[str, Any]) -> None:
        """Starts an asynchronous save of ``state`` at ``step`` (an iteration count).

        ``record`` is a JSON-serializable dict saved beside it; the array and
        record checksums are added to it.

        Raises:
          CheckpointWriteError: an OS error of this or the previous (async) save.
        """
        if self.read_only:
            raise RuntimeError(f"{self.directory} was opened read-only")
        flat, _, _ = _flat(state)
        saved = _saved_part(flat)
        record = {k: v for k, v in record.items() if k != LEGACY_DIGEST}
        record[DIGEST] = rows_digest(saved)
        record[RECORD_DIGEST] = record_digest(record)
        self._io(step, lambda: self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(saved), record=ocp.args.JsonSave(record))))

    def _io(self, step: int | None, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as e:
            err = os_error_in(e)
            if err is None:
                raise
            where = err.filename or self.directory
            raise CheckpointWriteError(err.errno, f"cannot write a checkpoint to {where}: {err.strerror or err} "
                                       f"(the checkpoints before it are intact: {self.all_steps()})") from e

    def wait(self) -> None:
        """Blocks until pending saves are complete on disk.

        Raises:
          CheckpointWriteError: an OS error of a pending save.
        """
        if self.manager is not None:
            self._io(None, self.manager.wait_until_finished)

    def latest_step(self) -> int | None:
        return None if self.manager is None else self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return [] if self.manager is None else sorted(self.manager.all_steps())

    def read_record(self, step: int) -> dict[str, Any]:
        """The JSON record of ``step`` without reading its arrays (checksum of the record verified).

        Raises:
          CheckpointCorrupt: unreadable or does not match its ``record_sha256``.
        """
        try:
            record = dict(self.manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"])
        except Exception as e:  # Orbax/TensorStore raise many types for a damaged step
            raise CheckpointCorrupt(step, self.directory, _one_line(e)) from e
        if RECORD_DIGEST in record and record[RECORD_DIGEST] != record_digest(record):
            raise CheckpointCorrupt(step, self.directory, "its record (iteration, config) does not match its checksum")
        return record

    def restore(self, abstract_state, step: int | None = None):
        """Restores and verifies the state saved at ``step`` (default: latest) into ``abstract_state``'s structure.

        Args:
          abstract_state: a pytree of ``jax.ShapeDtypeStruct`` (with shardings
            for the current devices) of the same structure as the saved state,
            e.g. ``jax.eval_shape`` of the trainer's init. A leaf given as a
            concrete ``jax.Array`` is restored from the checkpoint if it holds
            it, else taken as is (a field added after the checkpoint was
            written, whose value the config determines).

        Returns:
          (state, record).

        Raises:
          FileNotFoundError: if there is no (complete) checkpoint.
          CheckpointCorrupt: the checkpoint cannot be read, or its arrays or
            record do not match the checksums saved with it. Checkpoints of
            older versions (no checksum) restore unverified, with a note on stderr.
        """
        step = self.latest_step() if step is None else step
        if step is None or step not in self.all_steps():
            raise FileNotFoundError(f"no complete checkpoint{'' if step is None else f' at step {step}'} in "
                                    f"{self.directory}; available steps: {self.all_steps()}")
        record = self.read_record(step)
        flat, names, treedef = _flat(abstract_state)
        target = {n: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
                  for n, x in _saved_part(flat).items()}
        _quiet_late_read_callbacks()
        failure = None
        try:
            if any(isinstance(flat[n], jax.Array) for n in target):  # defaults for leaves an older version lacked
                on_disk = self._saved_names(step)
                target = {n: x for n, x in target.items() if n in on_disk or not isinstance(flat[n], jax.Array)}
            values = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target)))["state"]
        except Exception as e:
            failure = e
        # Every process takes the same branch (the digests below are collectives).
        if distributed.any_process(failure is not None):
            reason = _one_line(failure) if failure is not None else "another process could not read its shards"
            raise CheckpointCorrupt(step, self.directory, reason) from failure
        if DIGEST in record:
            ok = rows_digest(dict(values)) == record[DIGEST]
        elif LEGACY_DIGEST in record:
            ok = arrays_digest(dict(values)) == record[LEGACY_DIGEST]
        else:
            ok = True
            if distributed.is_main():
                print(f"mjxmeta: note: checkpoint {step} in {self.directory} has no checksum (written by an older "
                      "version); restored unverified", file=sys.stderr)
        if not ok:
            raise CheckpointCorrupt(step, self.directory, "its arrays do not match their checksum")

        def leaf(name):
            if name in values:
                return values[name]
            a = flat[name]
            if isinstance(a, jax.Array):  # a leaf the checkpoint lacks, given by the caller (already placed)
                return a
            sharding = getattr(a, "sharding", None)
            zeros = np.zeros(a.shape, a.dtype)
            return jnp.asarray(zeros) if sharding is None else distributed.global_array(zeros, sharding)

        state = jax.tree_util.tree_unflatten(treedef, [leaf(n) for n in names])
        return state, record

    def _saved_names(self, step: int) -> set[str]:
        """Names of the arrays saved at ``step``, from its metadata (no array is read)."""
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.ERROR)  # "Metadata file does not exist" for the item: expected, not news
        try:
            return set(ocp.StandardCheckpointer().metadata(self.directory / str(step) / "state").item_metadata.tree)
        finally:
            absl.setLevel(level)

    def restore_verified(self, abstract_state, step: int | None = None, say: Callable[[str], None] | None = None,
                         set_aside: bool = False):
        """:meth:`restore` with fallback: the newest checkpoint at or before ``step`` that verifies.

        Each checkpoint that fails is reported in one line through ``say``
        (default: stderr), and so is the one used instead. With ``set_aside``
        (a run that will save again) the failed checkpoints newer than it are
        moved to ``RUN/failed_checkpoints/`` (kept for inspection, never
        deleted), so the new saves of those steps are not skipped by Orbax.

        Returns:
          (state, record) of the newest verified checkpoint.

        Raises:
          FileNotFoundError: there is no (complete) checkpoint at or before ``step``.
          CheckpointCorrupt: none of them verifies (the message lists them).
        """
        say = say or (lambda m: print(f"mjxmeta: {m}", file=sys.stderr) if distributed.is_main() else None)
        steps = [s for s in reversed(self.all_steps()) if step is None or s <= step]
        if not steps:
            raise FileNotFoundError(f"no complete checkpoint{'' if step is None else f' at or before {step}'} in "
                                    f"{self.directory}; available steps: {self.all_steps()}")
        failed = []
        for s in steps:
            try:
                out = self.restore(abstract_state, s)
            except CheckpointCorrupt as e:
                say(str(e))
                failed.append(s)
                continue
            if failed:
                say(f"using checkpoint {s} (verified) instead of {failed[0]}")
            if set_aside and failed:
                self._set_aside(failed, say)
            return out
        raise CheckpointCorrupt(failed[0], self.directory,
                                f"and so did every older one ({failed[1:]}); no verified checkpoint to restore")

    def _set_aside(self, steps: list[int], say: Callable[[str], None]) -> None:
        def move():
            aside = self.directory.parent / FAILED_CHECKPOINTS
            aside.mkdir(exist_ok=True)
            for s in steps:
                target = aside / f"{s}.{time.strftime('%Y%m%d-%H%M%S')}"
                os.rename(self.directory / str(s), target)
                say(f"moved failed checkpoint {s} to {target}")

        distributed.on_main(move)  # process 0 moves them; the others wait for it
        self.manager.reload()

    def latest_verified(self, abstract_state) -> int | None:
        """Step of the newest checkpoint on disk that verifies (None if there is none); reads quietly.

        Waits for pending saves first.
        """
        self.wait()
        for s in reversed(self.all_steps()):
            try:
                self.restore(abstract_state, s)
                return s
            except CheckpointCorrupt:
                continue
        return None

    def close(self) -> None:
        if self.manager is not None:
            try:
                self.wait()
            finally:
                self.manager.close()
