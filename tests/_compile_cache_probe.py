"""Test-only helper: ``python tests/_compile_cache_probe.py ARGV...`` runs ``mjxmeta.cli.main(ARGV)`` in this
process and prints, as its last stdout line, JSON of what JAX's persistent compilation cache did:

* ``hits`` / ``misses``: counts of the monitoring events ``/jax/compilation_cache/cache_hits`` and
  ``/jax/compilation_cache/cache_misses``;
* ``saved_s``: sum of ``/jax/compilation_cache/compile_time_saved_sec`` (compile time the hits skipped);
* ``hit_modules``: the XLA module names JAX logs a hit for (e.g. ``jit_run_chunk``);
* ``traced``: the functions JAX traced to a jaxpr (``/jax/core/compile/jaxpr_trace_duration``), by name;
* ``rc``: the exit code of ``main``.
"""

from __future__ import annotations

import json
import logging
import sys

import jax.monitoring

counts = {"hits": 0, "misses": 0, "saved_s": 0.0, "hit_modules": [], "traced": []}


def on_event(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        counts["hits"] += 1
    elif event == "/jax/compilation_cache/cache_misses":
        counts["misses"] += 1


def on_duration(event: str, duration: float, **kwargs) -> None:
    if event == "/jax/compilation_cache/compile_time_saved_sec":
        counts["saved_s"] += duration
    elif event == "/jax/core/compile/jaxpr_trace_duration":
        counts["traced"].append(kwargs.get("fun_name"))


class HitNames(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Persistent compilation cache hit for"):
            counts["hit_modules"].append(record.args[0])


jax.monitoring.register_event_listener(on_event)
jax.monitoring.register_event_duration_secs_listener(on_duration)
compiler_log = logging.getLogger("jax._src.compiler")
compiler_log.setLevel(logging.DEBUG)
compiler_log.addHandler(HitNames(logging.DEBUG))

from mjxmeta.cli import main  # noqa: E402

counts["rc"] = main(sys.argv[1:])
print(json.dumps(counts))
