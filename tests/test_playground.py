"""MuJoCo Playground envs (extra ``mjxmeta[playground]``): validation without the extra, loading with it.

Their rollouts go through ``tests/test_env_semantics.py`` like every registry env.
"""

import importlib.util
import subprocess
import sys

import pytest

from mjxmeta.algo.config import PLAYGROUND_ENVS, Config, ConfigError, validate


@pytest.mark.parametrize("name", sorted(PLAYGROUND_ENVS))
def test_missing_extra_fails_validation_naming_it(name, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda mod, *a: None if mod == "mujoco_playground" else real(mod, *a))
    with pytest.raises(ConfigError) as info:
        validate(Config(env=name))
    assert info.value.field == "env" and "mjxmeta[playground]" in str(info.value)


def test_missing_extra_exits_2_before_any_compile(tmp_path):
    """``mjxmeta train`` with the package hidden: exit code 2 naming the extra; no run directory is made."""
    code = ("import sys, importlib.util as u; real = u.find_spec; "
            "u.find_spec = lambda m, *a: None if m == 'mujoco_playground' else real(m, *a)\n"
            "from mjxmeta.cli import main\n"
            "try:\n    main(['train', '--env', 'cartpole_swingup_sparse', '--run-dir', sys.argv[1]])\n"
            "except SystemExit as e:\n    print('exit', e.code, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                         timeout=120)
    assert "mjxmeta[playground]" in out.stderr and "exit 2" in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()


def test_loads_pure_mjx_with_sparse_rewards():
    pytest.importorskip("mujoco_playground", reason="the extra mjxmeta[playground] is not installed")
    import jax
    import mujoco.mjx as mjx

    from mjxmeta.algo.envs import make_base
    env = make_base("cartpole_swingup_sparse")
    assert env._env.mjx_model.impl == mjx.Impl.JAX  # not Playground's default, MuJoCo Warp
    assert (env.observation_size, env.action_size, env.dt) == (5, 1, 0.01)
    s = jax.jit(env.reset)(jax.random.PRNGKey(0))
    assert float(s.reward) == 0.0 and float(s.done) == 0.0
