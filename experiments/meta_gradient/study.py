"""Look-ahead and meta-gradient estimator study (issue 10, items 2 and 3), resumable.

From a checkpoint of a partly trained DDPG student, draws many independent
meta-gradient estimates per setting, all from the *same* student, normalizer
and replay buffer, vmapped. Each draw gets fresh teacher start states (env
resets), fresh action noise, look-ahead minibatches and R-hat start states.

Stages (each writes one JSON per setting into ``--out``; existing JSONs are
skipped, so a stopped run loses at most the setting in progress):

  checkpoints  train ``meta_variance`` on the env (K=2, E=1, H=200, the defaults
               of the time) and keep checkpoints near 5k, 10k and 30k env steps.
  sigma        mean meta-reward E[R-hat(pi') - R-hat(pi)] at fixed
               sigma in {0.05, 0.1, 0.2, 0.4, 0.8} per look-ahead design
               (K = 1, E = 4, H = 200), with a 95 % CI (normal, over draws).
  snr          SNR = ||E g||^2 / E||g - E g||^2 of the log-sigma meta-gradient at
               sigma = 0.2 per estimator setting; env steps per estimate
               K*N*T + E*H*(K+1); SNR per 1k env steps = SNR * 1000 / steps
               (averaging m independent estimates multiplies the SNR by m); also the
               share of non-finite draws (left out of the SNR) and quantiles of |g|.
  cost         compile seconds, XLA memory, peak RSS and env steps/s of one training
               iteration per setting, timed interleaved in one process (issue 18).
  plot         ``sigma.png`` and ``snr.png`` from the JSONs, and ``table.md``.

Usage (from the repository root):
  PYTHONPATH=$PWD python experiments/meta_gradient/study.py checkpoints --env pendulum
  PYTHONPATH=$PWD python experiments/meta_gradient/study.py sigma --env pendulum --at 30k --draws 256
  PYTHONPATH=$PWD python experiments/meta_gradient/study.py snr --env pendulum --at 30k --draws 256
  PYTHONPATH=$PWD python experiments/meta_gradient/study.py cost --env pendulum --at 30k \
      --settings K2_E1_loo K2_E1_pathwise_H10 K2_E1_pathwise_H50 K2_E1_pathwise_H200
  PYTHONPATH=$PWD python experiments/meta_gradient/study.py plot
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RUNS = Path("checkpoints") / "meta_gradient"
SIGMAS = (0.05, 0.1, 0.2, 0.4, 0.8)
AT = {"5k": 5_000, "10k": 10_000, "30k": 30_000}

# look-ahead designs: name -> MetaConfig overrides
DESIGNS = {
    "d0_u50": dict(lookahead_updates=50),                                    # the paper's reading (old default)
    "d0_u10": dict(lookahead_updates=10),
    "d0_u50_lr0.1": dict(lookahead_updates=50, lookahead_lr_scale=0.1),
    "mixed0.25_u50": dict(lookahead_updates=50, lookahead_data="mixed", lookahead_d0_fraction=0.25),
    "mixed0.1_u300": dict(lookahead_updates=300, lookahead_data="mixed", lookahead_d0_fraction=0.1),
    # control: one D0 row per minibatch of 64, i.e. the student's own update on B (what any update does)
    "buffer_u50": dict(lookahead_updates=50, lookahead_data="mixed", lookahead_d0_fraction=1 / 64),
    "mixed0.25_u50_lr0.1": dict(lookahead_updates=50, lookahead_data="mixed", lookahead_d0_fraction=0.25,
                                lookahead_lr_scale=0.1),
    "mixed0.5_u50": dict(lookahead_updates=50, lookahead_data="mixed", lookahead_d0_fraction=0.5),
    "mixed0.25_u10": dict(lookahead_updates=10, lookahead_data="mixed", lookahead_d0_fraction=0.25),
    "mixed0.25_u200": dict(lookahead_updates=200, lookahead_data="mixed", lookahead_d0_fraction=0.25),
}

# estimator settings: name -> (MetaConfig overrides, TeacherConfig overrides)
ESTIMATORS = {
    "paper_K1_E1_none": (dict(candidates=1, return_envs=1), dict(baseline="none")),
    "K2_E1_loo": (dict(candidates=2, return_envs=1), dict(baseline="leave_one_out")),
    "K8_E1_loo": (dict(candidates=8, return_envs=1), dict(baseline="leave_one_out")),
    "K4_E1_loo": (dict(candidates=4, return_envs=1), dict(baseline="leave_one_out")),
    "K16_E1_loo": (dict(candidates=16, return_envs=1), dict(baseline="leave_one_out")),
    "K2_E4_loo": (dict(candidates=2, return_envs=4), dict(baseline="leave_one_out")),
    "K2_E16_loo": (dict(candidates=2, return_envs=16), dict(baseline="leave_one_out")),
    # K = 1 with the moving-average baseline: every draw starts from a fresh baseline state, so the
    # EMA holds only its initial value; see the README for what this measures
    "K1_E1_ema": (dict(candidates=1, return_envs=1), dict(baseline="ema")),
    "K2_E1_paired": (dict(candidates=2, return_envs=1, paired=True), dict(baseline="leave_one_out")),
    "K8_E1_paired": (dict(candidates=8, return_envs=1, paired=True), dict(baseline="leave_one_out")),
    "K2_E4_paired": (dict(candidates=2, return_envs=4, paired=True), dict(baseline="leave_one_out")),
    "K2_E1_es": (dict(candidates=2, return_envs=1), dict(estimator="es")),
    "K8_E1_es": (dict(candidates=8, return_envs=1), dict(estimator="es")),
    "K2_E4_es": (dict(candidates=2, return_envs=4), dict(estimator="es")),
    # issue 18: the pathwise gradient of the critic-closed H_grad-step return (no extra env steps; K just averages)
    "K2_E1_pathwise_H10": (dict(candidates=2, return_envs=1, grad_horizon=10), dict(estimator="pathwise")),
    "K2_E1_pathwise_H50": (dict(candidates=2, return_envs=1, grad_horizon=50), dict(estimator="pathwise")),
    "K2_E1_pathwise_H200": (dict(candidates=2, return_envs=1, grad_horizon=200), dict(estimator="pathwise")),
    "K1_E1_pathwise_H10": (dict(candidates=1, return_envs=1, grad_horizon=10), dict(estimator="pathwise",
                                                                                   baseline="none")),
    "K2_E1_pathwise_H10_full": (dict(candidates=2, return_envs=1, grad_horizon=10, pathwise_dynamics="full"),
                                dict(estimator="pathwise")),
}
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "n/a"


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def versions() -> dict[str, str]:
    import importlib.metadata

    return {p: importlib.metadata.version(p) for p in ("jax", "jaxlib", "optax", "flax", "brax", "mujoco-mjx")}


def run_dir(env: str) -> Path:
    return RUNS / f"{env}-meta_variance"


# ------------------------------------------------------------------------------------------- checkpoints
def make_checkpoints(env: str, label: str = "") -> None:
    """Trains meta_variance and saves checkpoints at the iterations nearest 5k, 10k and 30k env steps."""
    from mjxmeta.algo.config import Config, StudentConfig, TeacherConfig
    from mjxmeta.runs.loop import train
    from mjxmeta.runs.layout import holds_run, prepare_run_dir

    from mjxmeta.algo.config import MetaConfig

    # The committed results used these (the defaults of the day each checkpoint was made): pendulum
    # the D0-only look-ahead, the other envs the mixed one.
    # inverted_pendulum was first made with 4 seeds; seed s of a vmapped run uses seed s's keys, so one
    # seed gives the same seed-0 student at a quarter of the cost (the checkpoints are not in git).
    seeds, data = {"pendulum": (1, "d0")}.get(env, (1, "mixed"))
    base = Config(env=env, seeds=seeds, teacher=TeacherConfig(name="meta_variance"),
                  meta=MetaConfig(lookahead_data=data), student=StudentConfig(buffer_size=100_000), log_every=1,
                  eval_envs=10, visit_samples=0)
    per = base.steps_per_iteration
    its = {k: max(1, round(v / per)) for k, v in AT.items()}
    every = math.gcd(*its.values())
    config = dataclasses.replace(base, total_steps=its["30k"] * per, checkpoint_every=every,
                                 keep=its["30k"] // every + 1)
    path = prepare_run_dir(run_dir(env), config)
    resume = holds_run(path)
    final = train(config, path, resume=resume, progress=False)
    (path / "iterations.json").write_text(json.dumps(dict({k: its[k] for k in AT}, **({"label": label} if label else {}))))
    print(f"checkpoints in {path}: iterations {its}, final eval return {final}")


def load(env: str, at: str):
    """(trainer config, single-seed TrainState) of the checkpoint ``at``."""
    import jax

    from mjxmeta.runs.loop import load_checkpoint

    its = json.loads((run_dir(env) / "iterations.json").read_text())
    trainer, state, record = load_checkpoint(run_dir(env), its[at])
    return trainer.config, jax.tree.map(lambda x: x[0], state), record


def student_label(env: str) -> str:
    """The ``label`` of the env's checkpoint run (``iterations.json``), "" for the original students.

    The checkpoints are not in git; a student trained again after the code changed gets a label
    (e.g. ``s2``), so its results never mix with, or are skipped as, the first student's.
    """
    return json.loads((run_dir(env) / "iterations.json").read_text()).get("label", "")


# ------------------------------------------------------------------------------------------- draws
def draw_fn(config, base_state, baseline: float = 0.0):
    """jit(vmap(draw)) over (keys (D, 2), log-sigma parameters (D,)).

    ``baseline`` is the teacher's moving-average meta-reward baseline at the draw (read only with the
    ``ema`` baseline); a fresh teacher would hold 0.

    Returns per draw: (whole teacher gradient flattened (P,), its log-sigma part (A,), meta-rewards (K,),
    returns (K+1,)).
    """
    import jax
    import jax.flatten_util
    import jax.numpy as jnp

    from mjxmeta.algo import diagnostics
    from mjxmeta.algo.trainer import Trainer

    tr = Trainer(config)
    teacher0 = tr.teacher.init(jax.random.PRNGKey(0), tr.config.num_candidates * tr.config.num_envs)

    def draw(key, raw_log_std):
        k_env, k_d0, k_look, k_ret = jax.random.split(key, 4)
        params = dict(teacher0.params, log_std=jnp.full_like(teacher0.params["log_std"], raw_log_std))
        teacher = teacher0.replace(params=params, baseline=jnp.asarray(baseline, teacher0.baseline.dtype))
        state = base_state.replace(teacher=teacher, env_state=tr.env.reset(jax.random.split(k_env, tr.config.num_candidates * tr.config.num_envs)),
                                   meta_diag=diagnostics.init_diagnostics(tr.teacher, params))
        est = tr.meta_estimate(state, k_d0, k_look, k_ret)
        flat, _ = jax.flatten_util.ravel_pytree(est["grad"])
        return flat, est["grad"]["log_std"], est["rewards"], est["returns"]

    return jax.jit(jax.vmap(draw)), tr


def run_draws(fn, tr, n: int, log_stds, seed: int, chunk: int = 64):
    """``n`` draws at log sigma ``log_stds`` (n,), in vmapped chunks; returns the :func:`draw_fn` outputs stacked."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    raws = tr.teacher.log_std_param(np.asarray(log_stds))
    outs = []
    for i in range(0, n, chunk):
        outs.append(jax.device_get(fn(keys[i:i + chunk], jnp.asarray(raws[i:i + chunk]))))
    return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]


