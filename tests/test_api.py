"""The public Python API (``mjxmeta.train / load / evaluate``): a tiny run trained through it, loaded back.

The loaded policy must act exactly as the student restored from the checkpoint by hand (bit for bit), the
``Run`` must carry the final returns the metrics rows hold, and ``import mjxmeta`` must not import JAX.
"""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest

import mjxmeta
from mjxmeta.algo.trainer import Trainer
from mjxmeta.runs.checkpoint import Checkpointer
from mjxmeta.runs.programs import programs_of

CONFIG = mjxmeta.Config(env="pendulum", seeds=2, total_steps=400, log_every=2, eval_envs=3,
                        teacher=mjxmeta.TeacherConfig(name="gaussian"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return mjxmeta.train(CONFIG, tmp_path_factory.mktemp("api") / "run")


def test_train_returns_the_run_it_wrote(run):
    rows = run.metrics()
    last = max(r["iteration"] for r in rows)
    finals = [r["eval_return"] for r in rows if r["iteration"] == last]
    assert run.config == CONFIG and len(run.final_returns) == CONFIG.seeds
    assert list(run.final_returns) == finals


@pytest.mark.parametrize("seed", [0, 1])
def test_loaded_policy_acts_as_the_checkpointed_student(run, seed):
    policy = mjxmeta.load(run.run_dir, seed=seed)
    assert policy.config == CONFIG and policy.seed == seed and policy.env_steps == 400
    trainer = Trainer(CONFIG)
    ckpt = Checkpointer(run.run_dir, read_only=True)
    try:
        state, _ = ckpt.restore_verified(programs_of(trainer).abstract_state())
    finally:
        ckpt.close()
    one = jax.tree.map(lambda x: x[seed], (state.student, state.normalizer))
    obs = np.random.default_rng(seed).normal(size=(5, trainer.obs_size)).astype(np.float32)
    expected = np.asarray(jax.jit(trainer.student.act)(*one, obs))  # jitted, as the policy (XLA fuses alike)
    got = np.asarray(policy(obs))
    assert got.shape == (5, trainer.action_size)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(np.asarray(mjxmeta.load(run.run_dir, seed=1 - seed)(obs)), got)  # seeds differ


def test_evaluate_and_bad_input(run):
    iteration, returns = mjxmeta.evaluate(run.run_dir, episodes=2)
    assert iteration == CONFIG.num_iterations and returns.shape == (CONFIG.seeds, 2)
    assert np.all(np.isfinite(returns))
    with pytest.raises(mjxmeta.ConfigError, match="seed"):
        mjxmeta.load(run.run_dir, seed=2)
    with pytest.raises(mjxmeta.ConfigError, match="episodes"):
        mjxmeta.evaluate(run.run_dir, episodes=0)
    with pytest.raises(mjxmeta.ConfigError, match="seeds"):  # validated before anything compiles
        mjxmeta.train(mjxmeta.Config(seeds=0), run.run_dir.parent / "refused")
    assert not (run.run_dir.parent / "refused").exists()


def test_import_is_cheap():
    code = "import sys, mjxmeta; print(sorted(m for m in ('jax', 'brax', 'mujoco', 'flax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
