"""``jax.device_put_replicated`` for Brax's trainers on jax >= 0.10, which removed it.

Brax 0.14.2's SAC and PPO trainers (``brax.training.agents.sac.train``,
``.ppo.train``, and ``brax.training.pmap``) replicate their training state
over the local devices with ``jax.device_put_replicated``; jax 0.10 removed
that function (``AttributeError`` at train start). :func:`install` puts back a
function with the old semantics, built from public APIs only, and only when
the attribute is missing (an older jax, or a Brax that stops calling it, is
left alone). :mod:`mjxmeta.baselines.brax` calls it before running a Brax
trainer; nothing else in mjxmeta uses it.
"""

from __future__ import annotations

from typing import Any, Sequence

NAME = "device_put_replicated"


def device_put_replicated(x: Any, devices: Sequence[Any]) -> Any:
    """Every leaf of the pytree ``x`` stacked ``len(devices)`` times, slice i on ``devices[i]``.

    The semantics of the removed ``jax.device_put_replicated`` (jax <= 0.9):
    a leaf of shape ``s`` becomes an array of shape ``(len(devices),) + s``
    whose slices along the new leading axis are copies of the leaf, sharded
    one slice per device (``NamedSharding`` over a 1-D mesh of ``devices``),
    which is what ``jax.pmap`` expects of its inputs. Python scalars become
    arrays of shape ``(len(devices),)``.

    Raises:
      ValueError: ``devices`` is not a non-empty sequence (as the original).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    if not isinstance(devices, Sequence) or not devices:
        raise ValueError("`devices` argument to `device_put_replicated must be a non-empty sequence.")
    sharding = NamedSharding(Mesh(np.array(devices), ("replica",)), PartitionSpec("replica"))
    n = len(devices)

    def replicate(leaf):
        leaf = jnp.asarray(leaf)
        return jax.device_put(jnp.broadcast_to(leaf[None], (n,) + leaf.shape), sharding)

    return jax.tree.map(replicate, x)


def install() -> bool:
    """Sets ``jax.device_put_replicated`` to :func:`device_put_replicated` if jax lacks it.

    Returns:
      True if the shim was installed by this call, False if jax already had the
      attribute (its own function or a previous install).
    """
    import jax

    if hasattr(jax, NAME):
        return False
    setattr(jax, NAME, device_put_replicated)
    return True
