"""Test-only launcher: ``python tests/_slow_save_launcher.py train ...`` = ``mjxmeta train ...``
with Orbax's step commit made observable and, once, slow.

Orbax (0.12.8) writes checkpoint step ``S`` into ``checkpoints/S.orbax-checkpoint-tmp``
from a background thread; when every item has been written it calls
``orbax.checkpoint._src.path.atomicity.on_commit_callback(tmp_dir, ...)``, which
writes ``commit_success.txt`` and renames the directory to ``checkpoints/S``.
This launcher wraps that function. Before each commit it prints

    SAVE_STARTED <step> <temporary directory>

to stdout (flushed). At the ``SLOW_SAVE_NTH``-th commit (env var, 1-based,
default 2) it then sleeps ``SLOW_SAVE_SECONDS`` (default 600) before committing,
so a test that sees that marker can ``kill -9`` the process while the
temporary directory exists and the step is not finalized. The process cannot
get past the next save meanwhile (``CheckpointManager.save`` waits for the
pending one), so it is parked there deterministically.
"""

from __future__ import annotations

import os
import sys
import time

from orbax.checkpoint._src.path import atomicity

import mjxmeta.cli

_original = atomicity.on_commit_callback
_count = 0


async def _observable_commit(tmp_dir, *args, **kwargs):
    global _count
    _count += 1
    final = tmp_dir.get_final()
    print(f"SAVE_STARTED {final.name} {tmp_dir.get()}", flush=True)
    if _count == int(os.environ.get("SLOW_SAVE_NTH", "2")):
        time.sleep(float(os.environ.get("SLOW_SAVE_SECONDS", "600")))
    return await _original(tmp_dir, *args, **kwargs)


atomicity.on_commit_callback = _observable_commit

if __name__ == "__main__":
    sys.exit(mjxmeta.cli.main(sys.argv[1:]))
