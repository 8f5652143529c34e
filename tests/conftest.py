"""Shared helpers for the trainer and CLI tests.

Everything here runs on the pure-JAX ``pendulum`` env (compiles in seconds);
MJX envs are avoided. The device count is left alone (no XLA_FLAGS).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile
from typing import Any

# JAX's persistent compilation cache (mjxmeta.runs.compile_cache, and with it the traced programs of
# mjxmeta.runs.program_cache) goes to ONE directory per test session, removed at exit, never the user's cache: set
# before JAX reads its environment; subprocesses of the tests inherit it. Under pytest-xdist the controller process
# imports this file before it starts the workers, creates the directory and passes it to them in SESSION_CACHE_VAR;
# a worker (PYTEST_XDIST_WORKER set) reuses it, so a program compiled in one worker or its subprocesses is loaded,
# not compiled again, by the others. Only the process that created the directory removes it.
SESSION_CACHE_VAR = "MJXMETA_TEST_SESSION_JAX_CACHE"
_inherited = os.environ.get(SESSION_CACHE_VAR, "") if os.environ.get("PYTEST_XDIST_WORKER") else ""
if _inherited and os.path.isdir(_inherited):
    TEST_JAX_CACHE = _inherited
else:
    TEST_JAX_CACHE = tempfile.mkdtemp(prefix="mjxmeta-test-jax-cache-")
    os.environ[SESSION_CACHE_VAR] = TEST_JAX_CACHE
    atexit.register(shutil.rmtree, TEST_JAX_CACHE, ignore_errors=True)
os.environ["JAX_COMPILATION_CACHE_DIR"] = TEST_JAX_CACHE

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", TEST_JAX_CACHE)  # in case a plugin imported JAX earlier

from mjxmeta.algo.config import Config, MetaConfig, StudentConfig, TeacherConfig  # noqa: E402

# Fields of the sub-configs, so ``small_config`` can route flat overrides.
_STUDENT_FIELDS = {f.name for f in dataclasses.fields(StudentConfig)}
_TEACHER_FIELDS = {f.name for f in dataclasses.fields(TeacherConfig)}
_META_FIELDS = {f.name for f in dataclasses.fields(MetaConfig)}

SMALL_STUDENT = dict(hidden=(16, 16), buffer_size=20_000, batch_size=32)
SMALL_TEACHER = dict(hidden=(16, 16))
SMALL_META = dict(return_horizon=50)
SMALL_TOP = dict(env="pendulum", rollout_steps=50, log_every=2, eval_envs=2, seeds=1)


def small_config(teacher: str = "meta", **overrides: Any) -> Config:
    """A tiny ``pendulum`` Config: 16-16 nets, buffer 20k, batch 32, T = 50, H = 50.

    Overrides may be flat or prefixed:

    * top-level ``Config`` fields (``seeds=3``, ``total_steps=...``);
    * ``student_<field>``, ``teacher_<field>``, ``meta_<field>`` for the
      sub-configs (``student_batch_size=64``, ``meta_candidates=3``); an
      unprefixed name that only exists in one sub-config (``batch_size``,
      ``candidates``, ``return_envs``) is routed there too.
    """
    student = dict(SMALL_STUDENT)
    teacher_kw = dict(SMALL_TEACHER, name=teacher)
    meta = dict(SMALL_META)
    top = dict(SMALL_TOP)
    top_fields = {f.name for f in dataclasses.fields(Config)}
    for key, value in overrides.items():
        if key.startswith("student_") and key[8:] in _STUDENT_FIELDS:
            student[key[8:]] = value
        elif key.startswith("teacher_") and key[8:] in _TEACHER_FIELDS:
            teacher_kw[key[8:]] = value
        elif key.startswith("meta_") and key[5:] in _META_FIELDS:
            meta[key[5:]] = value
        elif key in top_fields:
            top[key] = value
        elif key in _STUDENT_FIELDS and key not in _TEACHER_FIELDS:
            student[key] = value
        elif key in _META_FIELDS:
            meta[key] = value
        elif key in _TEACHER_FIELDS and key not in _STUDENT_FIELDS:
            teacher_kw[key] = value
        else:
            raise TypeError(f"small_config: unknown or ambiguous override {key!r}")
    return Config(student=StudentConfig(**student), teacher=TeacherConfig(**teacher_kw),
                  meta=MetaConfig(**meta), **top)


def leaf_signature(tree) -> tuple:
    """(treedef, [(shape, dtype, weak_type)]) of every leaf: what jit's cache keys on."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, [(tuple(x.shape), x.dtype, x.weak_type) for x in leaves]


def tree_index(tree, i: int):
    """Leaf-wise ``x[i]`` (picks one seed out of a vmapped state)."""
    return jax.tree.map(lambda x: x[i], tree)


@pytest.fixture
def small_cfg():
    """The ``small_config`` factory as a fixture."""
    return small_config


@pytest.fixture(autouse=True)
def _program_store_per_test():
    """An in-process ``mjxmeta train`` turns on mjxmeta.runs.program_cache; later tests start without it."""
    from mjxmeta.runs import program_cache

    before = program_cache.directory()
    yield
    program_cache.enable(before.parent if before is not None else None)


# Test files that take longest, longest first (measured with ``--durations``, see .ci/run). pytest-xdist's
# ``--dist loadfile`` hands whole files to the workers in collection order (``--no-loadscope-reorder`` in
# pyproject.toml; xdist's default order is by test count, which starts the many quick parametrized files first and
# leaves a long file for last on one worker while the other idles). Starting the long files first lets the short ones
# fill in beside them. Only the order changes: every test still runs, in its file's own order.
SLOW_FILES_FIRST = (  # summed --durations of their slowest tests, 2 workers on a loaded 2-core machine (2026-12-08)
    "test_trainer.py",        # ~970 s
    "test_env_semantics.py",  # ~830 s (MJX envs: hopper, halfcheetah, ...)
    "test_sweep.py",          # ~730 s
    "test_meta_options.py",   # ~570 s
    "test_teacher_resume.py",  # ~450 s
    "test_faults.py",         # >= 440 s (module-scoped subprocess runs)
    "test_checkpoint.py",     # ~410 s (module-scoped subprocess runs)
    "test_distributed.py",    # ~340 s (module-scoped subprocess runs)
    "test_bench.py",          # ~310 s
    "test_td3.py",            # ~250 s
    "test_render.py",         # ~160 s
    "test_brax_baselines.py",  # ~150 s
    "test_cli.py",            # ~140 s
    "test_compile_cache.py",  # ~110 s
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: keeps the order within a file
