"""``pink`` teacher: the JAX colored noise against the ``colorednoise`` package, and acting with it.

Spectrum and scale are compared statistically (many independent sequences,
tolerances of several standard errors); the teacher's actions are checked
exactly against its stored per-episode sequence.
"""

from __future__ import annotations

import colorednoise
import jax
import jax.numpy as jnp
import numpy as np

from mjxmeta.algo import teachers
from mjxmeta.algo.config import TeacherConfig
from mjxmeta.algo.teachers.pink import powerlaw_noise

L, M = 256, 4000  # sequence length, sequences per generator


def band_power(y):
    """Mean periodogram |rfft|^2 / L over sequences, averaged in 8 log-spaced frequency bands (f >= 1/L)."""
    p = np.mean(np.abs(np.fft.rfft(y, axis=-1)) ** 2, axis=0) / y.shape[-1]
    f = np.fft.rfftfreq(y.shape[-1])
    edges = np.geomspace(1.0 / L, 0.5 + 1e-9, 9)
    return f, p, np.array([p[(f >= a) & (f < b)].mean() for a, b in zip(edges[:-1], edges[1:])])


def test_pink_noise_matches_colorednoise_in_spectrum_and_scale():
    ours = np.asarray(jax.jit(lambda k: powerlaw_noise(k, (M, L), 1.0))(jax.random.PRNGKey(0)), np.float64)
    ref = colorednoise.powerlaw_psd_gaussian(1.0, (M, L), random_state=np.random.default_rng(0))
    assert ours.shape == ref.shape == (M, L)
    # scale: the per-sequence variance around the sequence mean (low frequencies make the overall
    # sample variance noisy); relative SE over M sequences well below 1 %
    v_ours, v_ref = ours.var(axis=1).mean(), ref.var(axis=1).mean()
    np.testing.assert_allclose(v_ours, v_ref, rtol=0.03)
    np.testing.assert_allclose(np.mean(ours**2), np.mean(ref**2), rtol=0.05)  # incl. the DC term
    # spectrum: same band powers (each band averages >= 1 frequency over M sequences: SE <= 1/sqrt(M) = 1.6 %)
    f, p, bands = band_power(ours)
    _, p_ref, bands_ref = band_power(ref)
    np.testing.assert_allclose(bands, bands_ref, rtol=0.08)
    # ... and the slope of log S(f) over the nonzero frequencies is -beta = -1 (white noise: 0)
    slope = np.polyfit(np.log(f[1:]), np.log(p[1:]), 1)[0]
    slope_ref = np.polyfit(np.log(f[1:]), np.log(p_ref[1:]), 1)[0]
    assert abs(slope + 1.0) < 0.05 and abs(slope - slope_ref) < 0.05, (slope, slope_ref)
    # the noise is temporally correlated (white noise has lag-1 autocorrelation 0)
    lag1 = np.mean(ours[:, 1:] * ours[:, :-1]) / np.mean(ours**2)
    assert lag1 > 0.5, lag1


def test_pink_teacher_acts_with_its_episode_sequence_and_redraws_it_at_a_reset():
    sigma, episode, a = 0.3, 16, 2
    teacher = teachers.make(TeacherConfig(name="pink", init_std=sigma), 3, a, episode_length=episode)
    mu = jnp.asarray([[0.1, -0.2], [0.5, 0.0], [-0.3, 0.4]], jnp.float32)

    @jax.jit
    def run(key):
        state = teacher.init(key, 3)
        memory, raws = state.memory, []
        for t in range(5):
            raw, memory = teacher.sample(state.params, memory, jax.random.fold_in(key, t), mu)
            raws.append(raw)
        after = teacher.observe(state.params, memory, jnp.asarray([1.0, 0.0, 0.0]), lambda: None,
                                jax.random.PRNGKey(9))
        return state, jnp.stack(raws), memory, after

    state, raws, memory, after = jax.tree.map(np.asarray, run(jax.random.PRNGKey(1)))
    noise = state.memory["noise"]
    assert noise.shape == (3, episode, a) and memory["t"].tolist() == [5, 5, 5]
    np.testing.assert_allclose(np.asarray(teacher.log_std(state.params)), np.log(sigma), rtol=1e-6)
    # raw_t = mu + sigma eps_t, eps_t read in order from the episode's sequence
    np.testing.assert_allclose(raws, np.asarray(mu)[None] + sigma * np.moveaxis(noise[:, :5], 1, 0), atol=1e-6)
    # at a reset (env 0) a new sequence from step 0; the others keep theirs and their step
    assert after["t"].tolist() == [0, 5, 5]
    np.testing.assert_array_equal(after["noise"][1:], noise[1:])
    assert not np.any(np.isclose(after["noise"][0], noise[0]))
