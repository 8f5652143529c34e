"""The paper's noise baselines (never meta-trained): ``gaussian`` and ``ou``.

``gaussian``: pi_e = N(mu(s), sigma^2), sigma = ``teacher.init_std`` fixed.

``ou`` (Uhlenbeck & Ornstein 1930; Baselines discretisation): raw = mu(s) + x_{t+1},
x_{t+1} = x_t + theta (0 - x_t) dt + sigma sqrt(dt) eps, eps ~ N(0, I), reset to
0 at every episode start; memory (B, A) = x_t.
"""

from __future__ import annotations

import math

import numpy as np

from mjxmeta.algo.config import TeacherConfig
from mjxmeta.algo.teachers.base import Teacher, TeacherHyper


class Gaussian(Teacher):
    """``gaussian``: N(mu(s), sigma^2) with sigma fixed (the base class as it stands)."""

    name = "gaussian"


class UnboundedLogStd:
    """Mixin for the teachers whose ``params['log_std']`` is their log noise scale as is (no bound)."""

    def log_std(self, params):
        return params["log_std"]

    def log_std_param(self, log_std):
        return np.asarray(log_std, np.float32)


class OU(UnboundedLogStd, Teacher):
    """``ou``: mu(s) plus Ornstein-Uhlenbeck noise; ``params['log_std']`` stores log ou_sigma unbounded."""

    name = "ou"

    def __init__(self, config: TeacherConfig, obs_size: int, action_size: int, **kw):
        super().__init__(config, obs_size, action_size, **kw)
        self.memory_size = action_size

    def init_log_std(self, config: TeacherConfig) -> float:
        return math.log(config.ou_sigma)

    def sample(self, params, memory, key, inputs, eps=None, hyper: TeacherHyper | None = None):
        """raw = mu(s) + x_{t+1}; returns (raw (B, A), x_{t+1} (B, A)). ``hyper``: the OU scale (None = config's)."""
        if eps is None:
            eps = self.standard_normal(key, inputs)
        c, h = self.config, self.hyper() if hyper is None else hyper
        x = memory + c.ou_theta * (0.0 - memory) * c.ou_dt + h.ou_scale * eps
        return self.mean(params, inputs) + x, x
