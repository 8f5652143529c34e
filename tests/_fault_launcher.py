"""Test-only launcher: ``python tests/_fault_launcher.py train ...`` = ``mjxmeta train ...`` with faults.

Two functions of a running trainer are wrapped, each only if one of its
environment variables is set (counts are 1-based):

``Programs.run_chunk`` (a ``functools.cached_property``; wrapped per trainer):

* ``POISON_CHUNK=c`` / ``POISON_SEED=s`` (default 1): before the ``c``-th
  call the output bias of seed ``s``'s critic is set to NaN in the input
  state, every other seed and leaf untouched; the real jitted chunk then
  spreads it through that seed's Q values, losses and parameters as a
  diverging update would, and the run's own non-finite guard has to catch it.
  Prints ``POISONED chunk=<c> seed=<s>``. (Absurd learning rates on the tiny
  setup diverge in the first iteration or never, so a later chunk needs this.)
* ``SLOW_CHUNK=c`` / ``SLOW_CHUNK_SECONDS=t`` (default 20): before the
  ``c``-th call print ``CHUNK_IN_FLIGHT <c>`` and park ``t`` seconds, so a
  test that sees the marker can signal the process while chunk ``c`` is in
  flight. With ``SLOW_CHUNK_GATE=<path>`` the chunk is parked until that file
  exists (``t`` only bounds the wait): the test decides when the chunk goes
  on, so what happens in it does not depend on how fast anything runs.

Orbax's step commit (orbax 0.12.8: ``atomicity.on_commit_callback`` writes
``commit_success.txt`` and renames ``checkpoints/<step>.orbax-checkpoint-tmp``
to ``checkpoints/<step>`` from a background thread), which prints
``SAVE_STARTED <step> <temporary directory>`` before each commit:

* ``SLOW_SAVE_NTH=n`` / ``SLOW_SAVE_SECONDS=t`` (default 600): the ``n``-th
  commit sleeps ``t`` seconds first, so a test can ``kill -9`` the process
  while the step is unfinalized (the next save cannot start meanwhile: it
  waits for the pending one). ``SLOW_SAVE_GATE=<path>``: parked until that
  file exists instead (``t`` bounds the wait).
* ``FAIL_SAVE_NTH=n`` / ``FAIL_SAVE_ERRNO`` (default ENOSPC): the ``n``-th
  commit raises ``OSError(errno, strerror, <tmp dir>)`` where a full disk or a
  read-only or removed directory surfaces. Prints ``SAVE_FAILED <step>``.

TensorStore's array writes (``serialization.async_serialize_from_host``,
run by Orbax's save threads):

* ``FAIL_WRITE_STEP=s``: every array write of checkpoint ``s`` raises the
  error TensorStore raises on a full disk, ``ValueError("RESOURCE_EXHAUSTED:
  Error writing local file \"<file>\": ... No space left on device
  [os_error_code='28']")`` (a ValueError, not an OSError: what a real full
  disk gives, and what Orbax logs from each of its threads). Prints
  ``WRITE_FAILED <s>`` once.

Every marker goes to stdout, flushed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import time

import jax
import jax.numpy as jnp
from orbax.checkpoint._src.path import atomicity
from orbax.checkpoint._src.serialization import serialization

import mjxmeta.cli
from mjxmeta.runs.programs import Programs


def _env(name: str, default: str = "0") -> str:
    return os.environ.get(name, default)


_POISON, _POISON_SEED = int(_env("POISON_CHUNK")), int(_env("POISON_SEED", "1"))
_SLOW = int(_env("SLOW_CHUNK"))
_SLOW_SAVE, _FAIL_SAVE = int(_env("SLOW_SAVE_NTH")), int(_env("FAIL_SAVE_NTH"))
_FAIL_WRITE = int(_env("FAIL_WRITE_STEP"))
_real_write = serialization.async_serialize_from_host
_write_failed = []
_real_chunk = Programs.__dict__["run_chunk"]
_real_commit = atomicity.on_commit_callback
_commits = [0]


def _poison(path, x):
    name = jax.tree_util.keystr(path)
    return x.at[_POISON_SEED].set(jnp.nan) if "output" in name and "bias" in name else x


def _park(gate: str, seconds: float) -> None:
    """Sleeps ``seconds``, or with a ``gate`` path until that file exists (at most ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (gate and os.path.exists(gate)):
        time.sleep(0.05 if gate else max(deadline - time.monotonic(), 0.0))


def _before_chunk(call: int, state):
    """The state the ``call``-th chunk runs on (after the faults planned for it)."""
    if call == _SLOW:
        print(f"CHUNK_IN_FLIGHT {call}", flush=True)
        _park(_env("SLOW_CHUNK_GATE", ""), float(_env("SLOW_CHUNK_SECONDS", "20")))
    if call == _POISON:
        critic = jax.tree_util.tree_map_with_path(_poison, state.student.critic)
        state = state.replace(student=state.student.replace(critic=critic))
        print(f"POISONED chunk={call} seed={_POISON_SEED}", flush=True)
    return state


def _faulty_run_chunk(self):
    wrapper = self.__dict__.get("_faulty_run_chunk")
    if wrapper is None:
        real = _real_chunk.__get__(self, Programs)
        calls = [0]

        def wrapper(state):
            calls[0] += 1
            return real(_before_chunk(calls[0], state))

        self.__dict__["_faulty_run_chunk"] = wrapper
    return wrapper


async def _faulty_commit(tmp_dir, *args, **kwargs):
    _commits[0] += 1
    step = tmp_dir.get_final().name
    print(f"SAVE_STARTED {step} {tmp_dir.get()}", flush=True)
    if _commits[0] == _SLOW_SAVE:
        _park(_env("SLOW_SAVE_GATE", ""), float(_env("SLOW_SAVE_SECONDS", "600")))
    if _commits[0] == _FAIL_SAVE:
        code = getattr(errno, _env("FAIL_SAVE_ERRNO", "ENOSPC"))
        print(f"SAVE_FAILED {step}", flush=True)
        raise OSError(code, os.strerror(code), str(tmp_dir.get()))
    return await _real_commit(tmp_dir, *args, **kwargs)


async def _faulty_write(value, tspec, *args, **kwargs):
    where = re.search(rf'[^"]*/{_FAIL_WRITE}\.orbax-checkpoint-tmp/[^"]*', json.dumps(tspec, default=str))
    if where:
        if not _write_failed:
            _write_failed.append(True)
            print(f"WRITE_FAILED {_FAIL_WRITE}", flush=True)
        path = where[0].removeprefix("file://")
        raise ValueError(f'RESOURCE_EXHAUSTED: Error writing local file "{path}": Failed writing: "{path}.__lock": '
                         f"Failed to write 4096 bytes to file 9: No space left on device [os_error_code='28']")
    return await _real_write(value, tspec, *args, **kwargs)


if _POISON or _SLOW:
    Programs.run_chunk = property(_faulty_run_chunk)
if _SLOW_SAVE or _FAIL_SAVE:
    atomicity.on_commit_callback = _faulty_commit
if _FAIL_WRITE:
    serialization.async_serialize_from_host = _faulty_write

if __name__ == "__main__":
    sys.exit(mjxmeta.cli.main(sys.argv[1:]))
