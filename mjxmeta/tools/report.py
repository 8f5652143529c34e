"""Reports over finished runs: tables with robust statistics and learning-curve PNGs.

``mjxmeta report RUN [RUN ...] --out DIR`` reads ``RUN/config.json`` and
``RUN/metrics.jsonl`` of several runs (different teachers and/or envs) and writes
``DIR/report.md`` with

* one Markdown table per env: final eval return mean ± sd over seeds, the
  interquartile mean (IQM) with a 95 % percentile-bootstrap confidence interval,
  and the probability of improvement of each teacher over the ``gaussian``
  (plain DDPG + Gaussian action noise) baseline with its 95 % bootstrap CI;
* ``learning_curves_env_steps.png`` and ``learning_curves_wall_s.png``: eval
  return vs. *all* env steps (D0 + D1 + R̂ rollouts, docs/algorithm.md,
  "Step accounting") and vs. wall-clock seconds; one panel per env, one line
  per teacher: the IQM over seeds at every log point with a 95 % CI band;
* a hyperparameter sweep (``mjxmeta train --sweep``) counts as one run per
  combination of its values (:func:`split_sweep`): each combination is a line
  and a table row of its own, labelled with its values, and pools with
  separate runs of the same setting;
* ``meta_teachers.png`` (if any meta teacher ran): meta-reward
  ℛ̂ = R̂(π') − R̂(π) and the teacher's σ = exp(mean log σ) vs. env steps.

Statistics follow R. Agarwal, M. Schwarzer, P. S. Castro, A. Courville,
M. G. Bellemare, *Deep Reinforcement Learning at the Edge of the Statistical
Precipice*, NeurIPS 2021 (the ``rliable`` library):

* **IQM** of n scores = ``scipy.stats.trim_mean(x, 0.25)``: sort, drop
  ``floor(0.25 n)`` scores at each end, average the rest (rliable's
  ``metrics.aggregate_iqm`` is exactly this call). IQM(1..8) = mean(3,4,5,6) = 4.5;
  for n < 4 nothing is trimmed and the IQM is the plain mean.
* **Probability of improvement** P(X > Y) = 1/(n m) Σ_i Σ_j S(x_i, y_j) with
  S = 1 if x_i > y_j, 1/2 if equal, 0 otherwise (the Mann-Whitney U statistic
  divided by n m; rliable's ``metrics.probability_of_improvement`` for one task).
* **Stratified bootstrap**: resample runs with replacement *within each task*.
  Every table and curve here is per env, i.e. one task, so the stratified
  bootstrap reduces to resampling seeds (and, for P(X > Y), resampling the seeds
  of X and of Y independently, as rliable does). Intervals are percentile
  intervals (rliable's default), ``reps`` resamples (default 2000).
  No across-env aggregate is computed: it would need a per-env score
  normalization the paper does not define.

Library choice: the bootstrap is ``scipy.stats.bootstrap(method="percentile")``,
not ``rliable``. rliable 1.2.0 pins ``arch<8``; arch 7.2.0 does not import with
pandas 3.x (``TypeError: deprecate_kwarg() missing ... 'new_arg_name'``), so
rliable only works with an extra ``pandas<3`` pin and a pandas/statsmodels/
seaborn/arch dependency chain; its bootstrap is also a Python loop per resample
(~8 s per probability-of-improvement pair at 2000 reps vs. ~10 ms here), too
slow for per-log-point CI bands. With pandas 2.3.3 and identical conventions
rliable gives the same point estimates and intervals within bootstrap noise
(see ``tests/test_report.py``).

Final score of a seed: its eval return at the last log point (rliable and the
paper's "reward reached"; a run always evaluates there), or with ``last=k`` the
mean of the last k evaluated log points (lower variance when ``eval_envs`` is
small). Learning curves of the return use only the log points that evaluated
(``Config.eval_every``); the training metrics use every log point. All seeds of
one line are read at the same env-step count (see :func:`group_runs`).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mjxmeta.algo.config import BRAX_STUDENTS, META_TEACHERS, TEACHER_NAMES
from mjxmeta.runs.loop import CONFIG, METRICS
from mjxmeta.runs.sinks import parse_row, run_of
from mjxmeta.tools.visitation import COORDINATES, load_visits, plot_visitation

BASELINE_TEACHER = "gaussian"
ENV_STEPS_LABEL = "env steps (D0 + D1 + R̂ rollouts)"
WALL_LABEL = "wall-clock s (first point includes JIT compile)"
RETURN_LABEL = "eval return (deterministic student)"
# Config fields that may differ between runs pooled into one line (more seeds of one setting); ``sweep`` is
# gone once a swept run is split into its combinations (:func:`split_sweep`).
_POOL_IGNORE = ("seed", "seeds", "total_steps", "checkpoint_every", "keep", "eval_every", "sweep")

# The paper's table (Xu et al. 2018; docs/algorithm.md, "The paper's table"; gym envs of 2018): env -> (Meta, DDPG) as "mean ± sd".
PAPER_TABLE = {
    "inverted_double_pendulum": ("InvertedDoublePendulum-v1", "7718 ± 277", "2795 ± 1325"),
    "inverted_pendulum": ("InvertedPendulum-v1", "745 ± 27", "499 ± 23"),
    "hopper": ("Hopper-v1", "205 ± 41", "135 ± 42"),
    "pendulum": ("Pendulum-v0", "−123 ± 10", "−206 ± 31"),
    "halfcheetah": ("HalfCheetah-v1", "2011 ± 339", "1594 ± 298"),
    "reacher": ("Reacher-v1", "−12.16 ± 1.19", "−11.67 ± 3.39"),
}


class ReportError(ValueError):
    """A run directory cannot be read; the message names the path and what is missing."""


# ----------------------------------------------------------------------------- loading
@dataclass
class Run:
    """One run directory.

    Attributes:
      path: the run directory.
      config: ``config.json`` as a dict (``mjxmeta.algo.config.to_dict`` layout; read
        raw, so runs written by older/newer versions still load).
      rows: ``metrics.jsonl`` rows, de-duplicated on (seed, iteration) (the last
        row wins) and sorted by (seed, iteration); a row has a finite
        ``eval_return`` or none (a log point without evaluation,
        ``Config.eval_every``).
      malformed: lines skipped because they are not UTF-8, not JSON, not an
        object, lack ``env_steps``/``seed`` or hold a non-numeric value (a
        torn last line included).
      nonfinite: rows skipped because ``eval_return`` is NaN or infinite
        (reported, never averaged).
      hparams: for one combination of a sweep (:func:`split_sweep`), its
        values {field: value} (already set in ``config``); else empty.
    """

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    malformed: int = 0
    nonfinite: int = 0
    hparams: dict[str, float] = field(default_factory=dict)

    @property
    def problems(self) -> str | None:
        """One line naming the skipped lines of this run, or None."""
        parts = [f"{n} {what}" for n, what in ((self.malformed, "malformed line(s)"),
                                              (self.nonfinite, "row(s) with a NaN/inf eval_return")) if n]
        return f"{self.path / METRICS}: skipped " + " and ".join(parts) if parts else None

    @property
    def env(self) -> str:
        return str(self.config.get("env", "?"))

    @property
    def teacher(self) -> str:
        """The run's line name: its teacher, or ``sac``/``ppo`` for Brax's trainers (which take no teacher)."""
        student = self.config.get("student", {}).get("name")
        if student in BRAX_STUDENTS:
            return str(student)
        return str(self.config.get("teacher", {}).get("name", "?"))

    @property
    def seeds(self) -> list[int]:
        return sorted({int(r["seed"]) for r in self.rows})

    def seed_series(self, seed: int, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(env_steps (P,), wall_s (P,), values (P,)) of one seed's rows that hold ``key`` (P = 0: none)."""
        rows = [r for r in self.rows if int(r["seed"]) == seed and key in r]
        steps = np.array([float(r["env_steps"]) for r in rows])
        wall = np.array([float(r.get("wall_s", math.nan)) for r in rows])
        vals = np.array([float(r.get(key, math.nan)) for r in rows])
        return steps, wall, vals