def study_config(config, meta_kw=None, teacher_kw=None):
    from mjxmeta.algo.config import validate

    meta_kw = dict(meta_kw or {})
    teacher_kw = dict(teacher_kw or {})
    m = dataclasses.replace(config.meta, **meta_kw)
    t = dataclasses.replace(config.teacher, **teacher_kw)
    return validate(dataclasses.replace(config, meta=m, teacher=t))


def ci95(x: np.ndarray) -> float:
    return float(1.96 * x.std(ddof=1) / math.sqrt(len(x)))


def write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def pending(stage: str, stems: dict[str, str]):
    """(name, path) of the settings of ``stage`` whose JSON ``RESULTS/stage/<stem>.json`` is missing."""
    out = RESULTS / stage
    out.mkdir(parents=True, exist_ok=True)
    for name, stem in stems.items():
        path = out / f"{stem}.json"
        if path.exists():
            print(f"skip {path} (exists)")
        else:
            yield name, path


def stage_sigma(env: str, at: str, draws: int, designs) -> None:
    config, state, record = load(env, at)
    label = student_label(env)
    at_l = f"{at}-{label}" if label else at
    for name, path in pending("sigma", {n: f"{env}_{at_l}_{n}" for n in designs}):
        cfg = study_config(config, dict(DESIGNS[name], candidates=1, return_envs=4, return_horizon=200),
                           dict(baseline="none"))
        t0 = time.time()
        fn, tr = draw_fn(cfg, state)
        log_stds = np.repeat(np.log(SIGMAS), draws)
        _, _, rewards, returns = run_draws(fn, tr, len(log_stds), log_stds, seed=1)
        rows = {}
        for i, s in enumerate(SIGMAS):
            r = rewards[i * draws:(i + 1) * draws, 0]
            ret = returns[i * draws:(i + 1) * draws]
            rows[str(s)] = dict(mean=float(r.mean()), ci95=ci95(r), sd=float(r.std(ddof=1)), n=len(r),
                                return_pi=float(ret[:, 0].mean()), return_prime=float(ret[:, 1].mean()))
        write(path, dict(env=env, at=at_l, env_steps=record["env_steps"], design=name, meta=DESIGNS[name],
                         K=1, E=4, H=200, draws=draws, by_sigma=rows, wall_s=round(time.time() - t0, 1),
                         uptime=uptime()))
        print(name, {s: (round(v["mean"], 1), round(v["ci95"], 1)) for s, v in rows.items()}, flush=True)


