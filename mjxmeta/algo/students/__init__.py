"""Deterministic off-policy students, behind the :class:`~mjxmeta.algo.students.base.Student` interface.

``make(config, obs_size, action_size)`` builds the student named by
``config.name``. Adding a student is one file here plus its name in
:data:`mjxmeta.algo.config.STUDENT_NAMES` (which :func:`mjxmeta.algo.config.validate`
checks before anything compiles) and in :data:`REGISTRY`.

``sac`` and ``ppo`` (:data:`mjxmeta.algo.config.BRAX_STUDENTS`) are valid student
names but not :class:`Student` implementations and not in :data:`REGISTRY`:
Brax's trainers run them end to end (:mod:`mjxmeta.baselines.brax`, chosen in
:func:`mjxmeta.runs.loop.train`).
"""

from __future__ import annotations

from typing import Callable

from mjxmeta.algo.config import StudentConfig
from mjxmeta.algo.registry import lookup
from mjxmeta.algo.students.base import Student, StudentState, init_normalizer, normalize, update_normalizer
from mjxmeta.algo.students.ddpg import DDPG, DDPGState
from mjxmeta.algo.students.td3 import TD3, TD3State

# student name -> constructor (config, obs_size, action_size) -> Student
REGISTRY: dict[str, Callable[[StudentConfig, int, int], Student]] = {"ddpg": DDPG, "td3": TD3}


def make(config: StudentConfig, obs_size: int, action_size: int) -> Student:
    """The student ``config.name`` for the given observation and action sizes.

    Raises:
      KeyError: ``config.name`` is not in :data:`REGISTRY` (``validate``
        rejects unknown names earlier, as a ConfigError).
    """
    cls = lookup(REGISTRY, config.name, "student")
    return cls(config, obs_size, action_size)


__all__ = ["DDPG", "DDPGState", "REGISTRY", "Student", "StudentState", "TD3", "TD3State", "init_normalizer", "make",
           "normalize", "update_normalizer"]
