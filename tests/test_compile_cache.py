"""JAX's persistent compilation cache (:mod:`mjxmeta.runs.compile_cache`): where it goes, and that a second
``mjxmeta train`` process of the same config loads its programs from it instead of compiling.

The hit test counts JAX's own monitoring events and logged module names (``_compile_cache_probe.py``), not
wall-clock time, so it holds on a loaded machine. Its cache lives under a temporary ``XDG_CACHE_HOME``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import conftest
import jax
import pytest

from mjxmeta.runs import compile_cache, program_cache

PROBE = Path(__file__).with_name("_compile_cache_probe.py")
ROOT = Path(__file__).resolve().parents[1]
# 2 chunks of 2 iterations of 50 env steps (gaussian teacher: no meta compile); a few seconds of compile.
TINY = ["train", "--env", "pendulum", "--teacher", "gaussian", "--seeds", "1", "--hidden", "16,16",
        "--batch-size", "32", "--buffer-size", "2000", "--rollout-steps", "50", "--log-every", "2",
        "--total-steps", "200", "--eval-envs", "2", "--no-progress"]


def test_cache_dir_precedence():
    d = compile_cache.cache_dir
    assert d({"HOME": "/h"}) == Path("/h/.cache/mjxmeta/jax")
    assert d({"HOME": "/h", "XDG_CACHE_HOME": "/x"}) == Path("/x/mjxmeta/jax")
    assert d({"HOME": "/h", "XDG_CACHE_HOME": ""}) == Path("/h/.cache/mjxmeta/jax")  # empty = unset (XDG spec)
    assert d({"HOME": "/h", "XDG_CACHE_HOME": "/x", "JAX_COMPILATION_CACHE_DIR": "/j"}) == Path("/j")
    assert d({"HOME": "/h", "JAX_COMPILATION_CACHE_DIR": ""}) is None  # set but empty: off
    for off in ("0", "false", "OFF", " no "):
        assert d({"HOME": "/h", "MJXMETA_COMPILATION_CACHE": off, "JAX_COMPILATION_CACHE_DIR": "/j"}) is None
    assert d({"HOME": "/h", "MJXMETA_COMPILATION_CACHE": "1"}) == Path("/h/.cache/mjxmeta/jax")


def test_this_test_session_never_writes_the_users_cache():
    """conftest points every test (and its subprocesses) at a temporary directory."""
    here = compile_cache.cache_dir()
    assert here is not None and here == Path(jax.config.jax_compilation_cache_dir)
    assert here.is_relative_to(tempfile.gettempdir())
    assert not here.is_relative_to(Path.home() / ".cache")
    # one directory for the whole session: an xdist worker uses the one its controller created (conftest)
    assert os.environ[conftest.SESSION_CACHE_VAR] == conftest.TEST_JAX_CACHE == str(here)


@pytest.fixture
def restore_jax_cache_options():
    names = ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
             "jax_persistent_cache_min_compile_time_secs", "jax_persistent_cache_min_entry_size_bytes")
    before = {n: getattr(jax.config, n) for n in names}
    yield
    for n, v in before.items():
        jax.config.update(n, v)


def test_enable_sets_the_options_and_respects_the_users(tmp_path, restore_jax_cache_options):
    got = compile_cache.enable({"HOME": str(tmp_path)})
    assert got == tmp_path / ".cache" / "mjxmeta" / "jax" and got.is_dir()
    assert jax.config.jax_compilation_cache_dir == str(got) and jax.config.jax_enable_compilation_cache
    assert jax.config.jax_persistent_cache_min_compile_time_secs == compile_cache.MIN_COMPILE_TIME_SECS
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == -1
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 7.0)
    compile_cache.enable({"HOME": str(tmp_path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "7"})
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 7.0  # the user's value is kept
    assert compile_cache.enable({"HOME": str(tmp_path), "MJXMETA_COMPILATION_CACHE": "0"}) is None
    assert not jax.config.jax_enable_compilation_cache


def test_an_uncreatable_cache_dir_turns_the_cache_off_with_a_warning(tmp_path, capsys, restore_jax_cache_options):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert compile_cache.enable({"JAX_COMPILATION_CACHE_DIR": str(blocker / "jax")}) is None
    assert not jax.config.jax_enable_compilation_cache
    assert f"compilation cache off: cannot create {blocker / 'jax'}" in capsys.readouterr().err


def _probe(run_dir: Path, xdg: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "MJXMETA_COMPILATION_CACHE", "XLA_FLAGS")}
    env.update(XDG_CACHE_HOME=str(xdg), JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(PROBE), *TINY, "--run-dir", str(run_dir)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_of_the_same_config_loads_its_programs_from_the_default_cache(tmp_path):
    xdg = tmp_path / "xdg"
    cache = xdg / "mjxmeta" / "jax"
    first = _probe(tmp_path / "run1", xdg)
    assert first["rc"] == 0 and first["hits"] == 0 and first["misses"] > 0
    written = {p.name.rsplit("-", 2)[0] for p in cache.glob("*-cache")}
    assert {"jit_run_chunk", "jit_evaluate", "jit_init"} <= written, written  # the fused chunk is cached
    programs = {"init", "run_chunk", "evaluate"}  # mjxmeta.runs.program_cache: traced once, stored beside the cache
    traced = {f"export_{p}" for p in programs}  # a trace of the function itself (replays trace as `name`)
    assert traced <= set(first["traced"]), first["traced"]
    stored = {p.name.rsplit("-", 1)[0] for p in (cache / program_cache.SUBDIR).glob("*.pkl")}
    assert stored == programs, stored

    second = _probe(tmp_path / "run2", xdg)
    assert second["rc"] == 0
    assert written <= set(second["hit_modules"]), written - set(second["hit_modules"])
    assert second["hits"] >= len(written) and second["saved_s"] > 0
    assert not traced & set(second["traced"]), second["traced"]  # replayed from the stored programs
    rows = [json.loads(x) for x in (tmp_path / "run2" / "metrics.jsonl").read_text().splitlines()]
    first_rows = [json.loads(x) for x in (tmp_path / "run1" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]  # noqa: E731
    assert strip(rows) == strip(first_rows)  # the loaded programs compute exactly what the compiled ones did


@pytest.mark.parametrize("name,width", [("pendulum", 3), ("inverted_pendulum", 4)])
def test_observation_size_compiles_nothing(name, width):
    """Brax's own ``observation_size`` runs an eager reset (for MJX: ~570 tiny compiles at every start-up)."""
    from mjxmeta.algo.envs import make

    env = make(name)  # (Brax's MJX env construction itself runs ~40 tiny eager compiles, ~1 s)
    compiles = []
    listener = lambda event, duration, **kw: compiles.append(event) if event.endswith("backend_compile_duration") else None  # noqa: E731,E501
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        assert env.observation_size == width
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []  # the widths: pendulum (cos, sin, angular velocity); inverted_pendulum qpos (2), qvel (2)


def test_program_key_of_an_mjx_state_is_the_same_after_a_pickle_round_trip():
    """The stored ``init`` program gives the state's structure unpickled; the chunk's key must not change."""
    import pickle

    import jax.numpy as jnp

    from mjxmeta.algo.envs import make

    env = make("inverted_pendulum")
    tree = jax.tree.structure(jax.eval_shape(env.reset, jax.ShapeDtypeStruct((1, 2), jnp.uint32)))
    assert " at 0x" in str(tree)  # MJX static fields print with their address: str() is no key
    again = pickle.loads(pickle.dumps(tree))
    assert again == tree and program_cache.tree_key(again) == program_cache.tree_key(tree)