def snr(g: np.ndarray) -> tuple[float, float]:
    """(SNR = ||mean||^2 / E||g - mean||^2 with the bias of ||mean||^2 removed, sign agreement)."""
    g = g.reshape(len(g), -1).astype(np.float64)
    mean = g.mean(0)
    var = ((g - mean) ** 2).sum(1).mean()
    signal = max(float((mean ** 2).sum() - var / len(g)), 0.0)
    agree = float(np.mean(np.sign(g) == np.sign(mean)))
    return signal / var, agree


def ema_baseline(env: str, at: str, tag: str, design: str, hor: str, more: str) -> float:
    """The ``ema`` setting's baseline: the mean meta-reward of the paper's K = 1 setting at the same
    student, look-ahead and H (what a moving average of the meta-reward settles at; an oracle EMA)."""
    ref = RESULTS / "snr" / f"{env}_{at}_{tag}{design}_paper_K1_E1_none{hor}{more}.json"
    if not ref.exists():
        raise SystemExit(f"K1_E1_ema needs {ref} first (run the setting paper_K1_E1_none)")
    return json.loads(ref.read_text())["meta_reward_mean"]


def stage_snr(env: str, at: str, draws: int, design: str, settings, teacher: str = "meta_variance",
              sigma: float = 0.2, horizon: int = 200) -> None:
    """SNR of the log-sigma gradient (and, for teachers with a network f, of the whole gradient)."""
    config, state, record = load(env, at)
    label = student_label(env)
    at_l = f"{at}-{label}" if label else at  # a regenerated student is another student: other files
    tag = "" if teacher == "meta_variance" else f"{teacher}_"
    more = "" if draws == 256 else f"_n{draws}"  # a repeat with another number of draws is another piece
    hor = "" if horizon == 200 else f"_H{horizon}"
    settings = sorted(settings, key=lambda n: n == "K1_E1_ema")  # the ema setting reads the paper's result
    for name, path in pending("snr", {n: f"{env}_{at_l}_{tag}{design}_{n}{hor}{more}" for n in settings}):
        meta_kw, teacher_kw = ESTIMATORS[name]
        cfg = study_config(config, dict(DESIGNS[design], return_horizon=horizon, **meta_kw),
                           dict(teacher_kw, name=teacher))
        baseline = ema_baseline(env, at_l, tag, design, hor, more) if teacher_kw.get("baseline") == "ema" else 0.0
        t0 = time.time()
        fn, tr = draw_fn(cfg, state, baseline)
        g_all, g, rewards, returns = run_draws(fn, tr, draws, np.full(draws, math.log(sigma)), seed=2)
        compile_and_run_s = round(time.time() - t0, 1)
        finite = np.all(np.isfinite(g_all), axis=1)  # a non-finite draw would be skipped by the trainer
        g_all, g, rewards, returns = g_all[finite], g[finite], rewards[finite], returns[finite]
        value, agree = snr(g)
        value_all, _ = snr(g_all)
        norms = dict(log_std_abs=np.quantile(np.abs(g).max(axis=1), QUANTILES).tolist(),
                     all_params=np.quantile(np.linalg.norm(g_all, axis=1), QUANTILES).tolist())
        # bootstrap CI of the SNR over draws
        rng = np.random.default_rng(0)
        boots = [snr(g[rng.integers(0, len(g), len(g))])[0] for _ in range(500)]
        cost = cfg.num_candidates * cfg.d0_size + cfg.meta.return_envs * cfg.meta.return_horizon * (cfg.num_candidates + 1)
        write(path, dict(env=env, at=at_l, env_steps=record["env_steps"], teacher=teacher, design=design, setting=name,
                         snr_all_params=value_all, n_params=int(g_all.shape[1]),
                         meta=meta_kw, teacher_config=teacher_kw, sigma=sigma, draws=draws, snr=value,
                         H=horizon, lookahead_updates=cfg.lookahead_updates, baseline_value=baseline,
                         return_pi_mean=float(returns[:, 0].mean()), return_pi_sd=float(returns[:, 0].std()),
                         # share of rollouts that reach the horizon: only where the reward is 1 per step alive
                         return_pi_at_cap=float(np.mean(returns[:, 0] >= horizon - 1e-3)) if env == "inverted_pendulum" else None,
                         return_prime_mean=float(returns[:, 1:].mean()),
                         return_prime_at_cap=float(np.mean(returns[:, 1:] >= horizon - 1e-3)) if env == "inverted_pendulum" else None,
                         snr_ci95=[float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))],
                         sign_agreement=agree, grad_mean=float(g.mean()), grad_sd=float(g.std(ddof=1)),
                         env_steps_per_estimate=cost, snr_per_1k_steps=value * 1000 / cost,
                         meta_reward_mean=float(rewards.mean()), meta_reward_sd=float(rewards.std()),
                         nonfinite_fraction=float(1.0 - finite.mean()), grad_norm_quantiles=dict(q=QUANTILES, **norms),
                         grad_horizon=cfg.meta.grad_horizon if teacher_kw.get("estimator") == "pathwise" else None,
                         pathwise_dynamics=cfg.meta.pathwise_dynamics if teacher_kw.get("estimator") == "pathwise" else None,
                         wall_s=round(time.time() - t0, 1), compile_and_draws_s=compile_and_run_s,
                         versions=versions(), loadavg=loadavg(), uptime=uptime()))
        print(name, f"snr={value:.4f} all={value_all:.4f} agree={agree:.2f} cost={cost} "
              f"per1k={value * 1000 / cost:.4f}", flush=True)


