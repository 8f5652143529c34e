"""``pink``: colored action noise (Eberhard, Hollenstein, Pinneri, Martius, *Pink Noise Is All You Need:
Colored Noise Exploration in Deep Reinforcement Learning*, ICLR 2023).

raw_t = mu(s_t) + sigma eps_t, where (eps_t)_{t < L} is, per env and action
dimension, a Gaussian sequence with power spectrum S(f) ∝ 1/f^beta (beta = 1:
pink; 0: white, the ``gaussian`` teacher; 2: red / Brownian), drawn afresh at
every episode start for the whole episode of L = episode_length steps and read
one step at a time. sigma = ``teacher.init_std`` (fixed; never meta-trained).

The sequence is made by spectral shaping (Timmer & Koenig, A&A 300, 1995), as
the ``colorednoise`` package's ``powerlaw_psd_gaussian`` does, here with
``jnp.fft``: complex Gaussian Fourier coefficients with amplitude
f^(-beta/2) (frequencies below 1/L set to 1/L; real-valued at f = 0 and at
the Nyquist frequency), inverse real FFT, divided by the theoretical standard
deviation so that eps has unit variance.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mjxmeta.algo.config import TeacherConfig
from mjxmeta.algo.teachers.base import Teacher


def powerlaw_noise(key: jax.Array, shape: tuple[int, ...], exponent: float) -> jax.Array:
    """Gaussian noise with power spectrum ∝ 1/f^exponent along the last axis, unit variance.

    The algorithm of ``colorednoise.powerlaw_psd_gaussian(exponent, shape)``
    (fmin = 0, i.e. 1/L) with JAX's random numbers and FFT.

    Args:
      key: raw key (2,).
      shape: (..., L); the last axis is time, the others independent.
      exponent: beta >= 0.

    Returns:
      float32 array of ``shape``.
    """
    n = shape[-1]
    f = np.fft.rfftfreq(n)
    f[0] = 1.0 / n  # frequencies below fmin = 1/L are flat at 1/L (only f = 0 here)
    scale = f ** (-exponent / 2.0)
    w = scale[1:].copy()
    w[-1] *= (1 + n % 2) / 2.0  # the Nyquist term, counted once when L is even
    sigma = 2.0 * math.sqrt(np.sum(w**2)) / n
    real_scale, imag_scale = scale.copy(), scale.copy()
    real_scale[0] *= math.sqrt(2.0)
    imag_scale[0] = 0.0
    if n % 2 == 0:
        real_scale[-1] *= math.sqrt(2.0)
        imag_scale[-1] = 0.0
    kr, ki = jax.random.split(key)
    coef_shape = shape[:-1] + (f.shape[0],)
    re = jax.random.normal(kr, coef_shape, jnp.float32) * jnp.asarray(real_scale, jnp.float32)
    im = jax.random.normal(ki, coef_shape, jnp.float32) * jnp.asarray(imag_scale, jnp.float32)
    return (jnp.fft.irfft(jax.lax.complex(re, im), n=n, axis=-1) / sigma).astype(jnp.float32)


class Pink(Teacher):
    """``pink``: mu(s) + sigma eps_t with eps one colored sequence per episode and action dimension.

    Memory: ``{'noise': (B, L, A) the episode's eps, 't': (B,) int32 steps taken}``.
    """

    name = "pink"

    def __init__(self, config: TeacherConfig, obs_size: int, action_size: int, **kw):
        super().__init__(config, obs_size, action_size, **kw)
        self.memory_size = None  # a dict, see the class docstring

    def fresh_memory(self, params, key, n):
        """A new sequence (L, A) per env and step counter 0."""
        noise = powerlaw_noise(key, (n, self.action_size, self.episode_length), self.config.noise_exponent)
        return {"noise": jnp.swapaxes(noise, -1, -2), "t": jnp.zeros((n,), jnp.int32)}

    def sample(self, params, memory, key, inputs, eps=None, hyper=None):
        """raw = mu(s) + sigma eps_t, eps_t the episode's step-t noise (``key`` and ``eps`` unused).

        Returns:
          (raw (B, A), memory with t + 1). An episode longer than L (none: the
          env's time limit is L) would wrap around to the sequence's start.
        """
        t = memory["t"] % self.episode_length
        eps_t = jnp.take_along_axis(memory["noise"], t[:, None, None], axis=1)[:, 0]
        raw = self.mean(params, inputs) + jnp.exp(self.log_std(params)) * eps_t
        return raw, dict(memory, t=memory["t"] + 1)
