"""The compiled programs of one run: ``jit(vmap(.))`` of the trainer's pure functions over the run axis.

:class:`mjxmeta.algo.trainer.Trainer` defines Algorithm 1 for one run
(``init``, ``run``, ``evaluate``). Here those functions become the three
programs the host loop (:mod:`mjxmeta.runs.loop`) calls, over the run axis
R = V * S (V combinations of ``config.sweep`` x S seeds):

* ``init_seeds``: (R, 2) keys -> TrainState with leading R;
* ``run_chunk``: ``log_every`` iterations in one ``lax.scan``, the state donated;
* ``evaluate_seeds``: (R, ...) state, (R, 2) keys -> (R, eval_envs) returns.

The run axis may be sharded over devices (:meth:`Programs.seed_sharding`), and
each program is stored once traced (:mod:`mjxmeta.runs.program_cache`), keyed
by what the programs read (:func:`mjxmeta.algo.config.program_fields`: the config
without the fields only the host loop reads, so a resume with a new ``total_steps`` reuses them).
"""

from __future__ import annotations

import functools
import weakref

import jax
import jax.numpy as jnp

from mjxmeta.algo.config import program_fields
from mjxmeta.algo.trainer import Trainer, TrainState
from mjxmeta.runs import program_cache
from mjxmeta.runs.distributed import check_seeds, global_array


class Programs:
    """The jitted, vmapped (and possibly sharded) entry points of ``trainer``; get one with :func:`programs_of`."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.config = trainer.config

    @functools.cached_property
    def init_seeds(self):
        """jit(vmap(init)) over the runs: (R, 2) keys (:meth:`~mjxmeta.algo.trainer.Trainer.seed_keys`) ->
        TrainState with leading R and the hyperparameters of ``run_hypers``, placed with :meth:`seed_sharding`.

        Pass ``shard(trainer.seed_keys())`` so that each device (process) initializes only its own runs.
        """
        hypers = self.trainer.run_hypers()

        def init(keys):  # a named function: XLA module and cache entry "jit_init"
            return jax.vmap(self.trainer.init)(keys, hypers)
        keys = jax.ShapeDtypeStruct((self.config.num_runs, 2), jnp.uint32, sharding=self.seed_sharding())
        return program_cache.jit(init, "init", self._key, (keys,), out_shardings=self.seed_sharding())

    @functools.cached_property
    def run_chunk(self):
        """jit(vmap(run(., log_every))) with the state donated: (R, ...) -> (R, ...), metrics (R, n)."""
        n = self.config.log_every

        def run_chunk(state):  # a named function: XLA module and cache entry "jit_run_chunk"
            return self.trainer.run(state, n)
        return program_cache.jit(jax.vmap(run_chunk), "run_chunk", self._key, (self._state_shapes(),),
                                 donate_argnums=(0,))

    @functools.cached_property
    def evaluate_seeds(self):
        """jit(vmap(evaluate)): state (R, ...), keys (R, 2) -> returns (R, eval_envs)."""
        keys = jax.ShapeDtypeStruct((self.config.num_runs, 2), jnp.uint32)

        def evaluate(state, keys):  # a named function: XLA module and cache entry "jit_evaluate"
            return jax.vmap(self.trainer.evaluate)(state, keys)
        return program_cache.jit(evaluate, "evaluate", self._key, (self._state_shapes(), keys))

    @functools.cached_property
    def _key(self) -> dict:
        """What the traced programs depend on besides their inputs."""
        return program_fields(self.config)

    def _state_shapes(self) -> TrainState:
        """``ShapeDtypeStruct`` tree of the batched state (from the stored ``init`` program when there is one)."""
        out_shapes = getattr(self.init_seeds, "out_shapes", None)
        return out_shapes() if out_shapes is not None else jax.eval_shape(self.init_seeds, self.trainer.seed_keys())

    def seed_sharding(self) -> jax.sharding.Sharding:
        """Sharding of the run axis: ``NamedSharding(Mesh(jax.devices(), ('seed',)), P('seed'))``.

        ``jax.devices()`` are the global devices of all processes
        (:mod:`mjxmeta.runs.distributed`): each device holds R/D consecutive runs
        (R = seeds x sweep combinations). With one process and one device, or
        R not a multiple of its D devices, all runs live on the first device.

        Raises:
          mjxmeta.algo.config.ConfigError: (field ``seeds``) several processes and
            R not a multiple of the global device count.
        """
        check_seeds(self.config)
        devices = jax.devices()
        if len(devices) == 1 or self.config.num_runs % len(devices):
            return jax.sharding.SingleDeviceSharding(devices[0])
        mesh = jax.sharding.Mesh(devices, ("seed",))
        return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seed"))

    def shard(self, tree):
        """Places the seed axis of ``tree`` (a state, or (S, ...) keys) with :meth:`seed_sharding`.

        ``tree`` holds the whole (S, ...) value on every process (host arrays
        or local device arrays); each process keeps only its devices' seeds.
        """
        sharding = self.seed_sharding()
        return jax.tree.map(lambda x: global_array(x, sharding), tree)

    def abstract_state(self) -> TrainState:
        """``ShapeDtypeStruct`` tree of the batched state, with :meth:`seed_sharding` (no compile).

        ``hyper`` is concrete (``trainer.run_hypers()``, placed with that sharding):
        its values follow from the config, so a checkpoint written before the
        state carried them restores with them (:meth:`mjxmeta.runs.checkpoint.Checkpointer.restore`).
        """
        shapes = self._state_shapes()
        sharding = self.seed_sharding()
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)
        return abstract.replace(hyper=self.shard(self.trainer.run_hypers()))


_OF: "weakref.WeakKeyDictionary[Trainer, Programs]" = weakref.WeakKeyDictionary()


def programs_of(trainer: Trainer) -> Programs:
    """The :class:`Programs` of ``trainer``, made once per trainer (each program is traced and compiled once)."""
    if trainer not in _OF:
        _OF[trainer] = Programs(trainer)
    return _OF[trainer]