# ------------------------------------------------------------------------------------------- cost
def stage_cost(env: str, at: str, settings, reps: int, design: str = "mixed0.25_u50") -> None:
    """Compile seconds, XLA memory, process peak RSS and env steps/s of one whole training iteration
    (``Trainer.iteration``, one seed, from the checkpoint) per estimator setting, the settings' timed
    repetitions interleaved (A B C A B C ...) so that machine load hits all alike; ratios against the
    first setting (REINFORCE K = 2, LOO)."""
    import resource

    import jax

    from mjxmeta.algo import diagnostics
    from mjxmeta.algo.trainer import Trainer

    config, base_state, record = load(env, at)
    label = student_label(env)
    at_l = f"{at}-{label}" if label else at
    path = RESULTS / "cost" / f"{env}_{at_l}_{design}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    runs = {}
    for name in settings:
        meta_kw, teacher_kw = ESTIMATORS[name]
        cfg = study_config(config, dict(DESIGNS[design], **meta_kw), teacher_kw)
        tr = Trainer(cfg)
        teacher = tr.teacher.init(jax.random.PRNGKey(0), tr.config.num_candidates * tr.config.num_envs)
        state = base_state.replace(teacher=teacher, env_state=tr.env.reset(jax.random.split(jax.random.PRNGKey(1),
                                                                                                 tr.config.num_candidates * tr.config.num_envs)),
                                   meta_diag=diagnostics.init_diagnostics(tr.teacher, teacher.params))
        t0 = time.time()
        compiled = jax.jit(tr.iteration).lower(state).compile()
        compile_s = time.time() - t0
        mem = compiled.memory_analysis()
        jax.block_until_ready(compiled(state))  # warm
        runs[name] = dict(fn=compiled, state=state, steps=cfg.steps_per_iteration, compile_s=round(compile_s, 1),
                          xla_temp_mb=round(mem.temp_size_in_bytes / 2**20, 2) if mem else None,
                          xla_argument_mb=round(mem.argument_size_in_bytes / 2**20, 2) if mem else None,
                          maxrss_mb_after_compile=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                          times=[])
        print(name, "compiled in", runs[name]["compile_s"], "s", flush=True)
    for _ in range(reps):
        for name, r in runs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(r["fn"](r["state"]))
            r["times"].append(time.perf_counter() - t0)
    ref = settings[0]
    ref_s = float(np.median(runs[ref]["times"]))
    out = {}
    for name, r in runs.items():
        med = float(np.median(r["times"]))
        out[name] = dict({k: v for k, v in r.items() if k not in ("fn", "state")}, median_s=med,
                         env_steps_per_s=r["steps"] / med, cost_ratio_vs_first=med / ref_s,
                         times=[round(t, 4) for t in r["times"]])
    write(path, dict(env=env, at=at_l, env_steps=record["env_steps"], design=design, reference=ref, reps=reps,
                     settings=out, command=" ".join(sys.argv), versions=versions(), loadavg=loadavg(), uptime=uptime()))
    for name, d in out.items():
        print(f"{name}: compile {d['compile_s']} s, {d['median_s'] * 1e3:.0f} ms/iteration, "
              f"{d['env_steps_per_s']:.0f} env steps/s, x{d['cost_ratio_vs_first']:.2f}, XLA temp {d['xla_temp_mb']} MB",
              flush=True)


