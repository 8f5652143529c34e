"""``mjxmeta`` with a timestamped trace of where a run's start-up goes (stderr lines ``[seconds] what``).

    python experiments/bench/startup_trace.py train --env hopper --teacher meta ...

Seconds count from ``MJXMETA_TRACE_T0`` (a ``time.time()`` the caller sets
just before starting the process; default: when this script starts). Marks:
``import jax``, ``import mjxmeta``; ``> X`` / ``< X`` around the trainer's
start-up steps (``Trainer.__init__``, ``abstract_state``, ``init_seeds``,
``run_chunk``, ``evaluate_seeds``, the non-finite check, checkpoint saves),
each ended after its outputs are ready; and JAX's own monitoring durations
above 50 ms (``jaxpr_trace_duration``: Python tracing;
``jaxpr_to_mlir_module_duration``: lowering; ``backend_compile_duration``:
XLA compile or, on a persistent-cache hit, its load;
``cache_retrieval_time_sec``: reading and deserializing a cached executable),
with the function's name. ``targets.py`` reads these lines (second run).
"""

from __future__ import annotations

import os
import sys
import time

T0 = float(os.environ.get("MJXMETA_TRACE_T0") or time.time())


def stamp(msg: str) -> None:
    print(f"[{time.time() - T0:8.2f}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    stamp("python started")
    import jax
    from jax._src import monitoring

    stamp("import jax")

    def on_duration(event: str, duration: float, **kw) -> None:
        if duration > 0.05:
            stamp(f"event {event} {duration:.2f}s {kw.get('fun_name', '')}")

    monitoring.register_event_duration_secs_listener(on_duration)
    import mjxmeta.runs.checkpoint as checkpoint
    import mjxmeta.cli as cli
    import mjxmeta.runs.loop as run
    import mjxmeta.algo.trainer as trainer
    import mjxmeta.runs.programs as programs

    stamp("import mjxmeta")

    def timed(f, label):
        def g(*a, **k):
            stamp(f"> {label}")
            out = f(*a, **k)
            try:
                jax.block_until_ready(out)
            except Exception:  # noqa: BLE001 (abstract values under eval_shape)
                pass
            stamp(f"< {label}")
            return out
        if hasattr(f, "out_shapes"):  # a stored program (mjxmeta.runs.program_cache): its output shapes, untraced
            g.out_shapes = f.out_shapes
        return g

    for owner, name in ((trainer.Trainer, "__init__"), (programs.Programs, "abstract_state"),
                        (run, "nonfinite_report"), (checkpoint.Checkpointer, "save")):
        setattr(owner, name, timed(getattr(owner, name), name))
    for name in ("init_seeds", "run_chunk", "evaluate_seeds"):  # cached properties returning the programs
        prop = programs.Programs.__dict__[name]
        setattr(programs.Programs, name,
                property(lambda self, prop=prop, name=name: timed(prop.__get__(self, programs.Programs), name)))
    rc = cli.main(argv)
    stamp(f"exit {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
