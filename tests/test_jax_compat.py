"""The ``jax.device_put_replicated`` shim (mjxmeta.baselines.jax_compat) against the removed function's semantics."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from mjxmeta.baselines import jax_compat

# Runs in a child process with 3 forced CPU devices (XLA_FLAGS must be set before JAX starts).
_CHILD = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from mjxmeta.baselines.jax_compat import device_put_replicated
    devices = jax.local_devices()
    assert len(devices) == 3, devices
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.int32(7), "py": 2.5,
            "key": jax.random.key_data(jax.random.key(1))}
    out = device_put_replicated(tree, devices)
    for name, leaf in tree.items():
        leaf = np.asarray(leaf)
        got = out[name]
        assert got.shape == (3,) + leaf.shape, (name, got.shape)
        assert got.dtype == jnp.asarray(tree[name]).dtype, (name, got.dtype)
        for i in range(3):
            np.testing.assert_array_equal(np.asarray(got[i]), leaf)
        # slice i lives on devices[i], one slice per device (what pmap expects)
        where = {s.device: s.index[0] for s in got.addressable_shards}
        assert [where[d] for d in devices] == [slice(i, i + 1) for i in range(3)], (name, where)
    # the old implementation, still in jax's private module in 0.10.x: same values, shapes, dtypes, placement
    try:
        from jax._src.api import device_put_replicated as old
    except ImportError:
        old = None
    if old is not None:
        ref = old(tree, devices)
        for name in tree:
            a, b = out[name], ref[name]
            assert a.shape == b.shape and a.dtype == b.dtype, name
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            assert [s.device for s in a.addressable_shards] == [s.device for s in b.addressable_shards], name
    # jax.pmap consumes it, one slice per device
    np.testing.assert_array_equal(np.asarray(jax.pmap(lambda x: x + 1.0)(out["w"])),
                                  np.stack([np.arange(6.0).reshape(2, 3) + 1.0] * 3))
    print("ok", old is not None)
""")


def test_replicates_a_pytree_over_three_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=3", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[0] == "ok"


def test_refuses_an_empty_device_list():
    with pytest.raises(ValueError, match="non-empty sequence"):
        jax_compat.device_put_replicated({"a": 1.0}, [])


def test_install_only_when_missing(monkeypatch):
    had = hasattr(jax, jax_compat.NAME)
    if had:  # an older jax, or installed by an earlier test: install leaves it alone
        own = getattr(jax, jax_compat.NAME)
        assert jax_compat.install() is False
        assert getattr(jax, jax_compat.NAME) is own
        monkeypatch.delattr(jax, jax_compat.NAME, raising=False)
    if not hasattr(jax, jax_compat.NAME):  # jax 0.10 removed it: installed once, then left alone
        assert jax_compat.install() is True
        assert jax.device_put_replicated is jax_compat.device_put_replicated
        assert jax_compat.install() is False
        monkeypatch.delattr(jax, jax_compat.NAME)
