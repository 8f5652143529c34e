"""Flax networks: DDPG actor and critic, Gaussian teacher mean network.

Architecture after OpenAI Baselines' DDPG (2017): hidden layers of
``Dense -> [LayerNorm] -> ReLU``, a tanh-bounded actor output, the action joined
into the critic at its second layer, and final layers initialised from
U(-3e-3, 3e-3) (Lillicrap et al., 2016, sec. 7).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

FINAL_INIT_SCALE = 3e-3


def _uniform_init(scale: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)
    return init


class _Hidden(nn.Module):
    width: int
    layer_norm: bool

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.width)(x)
        if self.layer_norm:
            x = nn.LayerNorm()(x)
        return nn.relu(x)


def _output_dense(features: int, output_init: float) -> nn.Dense:
    """The output layer: U(-output_init, output_init) kernel and bias, or Flax's default init (LeCun-normal kernel,
    zero bias, as SB3/SBX) when ``output_init`` is 0."""
    if not output_init:
        return nn.Dense(features, name="output")
    init = _uniform_init(output_init)
    return nn.Dense(features, kernel_init=init, bias_init=init, name="output")


class Actor(nn.Module):
    """Deterministic policy mu(s): (..., obs_size) -> (..., action_size) in [-1, 1].

    ``output_init``: scale of the output layer's uniform init (0 = Flax's default).
    """

    action_size: int
    hidden: Sequence[int] = (64, 64)
    layer_norm: bool = True
    output_init: float = FINAL_INIT_SCALE

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = obs
        for i, w in enumerate(self.hidden):
            x = _Hidden(w, self.layer_norm, name=f"hidden_{i}")(x)
        return jnp.tanh(_output_dense(self.action_size, self.output_init)(x))


class Critic(nn.Module):
    """Action value Q(s, a): (..., obs_size), (..., action_size) -> (...).

    The action joins the features before hidden layer ``action_layer``: 1 =
    after the first hidden layer (Baselines ``Critic``), 0 = with the
    observation at the input (SB3/SBX, Fujimoto et al. 2018's TD3).
    ``output_init``: scale of the output layer's uniform init (0 = Flax's default).
    """

    hidden: Sequence[int] = (64, 64)
    layer_norm: bool = True
    action_layer: int = 1
    output_init: float = FINAL_INIT_SCALE

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = obs
        for i, w in enumerate(self.hidden):
            if i == self.action_layer:
                x = jnp.concatenate([x, action], axis=-1)
            x = _Hidden(w, self.layer_norm, name=f"hidden_{i}")(x)
        if len(self.hidden) <= self.action_layer:
            x = jnp.concatenate([x, action], axis=-1)
        return _output_dense(1, self.output_init)(x)[..., 0]


class GaussianMean(nn.Module):
    """Mean f(x) of a Gaussian teacher: (..., in_size) -> (..., action_size) in [-1, 1].

    ``final_scale``: the output layer is initialised from U(-final_scale,
    final_scale); 0 gives an output of exactly 0 at init (the residual
    teacher's g(s), whose output kernel still gets a nonzero gradient).
    """

    action_size: int
    hidden: Sequence[int] = (64, 64)
    final_scale: float = FINAL_INIT_SCALE

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, w in enumerate(self.hidden):
            x = _Hidden(w, False, name=f"hidden_{i}")(x)
        init = _uniform_init(self.final_scale) if self.final_scale else nn.initializers.zeros
        x = nn.Dense(self.action_size, kernel_init=init, bias_init=init, name="output")(x)
        return jnp.tanh(x)


def l2_penalty(params, exclude: str = "output") -> jax.Array:
    """Sum of squared kernels, excluding layers whose name contains ``exclude``.

    Returns:
      scalar ``sum(w**2) / 2`` over the selected kernels (TF ``l2_loss``).
    """
    total = jnp.zeros((), jnp.float32)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in flat:
        names = [getattr(p, "key", str(p)) for p in path]
        if names[-1] == "kernel" and not any(exclude in str(n) for n in names):
            total = total + 0.5 * jnp.sum(jnp.square(leaf))
    return total
