"""Traced programs kept across processes (``jax.export``), so a second run of a config does not trace again.

JAX's persistent compilation cache (:mod:`mjxmeta.runs.compile_cache`) skips XLA's
compile, but only after Python has traced and lowered the program to compute
the cache key, and tracing MJX inside the fused chunk is slow: for ``hopper``
with the ``meta`` teacher, 31 s to trace the chunk, 8 s to trace ``init`` and
7 s to lower both (measured on this project's 2-core CPU machine; the
numbers are in ``experiments/bench/results/``). This module serializes each
jitted entry point once it is traced (``jax.export``: StableHLO plus its
input/output types, flattened to a list of arrays, with the pickled pytree
structures beside it) and, in a later process, calls the stored program
instead of tracing. The wrapper's own compile then hits the persistent cache.

An entry is keyed by the program's name, the caller's ``key`` (the full
config), the input types and shardings, the sources of the ``mjxmeta`` package
and the versions of jax, jaxlib, brax, mujoco, mujoco-mjx, flax, optax,
flashbax and playground (whose envs are traced too): any change there traces anew. Entries live under
``<compilation cache dir>/mjxmeta-programs`` and are on exactly when the
persistent compilation cache is (:func:`enable`, called by
:func:`mjxmeta.runs.compile_cache.enable`), and only with one process and one
device (sharded programs trace as before). A file that fails to load is
ignored and rewritten. Deleting the directory is always safe.

The entries are pickles, and loading a pickle runs whatever code it names:
the directory must be trusted, as JAX's own compilation cache must be (its
entries are executables). It is created with mode 0700 and, if it exists
with a looser mode and belongs to this user, tightened to 0700; do not point
``JAX_COMPILATION_CACHE_DIR`` at a directory others can write.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pickle
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

SUBDIR = "mjxmeta-programs"
_DIR: Path | None = None
_PACKAGES = ("jax", "jaxlib", "brax", "mujoco", "mujoco-mjx", "flax", "optax", "flashbax", "playground")
_fingerprint: str | None = None


def enable(cache_dir: Path | None) -> Path | None:
    """Stores programs under ``cache_dir / SUBDIR`` (None: off), made private (:func:`private_dir`).

    Returns:
      the directory in use, or None (off, or it cannot be created: a warning on stderr).
    """
    global _DIR
    _DIR = None if cache_dir is None else Path(cache_dir) / SUBDIR
    if _DIR is not None:
        try:
            private_dir(_DIR)
        except OSError as e:
            print(f"mjxmeta: warning: stored programs off: cannot create {_DIR}: {e.strerror or e}", file=sys.stderr)
            _DIR = None
    return _DIR


def private_dir(path: Path) -> None:
    """Creates ``path`` (and its parents) with mode 0700, or tightens an existing one of this user to 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        os.chmod(path, 0o700)


def directory() -> Path | None:
    """Where programs are stored, or None when off."""
    return _DIR


def fingerprint() -> str:
    """Hash of the ``mjxmeta`` sources and the library versions a traced program depends on."""
    global _fingerprint
    if _fingerprint is None:
        h = hashlib.sha256()
        for name in _PACKAGES:
            try:
                h.update(f"{name}={importlib.metadata.version(name)};".encode())
            except importlib.metadata.PackageNotFoundError:
                h.update(f"{name}=none;".encode())
        root = Path(__file__).resolve().parent
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in (".py", ".xml"):
                h.update(str(path.relative_to(root)).encode())
                h.update(path.read_bytes())
        _fingerprint = h.hexdigest()
    return _fingerprint


