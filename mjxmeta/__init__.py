"""mjxmeta: learning to explore via meta-policy gradient (Xu, Liu, Zhao, Peng, ICML 2018) on MJX physics.

The public API (``docs/api.md``)::

    import mjxmeta
    config = mjxmeta.Config(env="pendulum", student=mjxmeta.student_preset("baselines2017"))
    run = mjxmeta.train(config, "runs/pendulum")          # -> mjxmeta.Run (final returns, metrics rows)
    policy = mjxmeta.load("runs/pendulum")                 # seed 0 of the newest verified checkpoint
    action = policy(obs)                                    # (B, obs_size) -> (B, action_size)
    iteration, returns = mjxmeta.evaluate("runs/pendulum")  # (R, episodes)
    mjxmeta.report(["runs/pendulum"], "report/")

Layers: :mod:`mjxmeta.algo` (Algorithm 1 in JAX: no disk, no printing), :mod:`mjxmeta.runs` (one run on
disk between chunks), :mod:`mjxmeta.tools` (report, render, bench), :mod:`mjxmeta.baselines` (Brax SAC/PPO).
"""

from mjxmeta.algo.config import PRESET_NAMES, Config, ConfigError, MetaConfig, StudentConfig, TeacherConfig, student_preset
from mjxmeta.api import Policy, Run, evaluate, load, report, train

__all__ = ["Config", "ConfigError", "MetaConfig", "PRESET_NAMES", "Policy", "Run", "StudentConfig", "TeacherConfig",
           "evaluate", "load", "report", "student_preset", "train"]
