"""The run directory as a resource: one owner at a time, never overwritten by accident.

* :class:`RunLock` -- an exclusive OS-level lock (``fcntl.flock`` on
  ``RUN/.lock``, which holds the owner's PID and host) for the life of a
  ``train`` process. The kernel drops a ``flock`` when its process dies, so a
  lock file left by a killed process is *stale*: the next owner takes it over
  and says so. Released (and the file removed) on every normal exit path.
* :func:`claim_fresh` -- a new ``train`` (no ``--resume``) creates and locks its
  directory and refuses one that already holds a run; ``overwrite=True`` moves
  the old run aside to ``RUN.old-<YYYYmmdd-HHMMSS>`` instead of deleting it.
* :func:`load_config` -- ``config.json`` read with one-line errors;
  :func:`dict_differences` compares configs field by field (a resume checks
  its config against the checkpoint's with it: :mod:`mjxmeta.runs.resume`).

``metrics.jsonl`` on resume (rows at or before the checkpoint checked for
completeness, malformed and missing rows reported) belongs to the sink that
writes it: :class:`mjxmeta.runs.sinks.JsonlSink`.

Errors are :class:`RunDirError` (exit code 2 in the CLI); a config that
cannot be resumed is :class:`ResumeError` (exit 4); a ``.lock`` that cannot be
opened, or a run directory deleted or moved under a running train
(:meth:`RunLock.check`), is an ``OSError`` naming the path (exit 5).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from mjxmeta.algo.config import Config, ConfigError, from_dict, to_dict

# The layout of a run directory (visitation dumps: :mod:`mjxmeta.tools.visitation`).
CONFIG = "config.json"
METRICS = "metrics.jsonl"
VISITS = "visitation"  # RUN/visitation/iter_<iteration>.npy: (S, samples, obs_size) raw D0 observations
CHECKPOINTS = "checkpoints"  # Orbax's step directories (:class:`mjxmeta.runs.checkpoint.Checkpointer`)
FAILED_CHECKPOINTS = "failed_checkpoints"  # checkpoints that failed verification, set aside on resume
TENSORBOARD = "tensorboard"
LOCK = ".lock"
RUN_FILES = (CONFIG, METRICS, CHECKPOINTS)  # any of these means "this directory holds a run"
RUNS_ROOT = Path(CHECKPOINTS)  # parent of the run directories named by default: checkpoints/<env>-<teacher>-<time>


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (held by another process, or already holds a run)."""


class ResumeError(RuntimeError):
    """The run cannot be resumed with the given config (message lists the differing fields)."""


# ------------------------------------------------------------------------ lock
_HELD: dict[str, "RunLock"] = {}  # realpath -> lock held by this process (the lock is re-entrant per process)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


