"""JAX's persistent compilation cache, on by default for the ``mjxmeta`` command line.

XLA compiles the fused chunk of an MJX env in tens of seconds (more on a loaded
machine), and every process compiles it afresh. With the cache on, a later run
of the same config (or ``eval``/``render`` of its checkpoints) loads the
compiled programs from disk instead (JAX's ``jax_compilation_cache_dir``; the
key covers the program, its shapes and shardings, the compile options and the
jax/XLA version, so a changed config or upgrade simply compiles anew).

Where the cache lives, in order of precedence:

1. ``MJXMETA_COMPILATION_CACHE=0`` (or ``false``/``no``/``off``): no cache;
2. ``JAX_COMPILATION_CACHE_DIR``: that directory, as JAX itself reads it; set
   but empty: no cache;
3. ``$XDG_CACHE_HOME/mjxmeta/jax``, or ``~/.cache/mjxmeta/jax`` without
   ``XDG_CACHE_HOME``.

Programs that compiled in at least :data:`MIN_COMPILE_TIME_SECS` are written
(JAX's default of 1 s would skip the jitted init and the non-finite check),
whatever their size. ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` and
``JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES``, if set, are left to JAX. The
directory is never pruned (``JAX_COMPILATION_CACHE_MAX_SIZE`` bounds it, with
the ``filelock`` package installed); deleting it is always safe.

The same switch turns on :mod:`mjxmeta.runs.program_cache` (traced programs, in a
``mjxmeta-programs`` subdirectory), so that a second run skips tracing too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

from mjxmeta.runs import program_cache

SWITCH = "MJXMETA_COMPILATION_CACHE"
OFF = ("0", "false", "no", "off")
JAX_DIR = "JAX_COMPILATION_CACHE_DIR"
MIN_COMPILE_TIME_SECS = 0.2
# JAX options this module sets unless the environment already sets them (JAX reads its own variables).
_DEFAULTS = {"jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_TIME_SECS,
             "jax_persistent_cache_min_entry_size_bytes": -1}  # -1: no size floor, none picked for us


def cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The persistent cache directory the rules above pick from ``environ`` (default ``os.environ``).

    Returns:
      the directory (not created), or None when the cache is off.
    """
    env = os.environ if environ is None else environ
    if env.get(SWITCH, "").strip().lower() in OFF:
        return None
    if JAX_DIR in env:
        return Path(env[JAX_DIR]).expanduser() if env[JAX_DIR] else None
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "mjxmeta" / "jax"


def enable(environ: Mapping[str, str] | None = None) -> Path | None:
    """Points JAX's persistent compilation cache at :func:`cache_dir` (or turns it off).

    Call once at start-up, before the first compile: JAX opens the cache at its
    first compile and ignores a later change of directory. An uncreatable
    directory turns the cache off with a warning on stderr (training goes on).

    Returns:
      the cache directory in use, or None.
    """
    import jax

    env = os.environ if environ is None else environ
    path = cache_dir(env)
    if path is not None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"mjxmeta: warning: compilation cache off: cannot create {path}: {e.strerror or e}", file=sys.stderr)
            path = None
    program_cache.enable(path)  # traced programs live beside the compiled ones (mjxmeta.runs.program_cache)
    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    for name, value in _DEFAULTS.items():
        if name.upper() not in env:
            jax.config.update(name, value)
    return path
