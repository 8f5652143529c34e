"""Diagnostics of the meta-gradient and of the teacher's motion, per iteration (one seed).

Gradient norm and its log-sigma part, advantage RMS, meta-reward spread, the
EMA of the cosine between consecutive gradients, and how far log sigma and the
teacher network f travelled (path length and net shift).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjxmeta.algo.teachers import Teacher


COSINE_EMA_DECAY = 0.9
DIAGNOSTIC_METRICS = ("teacher_grad_norm", "teacher_grad_log_std", "advantage_rms", "meta_reward_sd",
                      "grad_cosine_ema", "log_std_path", "log_std_shift", "net_path", "net_shift")
"""Keys of the per-iteration meta-gradient diagnostics (:func:`diagnose`)."""
SNAPSHOT_METRICS = ("teacher_log_std", "grad_cosine_ema", "log_std_path", "log_std_shift", "net_path", "net_shift")
"""Metrics that are a state at the end of a chunk (logged as the last value, not the chunk mean)."""


@struct.dataclass
class GradientDiagnostics:
    """Running quantities of the meta-gradient and the teacher's motion (one seed).

    Attributes:
      prev_grad: the previous iteration's teacher gradient (zeros before the first).
      cosine_ema: EMA (decay :data:`COSINE_EMA_DECAY`) of cos(g_t, g_{t-1}).
      log_std0: (A,) log sigma at the start.
      log_std_path: sum over iterations of mean_i |Delta log sigma_i|.
      net0: the teacher network f's initial parameters (empty dict without f).
      net_path: sum over iterations of ||Delta theta_f||_2.
    """

    prev_grad: Any
    cosine_ema: jax.Array
    log_std0: jax.Array
    log_std_path: jax.Array
    net0: Any
    net_path: jax.Array


def init_diagnostics(teacher: Teacher, params) -> GradientDiagnostics:
    z = jnp.zeros((), jnp.float32)
    return GradientDiagnostics(jax.tree.map(jnp.zeros_like, params), z, teacher.log_std(params), z,
                               params.get("net", {}), z)


def _norm(tree) -> jax.Array:
    return optax.global_norm(tree) if jax.tree.leaves(tree) else jnp.zeros((), jnp.float32)


def diagnose(teacher: Teacher, diag: GradientDiagnostics, old_params, new_params, grad, rewards: jax.Array,
             adv: jax.Array):
    """Updates the diagnostics after one teacher step; returns (diagnostics, metrics of scalars).

    Metrics: ``teacher_grad_norm`` ||g||_2; ``teacher_grad_log_std`` mean_i
    g_i of the log sigma parameter; ``advantage_rms`` sqrt(mean_k adv_k^2) (the
    spread of the candidates' advantages; |adv| for K = 1);
    ``meta_reward_sd`` sd_k R_k (0 for K = 1); ``grad_cosine_ema``;
    ``log_std_path`` cumulative mean_i |Delta log sigma_i|; ``log_std_shift``
    mean_i |log sigma_i - log sigma_i(0)|; ``net_path`` cumulative
    ||Delta theta_f||; ``net_shift`` ||theta_f - theta_f(0)|| (0 without f).
    A cosine with a zero vector counts as 0.
    """
    g_norm, p_norm = _norm(grad), _norm(diag.prev_grad)
    dot = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(diag.prev_grad)))
    cos = jnp.where(g_norm * p_norm > 0, dot / jnp.maximum(g_norm * p_norm, 1e-30), 0.0)
    cos_ema = COSINE_EMA_DECAY * diag.cosine_ema + (1.0 - COSINE_EMA_DECAY) * cos
    old_ls, new_ls = teacher.log_std(old_params), teacher.log_std(new_params)
    net_old, net_new = old_params.get("net", {}), new_params.get("net", {})
    new = GradientDiagnostics(
        prev_grad=grad, cosine_ema=cos_ema, log_std0=diag.log_std0,
        log_std_path=diag.log_std_path + jnp.mean(jnp.abs(new_ls - old_ls)), net0=diag.net0,
        net_path=diag.net_path + _norm(jax.tree.map(jnp.subtract, net_new, net_old)))
    metrics = dict(
        teacher_grad_norm=g_norm, teacher_grad_log_std=jnp.mean(grad["log_std"]),
        advantage_rms=jnp.sqrt(jnp.mean(jnp.square(adv))), meta_reward_sd=jnp.std(rewards),
        grad_cosine_ema=cos_ema, log_std_path=new.log_std_path,
        log_std_shift=jnp.mean(jnp.abs(new_ls - diag.log_std0)), net_path=new.net_path,
        net_shift=_norm(jax.tree.map(jnp.subtract, net_new, diag.net0)))
    return new, metrics


def zero_diagnostic_metrics() -> dict[str, jax.Array]:
    """The metrics of :func:`diagnose`, all zero (noise teachers, which learn nothing)."""
    return {k: jnp.zeros((), jnp.float32) for k in DIAGNOSTIC_METRICS}