# ------------------------------------------------------------------------------------------- plot
def teacher_of(d: dict) -> str:
    """The teacher of an snr JSON (the first JSONs wrote the teacher overrides under ``teacher``)."""
    return d["teacher"] if isinstance(d.get("teacher"), str) else "meta_variance"


def stage_plot() -> None:
    from matplotlib.figure import Figure

    md = ["# Look-ahead and estimator study: tables", ""]
    sig = sorted((RESULTS / "sigma").glob("*.json")) if (RESULTS / "sigma").exists() else []
    if sig:
        data = [json.loads(p.read_text()) for p in sig]
        groups = sorted({(d["env"], d["at"]) for d in data})
        fig = Figure(figsize=(6.5 * len(groups), 4.5), layout="constrained")
        axes = fig.subplots(1, len(groups), squeeze=False)[0]
        for ax, (env, at) in zip(axes, groups):
            md += [f"## Mean meta-reward vs sigma: {env}, student at {at}", "",
                   "K = 1, E = 4, H = 200; mean ± 95 % CI over draws; R-hat(pi) and R-hat(pi') are means.", "",
                   "| design | " + " | ".join(f"σ={s}" for s in SIGMAS) + " | R̂(π) | draws |",
                   "| --- | " + " | ".join("---:" for _ in SIGMAS) + " | ---: | ---: |"]
            for d in [d for d in data if (d["env"], d["at"]) == (env, at)]:
                xs = [float(s) for s in d["by_sigma"]]
                ys = [v["mean"] for v in d["by_sigma"].values()]
                es = [v["ci95"] for v in d["by_sigma"].values()]
                color = f"C{list(DESIGNS).index(d['design']) % 10}"  # one color per design in every panel
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=d["design"], color=color)
                cells = " | ".join(f"{v['mean']:.1f} ± {v['ci95']:.1f}" for v in d["by_sigma"].values())
                rpi = np.mean([v["return_pi"] for v in d["by_sigma"].values()])
                md.append(f"| {d['design']} | {cells} | {rpi:.1f} | {d['draws']} |")
            md.append("")
            ax.axhline(0, color="k", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_xticks(SIGMAS, [str(x) for x in SIGMAS])
            ax.minorticks_off()
            ax.set_xlabel("teacher σ (normalized actions)")
            ax.set_ylabel("E[R̂(π') − R̂(π)] ± 95 % CI")
            ax.set_title(f"{env}, student after {at} env steps")
            ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
        fig.savefig(RESULTS / "sigma.png", dpi=100)
    snrs = sorted((RESULTS / "snr").glob("*.json")) if (RESULTS / "snr").exists() else []
    if snrs:
        data = [json.loads(p.read_text()) for p in snrs]
        md += ["## SNR of the log-σ meta-gradient at σ = 0.2", "",
               "SNR = ‖E ĝ‖² / E‖ĝ − E ĝ‖² (bias-corrected), 95 % bootstrap CI; sign = share of draws whose sign "
               "agrees with the mean; steps = env steps per estimate.", "",
               "SNR (all) = the same for the whole teacher gradient (log σ and, for `meta`, the network f).", "",
               "H = horizon of R̂; R̂(π) = mean over draws (an empty cell: not recorded, H = 200). An `at` with a "
               "suffix (`30k-s2`) is a student trained again later (another student than `30k`).", "",
               "| env | at | teacher | look-ahead | setting | H | SNR [95 % CI] | sign | steps | SNR per 1k steps | "
               "SNR (all) | mean ℛ̂ | R̂(π) | draws |",
               "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for d in data:
            lo, hi = d["snr_ci95"]
            teacher = teacher_of(d)
            snr_all = d.get("snr_all_params", d["snr"])
            rpi = f"{d['return_pi_mean']:.1f}" if "return_pi_mean" in d else ""
            md.append(f"| {d['env']} | {d['at']} | {teacher} | {d['design']} | {d['setting']} | {d.get('H', 200)} | "
                      f"{d['snr']:.4f} [{lo:.4f}, {hi:.4f}] | {d['sign_agreement']:.2f} | "
                      f"{d['env_steps_per_estimate']} | {d['snr_per_1k_steps']:.4f} | {snr_all:.4f} | "
                      f"{d['meta_reward_mean']:.1f} | {rpi} | {d['draws']} |")
        envs = sorted({d["env"] for d in data})
        width = max(max(sum(d["env"] == e for d in data) for e in envs) * 0.45, 6)
        fig = Figure(figsize=(width, 5 * len(envs)), layout="constrained")
        for ax, env in zip(fig.subplots(len(envs), 1, squeeze=False)[:, 0], envs):
            mine = [d for d in data if d["env"] == env]
            labels = [f"{d['at']} {teacher_of(d)} H{d.get('H', 200)}\n{d['design']} {d['setting']}"
                      f"{'' if d['draws'] == 256 else ' n' + str(d['draws'])}" for d in mine]
            vals = [d["snr_per_1k_steps"] for d in mine]
            errs = np.array([[d["snr"] - d["snr_ci95"][0], d["snr_ci95"][1] - d["snr"]] for d in mine]).T
            errs = errs * np.array([1000 / d["env_steps_per_estimate"] for d in mine])
            ax.bar(range(len(mine)), vals, yerr=errs, capsize=3)
            ax.set_xticks(range(len(mine)), labels, rotation=60, ha="right", fontsize="x-small")
            ax.set_ylabel("SNR per 1k env steps (95 % bootstrap CI)")
            ax.set_title(f"{env}: log-σ meta-gradient, σ = 0.2")
            ax.grid(alpha=0.3, axis="y")
        fig.savefig(RESULTS / "snr.png", dpi=100)
    (RESULTS / "table.md").write_text("\n".join(md) + "\n")
    print(f"wrote {RESULTS / 'table.md'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=("checkpoints", "sigma", "snr", "cost", "plot"))
    ap.add_argument("--env", default="pendulum")
    ap.add_argument("--at", default="30k", choices=tuple(AT))
    ap.add_argument("--draws", type=int, default=256)
    ap.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    ap.add_argument("--design", default="mixed0.25_u50", choices=list(DESIGNS), help="look-ahead of the snr stage")
    ap.add_argument("--settings", nargs="+", default=list(ESTIMATORS), choices=list(ESTIMATORS))
    ap.add_argument("--horizon", type=int, default=200, help="H of R-hat in the snr stage")
    ap.add_argument("--reps", type=int, default=10, help="cost: timed iterations per setting (interleaved)")
    ap.add_argument("--label", default="", help="checkpoints: label of a student trained again (see student_label)")
    ap.add_argument("--teacher", default="meta_variance", choices=("meta_variance", "meta"),
                    help="teacher of the snr stage (meta: also the SNR of the whole gradient)")
    a = ap.parse_args(argv)
    print(uptime(), file=sys.stderr)
    if a.stage == "checkpoints":
        make_checkpoints(a.env, a.label)
    elif a.stage == "sigma":
        stage_sigma(a.env, a.at, a.draws, a.designs)
    elif a.stage == "snr":
        stage_snr(a.env, a.at, a.draws, a.design, a.settings, a.teacher, horizon=a.horizon)
    elif a.stage == "cost":
        stage_cost(a.env, a.at, a.settings, a.reps, a.design)
    else:
        stage_plot()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