class RunLock:
    """Exclusive lock on a run directory for the life of this process (or until :meth:`release`).

    ``RunLock(run_dir).acquire()`` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on
    ``run_dir/.lock`` and writes ``{"pid", "host", "since"}`` into it. The
    lock is re-entrant within one process: acquiring a directory this process
    already holds returns the held lock. A lock file whose ``flock`` is free
    was left by a process that died (the kernel released its lock); it is
    taken over with a one-line note on stderr.

    Raises (from :meth:`acquire`):
      RunDirError: another live process holds the lock; the message names its
        PID and host.
      OSError: ``.lock`` cannot be opened (a directory of that name, a
        read-only directory or file system); ``filename`` is its path.
    """

    def __init__(self, run_dir: str | Path, created: bool = False):
        self.run_dir = Path(run_dir)
        self.created = created  # this process made run_dir: the last release removes it if it is still empty
        self.path = self.run_dir / LOCK
        self._fd: int | None = None
        self._depth = 0
        self._owner: RunLock = self  # the object holding the flock (another one if re-entered)

    def acquire(self) -> "RunLock":
        key = os.path.realpath(self.run_dir)
        held = _HELD.get(key)
        if held is not None:
            held._depth += 1
            self._owner = held
            return held
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:  # a directory named .lock, a read-only directory or file system, ...
                raise OSError(e.errno, f"cannot open the run's lock file ({e.strerror}); a train needs to create "
                                       f"and lock it", str(self.path)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                info = _holder(self.path)
                raise RunDirError(
                    f"run directory {self.run_dir} is in use by another train process (PID {info.get('pid', '?')} "
                    f"on host {info.get('host', '?')}, since {info.get('since', '?')}); wait for it or stop it, "
                    f"or use another --run-dir") from None
            # The file may have been unlinked by its previous owner between our open and flock: retry then.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _holder(self.path)
        if stale.get("pid"):
            alive = stale.get("host") == socket.gethostname() and _pid_alive(int(stale["pid"]))
            print(f"mjxmeta: note: taking over the stale lock of {self.run_dir} left by PID {stale['pid']} on host "
                  f"{stale.get('host', '?')} ({'alive but not holding it' if alive else 'no longer running'})",
                  file=sys.stderr)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        os.fsync(fd)
        self._fd, self._depth = fd, 1
        _HELD[key] = self
        return self

    def check(self) -> None:
        """Raises OSError(ENOENT, filename ``run_dir``) if the locked ``.lock`` is no longer at ``run_dir/.lock``:
        the run directory was deleted, moved or replaced while this process held it."""
        fd = self._owner._fd
        if fd is None:
            return
        try:
            held, there = os.fstat(fd), os.stat(self.path)
            same = held.st_nlink > 0 and (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)
        except FileNotFoundError:
            same = False
        if not same:
            raise OSError(errno.ENOENT, "the run directory was deleted or moved while this run was writing it; "
                                        "stopped before writing more rows or checkpoints into it", str(self.run_dir))

    def release(self, unlink: bool = True) -> None:
        """Drops one level of the lock; at the outermost level removes the file and unlocks (and removes a
        directory this process created that is still empty: a refused start leaves nothing behind)."""
        if self._owner is not self:
            owner, self._owner = self._owner, self
            return owner.release(unlink)
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        _HELD.pop(os.path.realpath(self.run_dir), None)
        if unlink:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        if unlink and self.created:
            try:
                self.run_dir.rmdir()
            except OSError:  # not empty: the run wrote something
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ------------------------------------------------------------ fresh run dirs
def holds_run(run_dir: Path) -> bool:
    """True if ``run_dir`` contains ``config.json``, ``metrics.jsonl`` or ``checkpoints/``."""
    return any((run_dir / name).exists() for name in RUN_FILES)


def _aside_name(run_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.old-{stamp}-{n}")
    return target


def prepare_run_dir(run_dir: str | Path | None, config: Config) -> Path:
    """Creates the run directory (default ``checkpoints/<env>-<teacher>-<time>``) and checks it is writable.

    Raises:
      ConfigError: (field ``run_dir``) if it is empty, or cannot be created or written.
    """
    if run_dir is not None and not str(run_dir).strip():
        raise ConfigError("run_dir", str(run_dir), "a non-empty path (use '.' for the current directory)")
    if run_dir is None:
        run_dir = RUNS_ROOT / f"{config.env}-{config.teacher.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = Path(run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_probe-{socket.gethostname()}-{os.getpid()}"  # one per process: every process of a
        # distributed run probes the shared directory at once (mjxmeta.train), none may delete another's probe
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError("run_dir", str(path), f"a writable directory ({e.strerror or e})") from e
    return path


def claim_fresh(run_dir: str | Path | None, config: Config, overwrite: bool = False) -> RunLock:
    """Creates (:func:`prepare_run_dir`) and locks the directory of a new run (no ``--resume``).

    A directory that already holds a run is refused without ``overwrite``.
    With it the old run is renamed to ``RUN.old-<timestamp>`` (while its lock
    is held, so a live trainer's directory is never moved; nothing is
    deleted) and an empty ``run_dir`` is made and locked.

    Returns:
      the acquired :class:`RunLock`; its ``run_dir`` is the directory. If this
      call created it, releasing the lock removes it while it is still empty.

    Raises:
      ConfigError: (field ``run_dir``) as :func:`prepare_run_dir`.
      RunDirError: ``run_dir`` is locked by a live train process, or holds a
        run and ``overwrite`` is False.
    """
    created = run_dir is None or not Path(run_dir).exists()
    path = prepare_run_dir(run_dir, config)
    lock = RunLock(path, created=created).acquire()
    if not holds_run(path):
        return lock
    if not overwrite:
        lock.release()
        present = ", ".join(n for n in RUN_FILES if (path / n).exists())
        raise RunDirError(f"run directory {path} already holds a run ({present}); continue it with --resume "
                          f"{path}, choose a new --run-dir, or pass --overwrite to move the old run aside")
    target = _aside_name(path)
    try:
        os.rename(path, target)
    finally:
        lock.release(unlink=False)
    (target / LOCK).unlink(missing_ok=True)
    path.mkdir()
    print(f"mjxmeta: moved the existing run {path} to {target}", file=sys.stderr)
    return RunLock(path).acquire()


def write_config(run_dir: Path, config: Config) -> None:
    """Writes ``run_dir/config.json`` atomically (a full disk leaves the previous file whole)."""
    tmp = run_dir / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(to_dict(config), indent=2))
    os.replace(tmp, run_dir / CONFIG)


# ----------------------------------------------------------------- config.json
def read_config_json(run_dir: Path) -> dict[str, Any]:
    """The raw JSON object of ``run_dir/config.json``.

    Raises:
      ConfigError: (field ``config.json``) missing, unreadable, not UTF-8, not
        JSON, or not a JSON object.
    """
    path = run_dir / CONFIG
    try:
        d = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError("config.json", str(path), "an existing file (is this a run directory?)") from None
    except OSError as e:
        raise ConfigError("config.json", str(path), f"a readable file ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError("config.json", str(path), f"a JSON object (it does not parse: {e})") from None
    if not isinstance(d, dict):
        raise ConfigError("config.json", str(path), f"a JSON object (it holds a {type(d).__name__})")
    return d


def load_config(run_dir: str | Path) -> Config:
    """The validated :class:`mjxmeta.algo.config.Config` of ``run_dir/config.json``.

    Raises:
      ConfigError: as :func:`read_config_json`, or a field is unknown or invalid.
    """
    return from_dict(read_config_json(Path(run_dir)))


def dict_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``"dotted.name: old -> new"`` for every leaf field that differs, ignoring ``total_steps``.

    A field present on one side only shows as ``<missing>`` on the other, so a
    deleted field never silently takes its default.
    """
    out = []
    for k in sorted(set(old) | set(new)):
        name = f"{prefix}{k}"
        a, b = old.get(k, "<missing>"), new.get(k, "<missing>")
        if name == "total_steps":
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += dict_differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def config_differences(old, new) -> list[str]:
    """:func:`dict_differences` of two Configs (the budget ``total_steps`` may differ)."""
    return dict_differences(plain_dict(old), plain_dict(new))


def plain_dict(config) -> dict[str, Any]:
    return json.loads(json.dumps(to_dict(config)))  # tuples -> lists, as in config.json


def visits_path(run_dir: str | Path, iteration: int) -> Path:
    """Where the D0 sample of the chunk ending at ``iteration`` is stored."""
    return Path(run_dir) / VISITS / f"iter_{iteration:07d}.npy"
