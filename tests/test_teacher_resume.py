"""The new teachers in the fused trainer: their state (params, per-episode memory) lives in the
TrainState, so a checkpoint restores it bit for bit and the run continues as if uninterrupted.
Also the pathwise estimator with the TD3 student (``meta``, ``teacher.estimator = pathwise``).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mjxmeta.runs.programs import programs_of
from mjxmeta.runs.checkpoint import Checkpointer
from mjxmeta.algo.config import Config, MetaConfig, StudentConfig, TeacherConfig
from mjxmeta.algo.trainer import Trainer


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("name, estimator, student", [("pink", "reinforce", "ddpg"), ("meta_latent", "reinforce", "ddpg"),
                                                      ("param_noise", "reinforce", "ddpg"), ("meta", "pathwise", "td3")])
def test_two_chunks_equal_one_chunk_checkpoint_restore_one_chunk(name, estimator, student, tmp_path):
    c = Config(env="pendulum", episode_length=30, seeds=2, num_envs=2, rollout_steps=20, log_every=2,
               total_steps=100_000, visit_samples=0,
               student=StudentConfig(name=student, hidden=(8,), batch_size=8, buffer_size=2000, updates_per_iteration=2),
               teacher=TeacherConfig(name=name, hidden=(8,), estimator=estimator),
               meta=MetaConfig(return_horizon=20, lookahead_updates=2, grad_horizon=5))
    tr = Trainer(c)
    s0 = programs_of(tr).init_seeds(tr.seed_keys())
    teacher0 = jax.tree.map(np.asarray, s0.teacher)  # run_chunk donates its input
    s1, m1 = programs_of(tr).run_chunk(s0)
    ckpt = Checkpointer(tmp_path)
    ckpt.save(2, s1, {"iteration": 2})
    ckpt.wait()
    restored, _ = ckpt.restore(programs_of(tr).abstract_state())
    ckpt.close()
    a = leaves(s1)
    b = leaves(restored)
    assert len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))
    straight, m_a = jax.tree.map(np.asarray, programs_of(tr).run_chunk(s1))
    resumed, m_b = programs_of(tr).run_chunk(restored)
    assert all(np.array_equal(x, y) for x, y in zip(leaves((straight, m_a)), leaves((resumed, m_b))))
    # the teacher's own state is in there and moves
    if name != "meta":  # meta's memory is a placeholder of zeros
        mem0, mem2 = leaves(teacher0.memory), leaves(straight.teacher.memory)
        assert any(not np.array_equal(x, y) for x, y in zip(mem0, mem2))
    assert all(np.isfinite(x).all() for x in leaves(straight.teacher) if x.dtype.kind == "f")
    if estimator == "pathwise":  # the pathwise teacher learns: every parameter moves, no step was skipped
        assert np.all(np.asarray(m1["teacher_grad_skipped"]) == 0) and np.all(np.asarray(m_a["teacher_grad_skipped"]) == 0)
        assert all(not np.array_equal(x, y) for x, y in zip(leaves(teacher0.params), leaves(straight.teacher.params)))
    if name == "param_noise":  # 4 iterations: sigma_p times 1.01^k, k in {-4, -2, 0, 2, 4}
        log_p0, log_p4 = np.asarray(teacher0.params["log_std"]), np.asarray(straight.teacher.params["log_std"])
        k = (log_p4 - log_p0) / np.log(1.01)
        assert np.all(np.abs(k - np.round(k)) < 1e-2) and np.all(np.abs(k) <= 4) and np.all(np.round(k) % 2 == 0), k
    if name == "meta_latent":  # the meta-gradient reaches m and log std_z
        p0, p2 = teacher0.params, straight.teacher.params
        assert np.all(np.asarray(p0["latent_mean"]) == 0) and np.any(np.asarray(p2["latent_mean"]) != 0)
        assert np.any(np.asarray(p2["latent_log_std"]) != np.asarray(p0["latent_log_std"]))
