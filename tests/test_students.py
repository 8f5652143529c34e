"""The student seam: the trainer, look-ahead, teachers, host loop and render use only the Student interface.

A second student written here from scratch (linear actor, linear critic, plain
SGD, no target networks, its own state type) is registered under a new name and
runs the whole host loop (``run.train``: chunks, meta-gradient with the
``meta_state`` teacher, which reads Q and the TD error, evaluation, non-finite
guard, checkpoint) and a teacher rollout in ``render``.
"""

from __future__ import annotations

import tokenize
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mjxmeta.runs.programs import programs_of
import mjxmeta
import mjxmeta.algo.config
from mjxmeta.tools import render
from mjxmeta.algo import students
from mjxmeta.algo.config import BRAX_STUDENTS, STUDENT_NAMES
from mjxmeta.runs.loop import load_checkpoint, train
from mjxmeta.algo.students.base import Student, normalize
from mjxmeta.algo.trainer import Trainer

from conftest import small_config


@struct.dataclass
class LinearState:
    w_actor: jax.Array  # (obs_size, A)
    w_q: jax.Array  # (obs_size + A,)
    b_q: jax.Array  # ()


class LinearDDPG:
    """DDPG with a linear actor tanh(s W) and a linear critic [s, a] . w + b, trained by SGD."""

    state_type = LinearState

    def __init__(self, config, obs_size: int, action_size: int):
        self.config, self.obs_size, self.action_size = config, obs_size, action_size
        self.lr = 1e-2

    def hyper(self, config=None):
        return {"lr": np.float32(self.lr)}

    def init(self, key):
        k1, k2 = jax.random.split(key)
        return LinearState(0.1 * jax.random.normal(k1, (self.obs_size, self.action_size)),
                           0.1 * jax.random.normal(k2, (self.obs_size + self.action_size,)), jnp.zeros(()))

    def normalize(self, norm, obs):
        return normalize(norm, obs, self.config.normalize_observations)

    def actor(self, state):
        return state.w_actor

    def mu(self, actor, norm, obs):
        return jnp.tanh(self.normalize(norm, obs) @ actor)

    def act(self, state, norm, obs):
        return self.mu(self.actor(state), norm, obs)

    def q(self, state, norm, obs, action):
        return jnp.concatenate([self.normalize(norm, obs), action], axis=-1) @ state.w_q + state.b_q

    def td_error(self, state, norm, tr):
        y = tr.reward + self.config.gamma * (1.0 - tr.terminated) * self.q(state, norm, tr.next_obs,
                                                                         self.act(state, norm, tr.next_obs))
        return y - self.q(state, norm, tr.obs, tr.action)

    def update_many(self, state, norm, sample_fn, carry, n, hyper=None):
        lr = (hyper or self.hyper())["lr"]

        def critic_loss(s, batch):
            y = jax.lax.stop_gradient(self.td_error(s, norm, batch) + self.q(s, norm, batch.obs, batch.action))
            return jnp.mean(jnp.square(self.q(s, norm, batch.obs, batch.action) - y))

        def actor_loss(s, batch):
            return -jnp.mean(self.q(s, norm, batch.obs, self.act(s, norm, batch.obs)))

        def body(c, _):
            s, sc = c
            sc, batch = sample_fn(sc)
            c_loss, c_grad = jax.value_and_grad(critic_loss)(s, batch)
            a_loss, a_grad = jax.value_and_grad(actor_loss)(s, batch)
            s = LinearState(s.w_actor - lr * a_grad.w_actor, s.w_q - lr * c_grad.w_q, s.b_q - lr * c_grad.b_q)
            return (s, sc), {"critic_loss": c_loss, "actor_loss": a_loss, "q": -a_loss}

        (state, carry), metrics = jax.lax.scan(body, (state, carry), None, length=n)
        return state, carry, jax.tree.map(jnp.mean, metrics)


def test_registry_matches_the_validated_names():
    # sac/ppo are Brax's own trainers run end to end (mjxmeta.baselines.brax), not Student implementations
    assert set(students.REGISTRY) == set(STUDENT_NAMES) - set(BRAX_STUDENTS)
    ddpg = students.make(small_config().student, 3, 1)
    assert isinstance(ddpg, Student) and ddpg.state_type is students.DDPGState


def test_a_second_student_runs_the_whole_trainer_through_the_interface(tmp_path, monkeypatch):
    monkeypatch.setattr(mjxmeta.algo.config, "STUDENT_NAMES", STUDENT_NAMES + ("linear",))
    monkeypatch.setitem(students.REGISTRY, "linear", LinearDDPG)
    # meta_state: the teacher's inputs use the student's act, Q and TD error; K = 2 look-aheads.
    config = small_config("meta_state", seeds=2, student_name="linear", total_steps=4 * 250, log_every=2,
                          visit_samples=0)
    trainer = Trainer(config)
    assert isinstance(trainer.student, LinearDDPG) and isinstance(trainer.student, Student)
    init = jax.device_get(programs_of(trainer).init_seeds(trainer.seed_keys()))

    logged = []

    class Collect:
        def __call__(self, iteration, rows, visits=None):
            logged.append((iteration, rows))

        def close(self):
            logged.append("closed")

    final = train(config, tmp_path, progress_fn=Collect())
    assert [i for i, _ in logged[:-1]] == [2, 4] and logged[-1] == "closed"
    for _, rows in logged[:-1]:
        for row in rows:
            assert all(np.isfinite(v) for v in row.values()), row
            assert row["critic_loss"] > 0.0
    assert final == [row["eval_return"] for row in logged[-2][1]]

    trainer, state, record = load_checkpoint(tmp_path)  # the host loop saved the linear student's state
    assert record["iteration"] == 4 and isinstance(state.student, LinearState)
    assert state.student.w_actor.shape == (2, trainer.obs_size, trainer.action_size)
    for name in ("w_actor", "w_q"):  # SGD on both, for both seeds
        moved = np.abs(np.asarray(getattr(state.student, name)) - getattr(init.student, name))
        assert np.all(moved.reshape(2, -1).max(axis=1) > 1e-6), name
    log_std = np.asarray(state.teacher.params["log_std"])  # the meta-gradient step moved the teacher
    assert np.all(np.abs(log_std - init.teacher.params["log_std"]) > 0)

    roll = render.rollout_states(trainer, state, seed=1, steps=5, use_teacher=True)  # render's teacher path
    assert roll.qpos.shape[0] == 6 and np.all(np.isfinite(roll.reward))


# Names only the students package may use: DDPG's class, state, networks and losses.
DDPG_INTERNALS = {"DDPG", "DDPGState", "ddpg", "actor_net", "critic_net", "critic_target", "critic_loss", "actor_loss",
                  "q_value", "target_actor", "target_critic", "actor_optim", "critic_optim"}


def test_no_module_outside_students_names_ddpg_internals():
    """Code (not strings or comments) outside ``mjxmeta/algo/students/`` uses none of DDPG's names."""
    root = Path(mjxmeta.__file__).parent
    hits = []
    for path in sorted(root.rglob("*.py")):
        if "students" in path.relative_to(root).parts:
            continue
        with open(path, "rb") as f:
            for tok in tokenize.tokenize(f.readline):
                if tok.type == tokenize.NAME and tok.string in DDPG_INTERNALS:
                    hits.append(f"{path.relative_to(root)}:{tok.start[0]}: {tok.line.strip()}")
    assert not hits, "\n".join(hits)
