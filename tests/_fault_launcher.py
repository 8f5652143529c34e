"""Test-only launcher: ``python tests/_fault_launcher.py train ...`` = ``mjxmeta train ...`` with faults.

Environment variables (all optional):

* ``SLOW_CHUNK=c`` / ``SLOW_CHUNK_SECONDS=t`` (default 20): before the ``c``-th
  call of ``Trainer.run_chunk`` (1-based) print ``CHUNK_IN_FLIGHT c`` to
  stdout (flushed) and sleep ``t`` seconds, so a test that sees the marker can
  signal the process while chunk ``c`` is in flight.
* ``FAIL_SAVE_NTH=n`` / ``FAIL_SAVE_ERRNO`` (default ENOSPC): the ``n``-th
  checkpoint commit raises ``OSError(errno, strerror, <tmp dir>)`` inside
  Orbax's background thread, where a full disk or a read-only / removed
  directory surfaces (orbax 0.12.8: ``atomicity.on_commit_callback`` renames
  ``<step>.orbax-checkpoint-tmp`` to ``<step>``). It prints ``SAVE_FAILED <step>``.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from orbax.checkpoint._src.path import atomicity

import mjxmeta.cli
from mjxmeta.trainer import Trainer

_SLOW = int(os.environ.get("SLOW_CHUNK", "0"))
_FAIL = int(os.environ.get("FAIL_SAVE_NTH", "0"))
_real_chunk = Trainer.__dict__["run_chunk"]  # functools.cached_property
_real_commit = atomicity.on_commit_callback
_commits = [0]


def _slow_run_chunk(self):
    wrapper = self.__dict__.get("_slow_run_chunk")
    if wrapper is None:
        real = _real_chunk.__get__(self, Trainer)
        calls = [0]

        def wrapper(state):
            calls[0] += 1
            if calls[0] == _SLOW:
                print(f"CHUNK_IN_FLIGHT {_SLOW}", flush=True)
                time.sleep(float(os.environ.get("SLOW_CHUNK_SECONDS", "20")))
            return real(state)

        self.__dict__["_slow_run_chunk"] = wrapper
    return wrapper


async def _failing_commit(tmp_dir, *args, **kwargs):
    _commits[0] += 1
    if _commits[0] == _FAIL:
        code = getattr(errno, os.environ.get("FAIL_SAVE_ERRNO", "ENOSPC"))
        print(f"SAVE_FAILED {tmp_dir.get_final().name}", flush=True)
        raise OSError(code, os.strerror(code), str(tmp_dir.get()))
    return await _real_commit(tmp_dir, *args, **kwargs)


if _SLOW:
    Trainer.run_chunk = property(_slow_run_chunk)
if _FAIL:
    atomicity.on_commit_callback = _failing_commit

if __name__ == "__main__":
    sys.exit(mjxmeta.cli.main(sys.argv[1:]))