def tree_key(treedef) -> str:
    """A pytree structure as text that is the same in every process: ``str(treedef)`` without the memory
    addresses MJX's static array fields print with (their values follow from the config, part of the key)."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(treedef))


def _usable() -> bool:
    import jax

    return _DIR is not None and jax.process_count() == 1 and jax.device_count() == 1


def _type_of(x) -> str:
    return f"{x.dtype}{list(x.shape)}"  # one device (_usable): the sharding is that device's


def jit(fn: Callable, name: str, key: Any, args: Sequence[Any], *, donate_argnums: Sequence[int] = (),
        out_shardings: Any = None) -> Callable:
    """``jax.jit(fn)`` for arguments shaped like ``args``, traced at most once per key across processes.

    Args:
      fn: the pure function (positional pytree arguments).
      name: the program's name (the compiled module is ``jit_<name>``).
      key: JSON-serializable description of everything ``fn`` closes over
        (e.g. the config as a dict).
      args: the arguments' abstract values (``jax.ShapeDtypeStruct`` pytrees,
        or arrays), the ones every call passes.
      donate_argnums: positional arguments whose buffers are donated.
      out_shardings: as for ``jax.jit`` (used only when the store is off).

    Returns:
      a callable with ``fn``'s signature and output pytree. When the store is
      off (or with several devices) this is ``jax.jit(fn, ...)``. A call whose
      argument structure or types differ from ``args`` falls back to tracing.
    """
    import jax

    plain = jax.jit(fn, donate_argnums=tuple(donate_argnums), out_shardings=out_shardings)
    if not _usable():
        return plain
    leaves, in_tree = jax.tree.flatten(args)
    types = [_type_of(x) for x in leaves]
    digest = hashlib.sha256(json.dumps([name, key, types, tree_key(in_tree), jax.default_backend(), fingerprint()],
                                       sort_keys=True, default=str).encode()).hexdigest()[:32]
    path = _DIR / f"{name}-{digest}.pkl"
    donated = tuple(i for i, (a, _) in enumerate(_leaf_owners(args)) if a in set(donate_argnums))
    exported, out_tree = _load(path)
    if exported is None:
        exported, out_tree = _export(fn, name, args, leaves, in_tree, donated)
        _store(path, exported, out_tree)

    def call_flat(*xs):
        return exported.call(*xs)
    call_flat.__name__ = call_flat.__qualname__ = name  # the compiled module (and cache entry): jit_<name>
    return StoredProgram(jax.jit(call_flat, donate_argnums=donated), plain, exported, in_tree, out_tree, types)


class StoredProgram:
    """A jitted function replayed from its exported program (:func:`jit`); calls like ``jax.jit(fn)``."""

    def __init__(self, flat, plain, exported, in_tree, out_tree, types):
        self._flat, self._plain, self.exported = flat, plain, exported
        self._in_tree, self._out_tree, self._types = in_tree, out_tree, types

    def __call__(self, *args):
        import jax

        xs, tree = jax.tree.flatten(args)
        if tree != self._in_tree or [_type_of(x) for x in xs] != self._types:
            return self._plain(*args)  # other inputs than the stored program's: trace as usual
        return jax.tree.unflatten(self._out_tree, self._flat(*xs))

    def out_shapes(self):
        """The output's ``jax.ShapeDtypeStruct`` tree, without tracing."""
        import jax

        return jax.tree.unflatten(self._out_tree, [jax.ShapeDtypeStruct(a.shape, a.dtype)
                                                   for a in self.exported.out_avals])

    def lower(self, *args):
        """``jax.jit(fn).lower``: traces ``fn`` (for cost analysis and timed compiles)."""
        return self._plain.lower(*args)

    def _cache_size(self) -> int:
        return self._flat._cache_size() + self._plain._cache_size()


def _leaf_owners(args: Sequence[Any]) -> list[tuple[int, Any]]:
    """(positional argument index, leaf) for every leaf of ``args`` in flattening order."""
    import jax

    return [(i, x) for i, a in enumerate(args) for x in jax.tree.leaves(a)]


def _export(fn, name, args, leaves, in_tree, donated):
    import jax
    from jax import export

    out_tree = None

    def flat(*xs):
        nonlocal out_tree
        out = fn(*jax.tree.unflatten(in_tree, xs))
        out_leaves, out_tree = jax.tree.flatten(out)
        return out_leaves
    flat.__name__ = flat.__qualname__ = f"export_{name}"  # what a trace of fn is named (the replay: name)
    abstract = [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)) for x in leaves]
    exported = export.export(jax.jit(flat, donate_argnums=donated))(*abstract)
    return exported, out_tree


def _load(path: Path):
    from jax import export

    try:
        with open(path, "rb") as f:
            blob, out_tree = pickle.load(f)
        return export.deserialize(blob), out_tree
    except FileNotFoundError:
        return None, None
    except Exception as e:  # a truncated or stale file: trace again and overwrite it
        print(f"mjxmeta: warning: ignoring stored program {path}: {type(e).__name__}: {e}", file=sys.stderr)
        return None, None


def _store(path: Path, exported, out_tree) -> None:
    try:
        private_dir(path.parent)
        blob = pickle.dumps((bytes(exported.serialize()), out_tree))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)  # readers see the whole file or none
    except (OSError, pickle.PicklingError, TypeError, AttributeError) as e:
        print(f"mjxmeta: warning: cannot store program {path}: {e}", file=sys.stderr)
