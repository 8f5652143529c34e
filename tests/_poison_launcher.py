"""Test-only launcher: ``python tests/_poison_launcher.py train ...`` = ``mjxmeta train ...`` with one
deterministic NaN injected at a chosen chunk.

``Trainer.run_chunk`` is wrapped: before its ``POISON_CHUNK``-th call (env var,
1-based, default 3) the output bias of the critic of seed ``POISON_SEED``
(default 1) is set to NaN in the input state; every other seed and leaf is
untouched. The real jitted chunk then runs on it, so the NaN spreads through
that seed's Q values, losses and parameters exactly as a diverging update
would, and the run's own non-finite guard has to catch it. It prints
``POISONED chunk=<c> seed=<s>`` to stdout when it injects.

Used where a real divergence cannot be placed in a later chunk: absurd
learning rates on the tiny pendulum setup diverge in the very first iteration
or not at all.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

import mjxmeta.cli
from mjxmeta.trainer import Trainer

_CHUNK = int(os.environ.get("POISON_CHUNK", "3"))
_SEED = int(os.environ.get("POISON_SEED", "1"))
_real = Trainer.__dict__["run_chunk"]  # functools.cached_property


def _poison(path, x):
    name = jax.tree_util.keystr(path)
    return x.at[_SEED].set(jnp.nan) if "output" in name and "bias" in name else x


def _poisoned_run_chunk(self):
    wrapper = self.__dict__.get("_poisoned_run_chunk")
    if wrapper is None:
        real = _real.__get__(self, Trainer)
        calls = [0]

        def wrapper(state):
            calls[0] += 1
            if calls[0] == _CHUNK:
                critic = jax.tree_util.tree_map_with_path(_poison, state.student.critic)
                state = state.replace(student=state.student.replace(critic=critic))
                print(f"POISONED chunk={_CHUNK} seed={_SEED}", flush=True)
            return real(state)

        self.__dict__["_poisoned_run_chunk"] = wrapper
    return wrapper


Trainer.run_chunk = property(_poisoned_run_chunk)

if __name__ == "__main__":
    sys.exit(mjxmeta.cli.main(sys.argv[1:]))
