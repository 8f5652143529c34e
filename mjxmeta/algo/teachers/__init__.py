"""Teachers (exploration policies pi_e), behind the :class:`~mjxmeta.algo.teachers.base.Teacher` interface.

``make(config, obs_size, action_size, episode_length)`` builds the teacher
named by ``config.name``. Adding a teacher is one module here, its class in
:data:`REGISTRY` and its name in :data:`mjxmeta.algo.config.TEACHER_NAMES` (and
:data:`~mjxmeta.algo.config.META_TEACHERS` when the meta-gradient trains it), which
:func:`mjxmeta.algo.config.validate` checks before anything compiles.
"""

from __future__ import annotations

from typing import Any

from mjxmeta.algo.config import MJX_EPISODE_LENGTH, TeacherConfig
from mjxmeta.algo.registry import lookup
from mjxmeta.algo.teachers.base import Teacher, TeacherHyper, TeacherState, gaussian_log_prob, symlog, where_done
from mjxmeta.algo.teachers.latent import MetaLatent
from mjxmeta.algo.teachers.learned import Meta, MetaState, MetaVariance, NetTeacher
from mjxmeta.algo.teachers.noise import OU, Gaussian
from mjxmeta.algo.teachers.param_noise import ParamNoise
from mjxmeta.algo.teachers.pink import Pink

# teacher name -> its class
REGISTRY: dict[str, type[Teacher]] = {cls.name: cls for cls in (Gaussian, OU, MetaVariance, Meta, MetaState, Pink,
                                                                MetaLatent, ParamNoise)}


def make(config: TeacherConfig, obs_size: int, action_size: int,
         episode_length: int = MJX_EPISODE_LENGTH, student: Any = None) -> Teacher:
    """The teacher ``config.name`` for the given sizes, the env's time limit ``episode_length`` (steps) and
    the ``student`` (needed by ``param_noise``, which perturbs its actor).

    Raises:
      KeyError: ``config.name`` is not in :data:`REGISTRY` (``validate``
        rejects unknown names earlier, as a ConfigError).
    """
    cls = lookup(REGISTRY, config.name, "teacher")
    return cls(config, obs_size, action_size, episode_length=episode_length, student=student)


__all__ = ["OU", "REGISTRY", "Gaussian", "Meta", "MetaLatent", "MetaState", "MetaVariance", "NetTeacher",
           "ParamNoise", "Pink", "Teacher", "TeacherHyper", "TeacherState", "gaussian_log_prob", "make", "symlog", "where_done"]
