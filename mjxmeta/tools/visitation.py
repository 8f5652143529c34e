"""State-visitation density of the teacher's data D0 (the paper's visitation figure).

The trainer keeps a uniform sample of D0 observations per chunk
(``RUN/visitation/iter_<iteration>.npy``, shape (S, samples, obs_size)). This
module maps them to two physical coordinates and draws 2-D histograms of
early vs late training, one row per teacher.

Coordinates:
  pendulum            angle theta = atan2(sin, cos) [rad] (0 = upright), angular velocity [rad/s]
  inverted_pendulum   cart position [m], pole angle [rad] (obs = [q, qd] of the MJX model)
  mountain_car_continuous  car position [m], velocity [m/step] (obs = [position, velocity])
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mjxmeta.runs.layout import VISITS

COORDINATES = {
    "pendulum": ("angle θ [rad]", "angular velocity [rad/s]"),
    "inverted_pendulum": ("cart position [m]", "pole angle [rad]"),
    "mountain_car_continuous": ("car position [m]", "velocity [m/step]"),
}


def coordinates(env: str, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(…, obs_size) observations -> two (…,) coordinate arrays (see module docstring).

    Raises:
      ValueError: for an env without a visitation layout (see ``COORDINATES``).
    """
    if env == "pendulum":
        return np.arctan2(obs[..., 1], obs[..., 0]), obs[..., 2]
    if env in ("inverted_pendulum", "mountain_car_continuous"):
        return obs[..., 0], obs[..., 1]
    raise ValueError(f"no visitation coordinates for env {env!r}: accepted {sorted(COORDINATES)}")


def load_visits(run_dir: str | Path) -> list[tuple[int, np.ndarray]]:
    """[(iteration, (S, samples, obs_size) array)] of a run, sorted by iteration (empty if none)."""
    d = Path(run_dir) / VISITS
    if not d.exists():
        return []
    out = [(int(p.stem.split("_")[1]), np.load(p)) for p in d.glob("iter_*.npy")]
    return sorted(out, key=lambda t: t[0])


def early_late(visits: list[tuple[int, np.ndarray]], fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Observations of the first and last ``fraction`` of chunks, pooled over seeds: (M, obs_size) each."""
    n = max(1, int(round(len(visits) * fraction)))
    early = np.concatenate([v.reshape(-1, v.shape[-1]) for _, v in visits[:n]])
    late = np.concatenate([v.reshape(-1, v.shape[-1]) for _, v in visits[-n:]])
    return early, late


def plot_visitation(env: str, runs: dict[str, str | Path], out_png: str | Path, bins: int = 40,
                    teachers: Sequence[str] | None = None) -> Path:
    """2-D histograms (fraction of states per bin, log colour scale) of D0 early vs late, one row per teacher.

    Args:
      env: env name (must be in ``COORDINATES``).
      runs: teacher name -> run directory with visitation samples.
      out_png: output path.

    Returns:
      ``out_png`` as a Path.

    Raises:
      ValueError: if no run has visitation samples.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    teachers = [t for t in (teachers or runs) if load_visits(runs[t])]
    if not teachers:
        raise ValueError(f"no visitation samples in any run of {env}: {list(runs.values())}")
    data = {t: early_late(load_visits(runs[t])) for t in teachers}
    allx, ally = coordinates(env, np.concatenate([np.concatenate(v) for v in data.values()]))
    xr = np.percentile(allx, [0.5, 99.5])
    yr = np.percentile(ally, [0.5, 99.5])
    fig, axes = plt.subplots(len(teachers), 2, figsize=(8, 3.2 * len(teachers)), squeeze=False,
                             sharex=True, sharey=True)
    xlabel, ylabel = COORDINATES[env]
    hists = {}
    for t in teachers:
        for phase, obs in zip(("early", "late"), data[t]):
            x, y = coordinates(env, obs)
            h, _, _ = np.histogram2d(x, y, bins=bins, range=[xr, yr])
            frac = h.T / max(1, len(x))
            hists[t, phase] = (np.ma.masked_equal(frac, 0.0), len(x))
    vmax = max(h.max() for h, _ in hists.values())  # one colour scale for every panel
    vmin = min(h.min() for h, _ in hists.values())
    norm = LogNorm(vmin=vmin, vmax=vmax)
    for i, t in enumerate(teachers):
        for j, phase in enumerate(("early", "late")):
            h, n = hists[t, phase]
            ax = axes[i, j]
            im = ax.imshow(h, origin="lower", aspect="auto", extent=[xr[0], xr[1], yr[0], yr[1]],
                           cmap="magma", norm=norm)
            ax.set_title(f"{t}: {phase} training (n={n})", fontsize=9)
            if i == len(teachers) - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
    fig.colorbar(im, ax=axes, shrink=0.8, label="fraction of D0 states per bin (log scale)")
    fig.suptitle(f"{env}: state visitation of the teacher's data D0 ")
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
