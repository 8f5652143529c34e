"""Seeds across processes (hosts): start-up, agreement between processes, host copies of global arrays.

A run with ``P`` processes (``jax.distributed``) keeps the seed axis S of the
batched train state on one ``Mesh(jax.devices(), ('seed',))`` over all
``D`` global devices (:meth:`mjxmeta.runs.programs.Programs.seed_sharding`); S must
be a multiple of D, each device holds S/D consecutive seeds and each process
computes the seeds of its own devices. Nothing inside a training chunk
communicates between seeds, so processes only meet at log points (gathering
the per-seed metrics and evaluation returns, :func:`to_host`), at checkpoint
saves and restores (Orbax writes each process's shards of the global arrays)
and where process 0 alone touches the run directory (lock, ``config.json``,
``metrics.jsonl``, TensorBoard): :func:`on_main` runs such a step on process 0
and hands its result, or its failure, to every process, so all processes take
the same branch. Every function here that says "collective" must be called by
all processes in the same order.

With one process (the default) every function is a plain local operation.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import numpy as np

from mjxmeta.algo.config import Config, ConfigError

# jax.distributed.initialize() without arguments detects these launchers (jax 0.10: jax/_src/clusters/).
AUTO_DETECTED = ("SLURM (srun: SLURM_JOB_ID, SLURM_STEP_NODELIST, SLURM_NTASKS, SLURM_PROCID, SLURM_LOCALID)",
                 "Open MPI (mpirun: OMPI_MCA_orte_hnp_uri)",
                 "Cloud TPU pods (the TPU VM metadata server; TPU_WORKER_ID, TPU_WORKER_HOSTNAMES)",
                 "Kubernetes JobSets (with the kubernetes package installed)")


class PeerFailed(RuntimeError):
    """Process 0 failed a step it alone runs (:func:`on_main`); raised on the other processes.

    Attributes:
      kind: the class name of process 0's exception (e.g. ``"RunDirError"``);
        the CLI exits with the code of that class.
    """

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(f"{message} (reported by process 0)")


# ------------------------------------------------------------------ start-up
def check_flags(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Checks the ``--coordinator/--num-processes/--process-id`` values given (None = not given).

    Raises:
      ConfigError: naming the flag: coordinator not ``HOST:PORT``, a process
        count < 1, or a process id outside ``[0, num_processes)``.
    """
    if coordinator is not None and not re.fullmatch(r"[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", coordinator):
        raise ConfigError("coordinator", coordinator, "HOST:PORT of process 0, e.g. node001:12355")
    if num_processes is not None and num_processes < 1:
        raise ConfigError("num_processes", num_processes, "an integer >= 1")
    if process_id is not None and (process_id < 0 or (num_processes is not None and process_id >= num_processes)):
        raise ConfigError("process_id", process_id,
                          f"an integer in [0, {num_processes})" if num_processes else "an integer >= 0")


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               auto: bool = False) -> bool:
    """Connects this process to the others with ``jax.distributed.initialize`` (before any other JAX use).

    Args:
      coordinator, num_processes, process_id: as ``jax.distributed.initialize``;
        any one not given is detected from the launcher's environment
        (:data:`AUTO_DETECTED`) or ``JAX_COORDINATOR_ADDRESS``.
      auto: initialize even if none of the three is given (a cluster launcher
        sets everything).

    Returns:
      True if ``jax.distributed`` was initialized (False: nothing given, one process).

    Raises:
      ConfigError: (field ``distributed``) the values cannot be completed from
        the environment or the coordinator cannot be reached.
    """
    if not auto and (coordinator, num_processes, process_id) == (None, None, None):
        return False
    check_flags(coordinator, num_processes, process_id)
    import jax

    # Cross-process collectives of the CPU backend (this machine, and the test); GPUs/TPUs use NCCL/ICI.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    except (ValueError, RuntimeError) as e:
        given = {k: v for k, v in (("coordinator", coordinator), ("num_processes", num_processes),
                                   ("process_id", process_id)) if v is not None}
        raise ConfigError("distributed", given or "auto-detect",
                          "--coordinator HOST:PORT --num-processes P --process-id I, or a launcher jax detects: "
                          + "; ".join(AUTO_DETECTED) + f" ({' '.join(str(e).split())[:300]})") from None
    return True


def process_count() -> int:
    import jax

    return jax.process_count()


def is_main() -> bool:
    """True on process 0 (the only one that writes the run directory's files besides checkpoints)."""
    import jax

    return jax.process_index() == 0


def describe() -> str:
    """``", P processes, D devices"`` for the start line of a run with several processes ("" with one)."""
    import jax

    p = jax.process_count()
    return f", {p} processes, {jax.device_count()} devices" if p > 1 else ""


def check_seeds(config: Config) -> None:
    """With several processes, the runs R (seeds x sweep combinations) must be a multiple of the global device
    count (every device holds R/D runs).

    Raises:
      ConfigError: (field ``seeds``) naming the device and process counts.
    """
    import jax

    d, p = jax.device_count(), jax.process_count()
    if p > 1 and config.num_runs % d:
        accepted = (f"a number that makes seeds x {config.num_points} sweep combinations a multiple of the {d} "
                    f"devices of the {p} processes (each device holds R/{d} runs)") if config.sweep else (
            f"a multiple of the {d} devices of the {p} processes (each device holds S/{d} seeds)")
        raise ConfigError("seeds", config.seeds, accepted)


# ------------------------------------------------------- agreement (collective)
def broadcast_json(value: Any) -> Any:
    """Process 0's JSON-serializable ``value`` on every process (collective; others pass anything)."""
    if process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8) if is_main() else np.zeros(0, np.uint8)
    n = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    buf = np.zeros(n, np.uint8)
    buf[:data.size] = data
    return json.loads(bytes(np.asarray(multihost_utils.broadcast_one_to_all(buf))).decode())


def on_main(fn: Callable[[], Any]) -> Any:
    """Runs ``fn`` on process 0 only and returns its (JSON-serializable) result on every process (collective).

    Raises:
      whatever ``fn`` raised, on process 0; :class:`PeerFailed` (its class
      name and message) on the others.
    """
    if process_count() == 1:
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as e:  # handed to every process, then re-raised here
            error = e
    shared = broadcast_json({"error": [type(error).__name__, str(error)]} if error is not None else {"ok": result})
    if error is not None:
        raise error
    if "error" in shared:
        raise PeerFailed(*shared["error"])
    return shared["ok"]


def any_process(flag: bool) -> bool:
    """True on every process if ``flag`` is true on any (collective)."""
    if process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.array(bool(flag)))))


# ------------------------------------------------------------- global arrays
def to_host(tree: Any) -> Any:
    """``jax.device_get`` that also works for arrays spread over processes (collective when P > 1).

    Arrays not fully addressable from this process are gathered with
    ``multihost_utils.process_allgather(tiled=True)``, so every process gets
    the whole (S, ...) value.
    """
    import jax

    if process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(lambda x: multihost_utils.process_allgather(x, tiled=True)
                        if isinstance(x, jax.Array) and not x.is_fully_addressable else np.asarray(x), tree)


def global_array(value: Any, sharding) -> Any:
    """A ``jax.Array`` with ``sharding`` from ``value`` (host or local, the same on every process).

    Each process copies only the slices its devices hold
    (``jax.make_array_from_callback``); with one process this is ``jax.device_put``.
    """
    import jax

    if process_count() == 1:
        return jax.device_put(value, sharding)
    if isinstance(value, jax.Array) and value.sharding == sharding:
        return value
    host = np.asarray(jax.device_get(value))
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
