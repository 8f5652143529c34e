"""Deterministic off-policy students (DDPG)."""

from mjxmeta.students.ddpg import DDPG, DDPGState

__all__ = ["DDPG", "DDPGState"]