def load_run(path: str | Path) -> Run:
    """Reads one run directory.

    Raises:
      ReportError: ``path`` is not a directory or lacks ``metrics.jsonl`` /
        ``config.json``, or ``metrics.jsonl`` holds no complete row with
        ``env_steps``, ``seed`` and ``eval_return``.
    """
    p = Path(path)
    if not p.is_dir():
        raise ReportError(f"run {str(path)!r} is not a directory")
    if not (p / METRICS).is_file():
        raise ReportError(f"run {str(path)!r} has no {METRICS}")
    if not (p / CONFIG).is_file():
        raise ReportError(f"run {str(path)!r} has no {CONFIG}")
    try:
        config = json.loads((p / CONFIG).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"run {str(path)!r}: {CONFIG} is not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise ReportError(f"run {str(path)!r}: {CONFIG} is not a JSON object")
    by_key: dict[tuple[int, int], dict[str, Any]] = {}
    malformed = nonfinite = 0
    for line in (p / METRICS).read_bytes().splitlines():
        row = parse_row(line)
        if row is None:
            malformed += 1
        elif not math.isfinite(row.get("eval_return", 0.0)):
            nonfinite += 1
        else:
            by_key[(int(run_of(row)), int(row.get("iteration", row["env_steps"])))] = row
    if not any("eval_return" in row for row in by_key.values()):
        raise ReportError(f"run {str(path)!r}: {METRICS} has no complete rows (env_steps, seed, eval_return)"
                          + (f"; skipped {malformed} malformed line(s) and {nonfinite} NaN/inf return(s)"
                             if malformed or nonfinite else ""))
    rows = [by_key[k] for k in sorted(by_key)]
    return Run(path=p, config=config, rows=rows, malformed=malformed, nonfinite=nonfinite)


def split_sweep(run: Run) -> list[Run]:
    """A swept run as one :class:`Run` per combination of its values, in the order of first appearance.

    Each part holds the rows whose ``hparams`` equal that combination, a
    config with those values set and without ``sweep``, and
    ``Run.hparams``; the skipped-line counts stay with the first part. A run
    without a sweep is returned as is.
    """
    if not run.config.get("sweep"):
        return [run]
    parts: dict[str, list[dict[str, Any]]] = {}
    for row in run.rows:
        parts.setdefault(json.dumps(row.get("hparams", {}), sort_keys=True), []).append(row)
    out = []
    for i, (key, rows) in enumerate(parts.items()):
        hparams = json.loads(key)
        config = json.loads(json.dumps({k: v for k, v in run.config.items() if k != "sweep"}))
        for dotted, value in hparams.items():
            sub, name = dotted.split(".")
            config.setdefault(sub, {})[name] = value
        out.append(Run(path=run.path, config=config, rows=rows, malformed=run.malformed if i == 0 else 0,
                       nonfinite=run.nonfinite if i == 0 else 0, hparams=hparams))
    return out


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """:func:`load_run` of every path, in order, swept runs split by :func:`split_sweep`.

    Raises ReportError naming the first bad path."""
    runs = [part for p in paths for part in split_sweep(load_run(p))]
    if not runs:
        raise ReportError("no runs given")
    return runs


# ----------------------------------------------------------------------------- grouping
@dataclass
class Group:
    """All seeds of one (env, setting): one line in the plots, one row in a table.

    Runs of the same env and teacher whose configs agree except for
    ``seed``, ``seeds``, ``total_steps``, ``checkpoint_every`` and ``keep`` are
    pooled (their seeds concatenated); differently configured runs of one
    teacher get a label naming the differing fields.

    Attributes:
      env, teacher, label: names; ``label`` is unique within the env.
      runs: the pooled runs.
      steps: (P,) common env-step grid of ``eval_return``: the evaluated log
        points of the first seed, restricted to the range every seed covers.
      wall: (P,) mean wall-clock seconds at each grid point over runs.
      metric_steps: (Q,) the same for every log point (Q >= P): the grid of
        the training metrics, which every log point records.
      curves: {metric: (S, P) for ``eval_return``, else (S, Q)} per seed,
        linearly interpolated in env steps onto its grid (exact when the seeds
        share log points, as the seeds of one vmapped run do); all NaN for a
        metric some seed never recorded.
    """

    env: str
    teacher: str
    label: str
    runs: list[Run]
    steps: np.ndarray
    wall: np.ndarray
    metric_steps: np.ndarray
    curves: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_seeds(self) -> int:
        return int(self.curves["eval_return"].shape[0])

    @property
    def is_meta(self) -> bool:
        return self.teacher in META_TEACHERS


_META_PANELS = (  # (metrics.jsonl key, title, y label, transform of the per-seed values)
    ("meta_reward", "meta-reward", "ℛ̂ = R̂(π') − R̂(π)  (chunk mean)", None),
    ("teacher_log_std", "teacher exploration σ", "σ = exp(mean log σ)  (normalized actions)", np.exp),
    ("teacher_grad_norm", "meta-gradient norm", "‖ĝ‖  (chunk mean)", None),
    ("advantage_rms", "advantage spread", "RMS over candidates of ℛ_k − b_k", None),
    ("grad_cosine_ema", "cos(ĝ_t, ĝ_{t−1}), EMA 0.9", "≈ 0: sign flips (noise); > 0: a direction", None),
    ("log_std_shift", "teacher log σ moved since start", "mean_i |log σ_i − log σ_i(0)|", None),
    ("log_std_path", "teacher log σ path length", "Σ_t mean_i |Δ log σ_i|", None),
    ("net_shift", "teacher net f moved since start", "‖θ_f − θ_f(0)‖", None),
)
_CURVE_KEYS = ("eval_return", "return_pi", "d0_reward") + tuple(k for k, *_ in _META_PANELS)


def _pool_key(run: Run) -> str:
    cfg = {k: v for k, v in run.config.items() if k not in _POOL_IGNORE}
    return json.dumps(cfg, sort_keys=True)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _common_grid(grids: list[np.ndarray]) -> np.ndarray:
    """The points of ``grids[0]`` inside the env-step range every grid covers (its right end if none)."""
    lo = max(g[0] for g in grids)
    hi = min(g[-1] for g in grids)
    steps = grids[0][(grids[0] >= lo) & (grids[0] <= hi)]
    return steps if steps.size else np.array([hi])


def _build_group(env: str, teacher: str, label: str, runs: list[Run]) -> Group:
    series = [(run, s) for run in runs for s in run.seeds if run.seed_series(s, "eval_return")[0].size]
    steps = _common_grid([run.seed_series(s, "eval_return")[0] for run, s in series])
    metric_steps = _common_grid([run.seed_series(s, "env_steps")[0] for run, s in series])
    curves: dict[str, np.ndarray] = {}
    walls = []
    for key in _CURVE_KEYS:
        grid = steps if key == "eval_return" else metric_steps
        rows = []
        for run, s in series:
            x, w, v = run.seed_series(s, key)
            ok = x.size and np.all(np.isfinite(v))
            rows.append(np.interp(grid, x, v) if ok else np.full(grid.shape, np.nan))
            if key == "eval_return":
                walls.append(np.interp(grid, x, w))
        curves[key] = np.stack(rows)
    return Group(env=env, teacher=teacher, label=label, runs=runs, steps=steps,
                 wall=np.nanmean(np.stack(walls), axis=0), metric_steps=metric_steps, curves=curves)


def _teacher_rank(name: str) -> int:
    return TEACHER_NAMES.index(name) if name in TEACHER_NAMES else len(TEACHER_NAMES)


def group_runs(runs: Sequence[Run]) -> dict[str, list[Group]]:
    """{env: [Group, ...]}; envs sorted by name, groups by teacher (gaussian, ou, meta_*)."""
    pools: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        pools.setdefault((run.env, run.teacher, _pool_key(run)), []).append(run)
    out: dict[str, list[Group]] = {}
    for env in sorted({k[0] for k in pools}):
        groups = []
        for teacher in sorted({k[1] for k in pools if k[0] == env}, key=lambda t: (_teacher_rank(t), t)):
            keys = [k for k in pools if k[0] == env and k[1] == teacher]
            if len(keys) == 1:
                labels = [teacher]
            else:
                flats = [_flatten(json.loads(k[2])) for k in keys]
                differ = sorted(f for f in set().union(*flats) if len({repr(fl.get(f)) for fl in flats}) > 1)
                labels = [f"{teacher} ({', '.join(f'{f}={fl.get(f)}' for f in differ)})" for fl in flats]
            groups += [_build_group(env, teacher, lab, pools[k]) for k, lab in zip(keys, labels)]
        out[env] = groups
    return out


# ----------------------------------------------------------------------------- statistics
def iqm(x: np.ndarray, axis: int | None = 0) -> np.ndarray:
    """Interquartile mean along ``axis``: ``scipy.stats.trim_mean(x, 0.25, axis)``.

    Drops ``floor(0.25 n)`` of the n values at each end and averages the rest
    (Agarwal et al. 2021, eq. in Sec. 4.2; rliable ``aggregate_iqm``).
    """
    from scipy.stats import trim_mean

    return trim_mean(np.asarray(x, dtype=float), 0.25, axis=axis)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(X > Y) for samples along ``axis``: mean over all pairs of [x > y] + ½ [x = y].

    Shapes: ``x`` (..., n) and ``y`` (..., m) along ``axis`` with equal leading
    shapes; returns the leading shape. One task: Agarwal et al. 2021, Sec. 4.3
    (the Mann-Whitney U statistic divided by n m).
    """
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)[..., :, None]
    y = np.moveaxis(np.asarray(y, dtype=float), axis, -1)[..., None, :]
    return np.mean((x > y) + 0.5 * (x == y), axis=(-2, -1))


def _bootstrap(data: tuple[np.ndarray, ...], statistic, reps: int, seed: int, axis: int = 0):
    """Percentile 95 % CI of ``statistic`` over independent resamples of each sample along ``axis``.

    Returns (low, high) with the statistic's shape; NaN where a sample has fewer
    than 2 values (no interval can be formed).
    """
    from scipy.stats import bootstrap

    if any(d.shape[axis] < 2 for d in data):
        shape = np.shape(statistic(*data, axis=axis))
        return np.full(shape, np.nan), np.full(shape, np.nan)
    res = bootstrap(data, statistic, n_resamples=reps, confidence_level=0.95, method="percentile",
                    vectorized=True, paired=False, axis=axis, rng=np.random.default_rng(seed))
    return np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)


def iqm_ci(scores: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM over seeds and its 95 % percentile bootstrap CI.

    Args:
      scores: (S,) or (S, P) — seeds along axis 0 (P log points are treated
        independently: a pointwise band).
    Returns:
      (point, low, high), each () or (P,). CI bounds are NaN when S < 2.
    """
    scores = np.asarray(scores, dtype=float)
    point = iqm(scores, axis=0)
    low, high = _bootstrap((scores,), lambda a, axis: iqm(a, axis=axis), reps, seed)
    return point, low, high


def poi_ci(x: np.ndarray, y: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """P(X > Y) of final scores x (n,) and y (m,), with a 95 % bootstrap CI (x and y resampled independently)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    point = float(probability_of_improvement(x, y))
    low, high = _bootstrap((x, y), probability_of_improvement, reps, seed, axis=-1)
    return point, float(low), float(high)


def final_scores(group: Group, last: int = 1) -> np.ndarray:
    """(S,) final score per seed: mean eval return over the last ``last`` points of ``group.steps``."""
    if last < 1:
        raise ValueError(f"last = {last} is invalid: accepted an integer >= 1")
    return np.mean(group.curves["eval_return"][:, -last:], axis=1)


# ----------------------------------------------------------------------------- tables
def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def _student(group: Group) -> str:
    return str(group.runs[0].config.get("student", {}).get("name", "?"))


def reference_group(group: Group, groups: Sequence[Group]) -> Group | None:
    """The ``gaussian`` group that ``group``'s probability of improvement is measured against.

    Same env (``groups`` is one env's), same student, and the same swept values
    of every non-teacher hyperparameter (a sweep over ``teacher.*`` compares each
    value with the one gaussian run). None for Brax's baselines (``sac``/``ppo``
    take no teacher) and when no such gaussian run exists.
    """
    if _student(group) in BRAX_STUDENTS:
        return None
    own = {k: v for k, v in group.runs[0].hparams.items() if not k.startswith("teacher.")}
    return next((g for g in groups if g.teacher == BASELINE_TEACHER and _student(g) == _student(group)
                 and {k: v for k, v in g.runs[0].hparams.items() if not k.startswith("teacher.")} == own), None)


def summary_table(env: str, groups: Sequence[Group], reps: int = 2000, last: int = 1, seed: int = 0) -> str:
    """Markdown section for one env: a header line and a table with one row per group.

    Columns: teacher, seeds, env steps at the final point, final return
    mean ± sd (sample sd, ddof 1), IQM [95 % CI], P(teacher > gaussian)
    [95 % CI], wall-clock seconds. P(X > gaussian) compares a group with the
    gaussian run of its own student (:func:`reference_group`); it is "n/a" when
    there is none (always for ``sac``/``ppo``); a gaussian row reads "(reference)".
    """
    final_desc = "last log point" if last == 1 else f"mean of the last {last} log points"
    lines = [f"## {env}", ""]
    lines.append(f"Final return per seed = eval return at the {final_desc}; IQM and P(X > gaussian) with 95 % "
                 f"percentile stratified-bootstrap CIs ({reps} resamples of seeds).")
    lines.append(f"P(X > gaussian) compares each line with the `{BASELINE_TEACHER}` run of the same student (and the "
                 "same swept non-teacher values); n/a where there is none, e.g. Brax's sac/ppo, which take no teacher.")
    lines += ["", "| teacher | seeds | env steps | final return mean ± sd | IQM [95 % CI] | "
                  "P(X > gaussian) [95 % CI] | wall s |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, g in enumerate(groups):
        s = final_scores(g, last)
        sd = float(np.std(s, ddof=1)) if s.size > 1 else math.nan
        point, low, high = iqm_ci(s, reps, seed + i)
        iqm_txt = f"{_fmt(float(point))} [{_fmt(float(low))}, {_fmt(float(high))}]"
        base = reference_group(g, groups)
        if g.teacher == BASELINE_TEACHER and base is g:
            poi_txt = "(reference)"
        elif base is None:
            poi_txt = "n/a"
        else:
            p, pl, ph = poi_ci(s, final_scores(base, last), reps, seed + 1000 + i)
            poi_txt = f"{p:.2f} [{pl:.2f}, {ph:.2f}]" if math.isfinite(pl) else f"{p:.2f} [n/a]"
        lines.append(f"| {g.label} | {g.num_seeds} | {int(g.steps[-1])} | {_fmt(float(np.mean(s)))} ± {_fmt(sd)} | "
                     f"{iqm_txt} | {poi_txt} | {_fmt(float(g.wall[-1]))} |")
    ends = [int(g.steps[-1]) for g in groups]
    if max(ends) > 1.05 * min(ends):
        lines += ["", f"**Warning:** final points lie at {min(ends)}..{max(ends)} env steps (more than 5 % apart); "
                      "final scores and P(X > gaussian) then compare different budgets."]
    if env in PAPER_TABLE:
        name, meta_score, ddpg_score = PAPER_TABLE[env]
        lines += ["", f"Paper (Xu et al. 2018, {name}, gym of 2018, mean ± sd): Meta {meta_score}, DDPG {ddpg_score}. "
                      "Brax/MJX ports differ: compare directions and ratios, not absolute numbers."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots
def _colors(groups_by_env: dict[str, list[Group]]) -> dict[str, Any]:
    from matplotlib import colormaps

    labels = []
    for groups in groups_by_env.values():
        for g in groups:
            if g.label not in labels:
                labels.append(g.label)
    labels.sort(key=lambda lab: (_teacher_rank(lab.split(" ")[0]), lab))
    cmap = colormaps["tab10"]
    return {lab: cmap(i % 10) for i, lab in enumerate(labels)}


def _figure(n_panels: int, ncols: int, w: float = 5.0, h: float = 3.6):
    from matplotlib.figure import Figure

    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _band(ax, x, values, color, label, reps, seed, transform=None):
    v = values if transform is None else transform(values)
    point, low, high = iqm_ci(v, reps, seed)
    ax.plot(x, point, color=color, label=label, lw=1.8, marker="." if len(x) < 30 else None)
    if np.all(np.isfinite(low)):
        ax.fill_between(x, low, high, color=color, alpha=0.15, lw=0)


def plot_learning_curves(groups_by_env: dict[str, list[Group]], out_png: str | Path, x: str = "env_steps",
                         reps: int = 2000, seed: int = 0) -> Path:
    """Eval return vs. ``x`` — one panel per env, one line per group.

    Each line is the IQM over seeds at every log point (``Group.curves
    ["eval_return"]``, shape (S, P)) with a pointwise 95 % percentile-bootstrap
    band over seeds. ``x`` is ``"env_steps"`` (all D0 + D1 + R̂ steps) or
    ``"wall_s"`` (mean wall-clock seconds of the pooled runs at each point).

    Returns:
      the written PNG path.
    """
    if x not in ("env_steps", "wall_s"):
        raise ValueError(f"x = {x!r} is invalid: accepted 'env_steps' or 'wall_s'")
    envs = list(groups_by_env)
    fig, axes = _figure(len(envs), min(3, len(envs)))
    colors = _colors(groups_by_env)
    for k, env in enumerate(envs):
        ax = axes.flat[k]
        for i, g in enumerate(groups_by_env[env]):
            xs = g.steps if x == "env_steps" else g.wall
            _band(ax, xs, g.curves["eval_return"], colors[g.label], f"{g.label} (n={g.num_seeds})", reps, seed + i)
        ax.set_title(env)
        ax.set_xlabel(ENV_STEPS_LABEL if x == "env_steps" else WALL_LABEL)
        ax.set_ylabel(RETURN_LABEL)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        ax.legend(fontsize="small", title="IQM ± 95 % CI", title_fontsize="small")
    for ax in list(axes.flat)[len(envs):]:
        ax.set_visible(False)
    fig.suptitle(f"Learning curves vs. {'env steps' if x == 'env_steps' else 'wall-clock'}")
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def plot_meta(groups_by_env: dict[str, list[Group]], out_png: str | Path, reps: int = 2000,
              seed: int = 0) -> Path | None:
    """Meta-reward, teacher σ and the meta-gradient diagnostics vs. env steps; None without meta teachers.

    One row of panels per env with a meta teacher (:data:`_META_PANELS`):
    meta-reward ℛ̂ = R̂(π') − R̂(π) (chunk mean), σ = exp(``teacher_log_std``)
    (geometric mean over action dims at the end of each chunk, normalized
    action units), the meta-gradient norm, the advantage spread across the K
    candidates, the EMA of the cosine between successive meta-gradients, and
    how far log σ and the teacher network f have moved since the start.
    Panels without data (runs from before the diagnostics existed) stay
    empty. Lines: IQM over seeds with a 95 % bootstrap band.
    """
    metas = {env: [g for g in gs if g.is_meta] for env, gs in groups_by_env.items()}
    metas = {env: gs for env, gs in metas.items() if gs}
    if not metas:
        return None
    ncols = 4
    rows_per_env = math.ceil(len(_META_PANELS) / ncols)
    fig, axes = _figure(ncols * rows_per_env * len(metas), ncols, w=4.6, h=3.3)
    colors = _colors(groups_by_env)
    for r, (env, groups) in enumerate(metas.items()):
        for p, (key, title, ylabel, transform) in enumerate(_META_PANELS):
            ax = axes[r * rows_per_env + p // ncols, p % ncols]
            for i, g in enumerate(groups):
                if np.all(np.isfinite(g.curves[key])):
                    _band(ax, g.metric_steps, g.curves[key], colors[g.label], f"{g.label} (n={g.num_seeds})", reps,
                          seed + i, transform)
            if key in ("meta_reward", "grad_cosine_ema"):
                ax.axhline(0.0, color="k", lw=0.8, ls="--")
            ax.set_title(f"{env}: {title}", fontsize="medium")
            ax.set_ylabel(ylabel, fontsize="small")
            ax.set_xlabel(ENV_STEPS_LABEL)
            ax.grid(alpha=0.3)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
            if p == 0:
                ax.legend(fontsize="small", title="IQM ± 95 % CI", title_fontsize="small")
    fig.suptitle("Meta teachers: meta-reward, σ and meta-gradient diagnostics")
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


# ----------------------------------------------------------------------------- report
def plot_visitation_panels(groups_by_env: dict[str, list[Group]], out_dir: Path) -> dict[str, Path]:
    """``visitation_<env>.png`` (teacher ``meta`` vs ``gaussian``, early vs late) for envs with a layout.

    Returns:
      {env: png path} for the envs where both runs kept visitation samples.
    """
    out = {}
    for env, gs in groups_by_env.items():
        if env not in COORDINATES:
            continue
        runs = {g.teacher: g.runs[0].path for g in gs  # a swept run's dumps mix its combinations: left out
                if g.teacher in ("meta", BASELINE_TEACHER) and not g.runs[0].hparams}
        runs = {t: p for t, p in runs.items() if load_visits(p)}
        if runs:
            order = [t for t in ("meta", BASELINE_TEACHER) if t in runs]
            out[env] = plot_visitation(env, runs, out_dir / f"visitation_{env}.png", teachers=order)
    return out


def write_report(paths: Sequence[str | Path], out_dir: str | Path, reps: int = 2000, last: int = 1,
                 seed: int = 0) -> Path:
    """Loads ``paths``, writes tables and PNGs to ``out_dir``; returns ``out_dir/report.md``.

    Files: ``report.md``, ``learning_curves_env_steps.png``,
    ``learning_curves_wall_s.png`` and, with meta teachers, ``meta_teachers.png``.

    Raises:
      ReportError: a path is not a readable run directory.
      ValueError: ``reps`` < 1 or ``last`` < 1.
    """
    if reps < 1:
        raise ValueError(f"reps = {reps} is invalid: accepted an integer >= 1")
    if last < 1:
        raise ValueError(f"last = {last} is invalid: accepted an integer >= 1")
    runs = load_runs(paths)
    groups = group_runs(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    problems = [r.problems for r in runs if r.problems]  # a swept run's are on its first part only
    for line in problems:
        print(f"mjxmeta: warning: {line}", file=sys.stderr)
    curves = plot_learning_curves(groups, out / "learning_curves_env_steps.png", "env_steps", reps, seed)
    walls = plot_learning_curves(groups, out / "learning_curves_wall_s.png", "wall_s", reps, seed)
    meta = plot_meta(groups, out / "meta_teachers.png", reps, seed)
    md = ["# mjxmeta report", "",
          f"{len(runs)} runs, {len(groups)} env(s). Statistics after Agarwal et al., *Deep RL at the Edge of the "
          "Statistical Precipice* (NeurIPS 2021): IQM = 25 %-trimmed mean over seeds; P(X > gaussian) = "
          "P(a random seed of X beats a random seed of the gaussian-noise DDPG baseline), ties count ½; "
          "95 % percentile bootstrap CIs by `scipy.stats.bootstrap` (rliable's conventions, resampling seeds "
          "within each env). Env steps count D0, D1 and R̂ rollouts; evaluation episodes are not counted.", ""]
    if problems:
        md += ["Skipped input (not averaged):", ""] + [f"* {line}" for line in problems] + [""]
    for env, gs in groups.items():
        md.append(summary_table(env, gs, reps, last, seed))
    md += ["## Learning curves", "", f"![learning curves vs env steps]({curves.name})", "",
           f"![learning curves vs wall-clock]({walls.name})", ""]
    if meta is not None:
        md += ["## Meta teachers", "", f"![meta-reward and teacher sigma]({meta.name})", ""]
    visits = plot_visitation_panels(groups, out)
    if visits:
        md += ["## State visitation of D0", "",
               "Uniform samples of the teacher's data D0, first vs last quarter of training, pooled over seeds.", ""]
        md += [f"![{env} state visitation]({png.name})" for env, png in visits.items()] + [""]
    md += ["## Runs", "", "| run | env | teacher | line | seeds | env steps per iteration |",
           "| --- | --- | --- | --- | ---: | ---: |"]
    for env, gs in groups.items():
        for g in gs:
            for run in g.runs:
                steps = sorted({int(r["env_steps"]) for r in run.rows if int(r["seed"]) == run.seeds[0]})
                its = sorted({int(r.get("iteration", 0)) for r in run.rows if int(r["seed"]) == run.seeds[0]})
                per = (steps[-1] // its[-1]) if its and its[-1] else math.nan
                md.append(f"| `{run.path}` | {env} | {run.teacher} | {g.label} | {len(run.seeds)} | {per} |")
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path
