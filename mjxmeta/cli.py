"""Command line: ``mjxmeta train | eval | report | render | bench``.

``mjxmeta train`` validates the whole config before anything compiles, writes
``RUN/config.json``, runs the fused trainer chunk by chunk with a progress bar,
appends one JSON object per log point per seed to ``RUN/metrics.jsonl``, saves
Orbax checkpoints under ``RUN/checkpoints`` and ends with a table of final
evaluation returns per seed and mean ± sd. ``--resume RUN`` continues a run.

Several processes (hosts): ``--distributed`` (a launcher jax detects: SLURM,
Open MPI, TPU pods) or ``--coordinator HOST:PORT --num-processes P
--process-id I``; see :mod:`mjxmeta.runs.distributed` and the README's "Seeds
across hosts".

``mjxmeta eval RUN`` restores a checkpoint and prints per-seed deterministic
returns.

``mjxmeta report RUN [RUN ...] --out DIR`` writes ``DIR/report.md`` (per-env tables:
mean ± sd, IQM and probability of improvement over ``gaussian`` with bootstrap
CIs) and learning-curve PNGs; see :mod:`mjxmeta.tools.report`.

``mjxmeta render RUN --out FILE`` rolls out one seed's student (``--teacher``:
the teacher) and writes ``FILE.mp4``/``.gif`` (MuJoCo offscreen, headless EGL)
and with ``--html``/``--offline`` Brax's viewer ``FILE.html``; see :mod:`mjxmeta.tools.render`.

Exit codes: 0 done, 2 invalid input (message names the field) or run
directory refused (holds a run, or locked by another train process), 3
non-finite values (message names seed, iteration and quantity), 4 resume
refused (config differs or does not parse), 5 an OS error writing the run
(disk full, unwritable directory; earlier checkpoints stay intact), 6 no
checkpoint passes verification, 129/130/143 stopped by SIGHUP/SIGINT/SIGTERM
after a final checkpoint. The README's "Reliability" section lists the guarantees.

Compiled programs are kept in JAX's persistent compilation cache,
``~/.cache/mjxmeta/jax`` (``$XDG_CACHE_HOME/mjxmeta/jax``), so a second run of
a config skips the compile, and the traced programs beside them, so it skips
tracing too (:mod:`mjxmeta.runs.program_cache`); ``JAX_COMPILATION_CACHE_DIR``
moves both and ``MJXMETA_COMPILATION_CACHE=0`` turns both off
(:mod:`mjxmeta.runs.compile_cache`).
"""

from __future__ import annotations

import argparse
import logging
import builtins
import contextlib
import dataclasses
import importlib.abc
import io
import re
import sys
import typing
import warnings
from pathlib import Path
from typing import Any, Sequence

from mjxmeta.runs import compile_cache, distributed
from mjxmeta.algo.config import (BRAX_STUDENTS, BRAX_TEACHER, PRESET_NAMES, PRESETS, Config, ConfigError, MetaConfig,
                            StudentConfig, TeacherConfig, check_explicit_fields, executed_iterations, field_docs, from_dict, replace_field,
                            student_preset, to_dict, validate)
from mjxmeta.api import train
from mjxmeta.runs.loop import (CONFIG, NonFiniteError, ResumeError, evaluate_checkpoint, format_table, load_checkpoint,
                               load_config, prepare_run_dir)

# Exit codes (README, "Reliability"); a signal stop exits with 128 + the signal (129 SIGHUP, 130 SIGINT, 143 SIGTERM).
EXIT_INVALID, EXIT_NONFINITE, EXIT_RESUME, EXIT_OS_ERROR, EXIT_NO_VERIFIED = 2, 3, 4, 5, 6

__all__ = ["FLAGS", "build_parser", "config_from_args", "main", "prepare_run_dir", "format_table", "train"]


# ------------------------------------------------- known start-up noise
# Printed on every run, saying nothing about it: mujoco.mjx.warp prints these two lines to stdout when the optional
# MuJoCo Warp is not installed (mjxmeta does not use it), and Brax warns this for every MJX env it builds. Exactly
# these are dropped; every other line and warning passes.
_WARP_MODULE = "mujoco.mjx.warp"
_WARP_LINES = ("Failed to import warp: ", "Failed to import mujoco_warp: ")
_BRAX_NOTICE = r"Brax System, piplines and environments are not actively being maintained"


class _QuietWarpImport(importlib.abc.MetaPathFinder):
    """Imports :data:`_WARP_MODULE` with its stdout filtered: the :data:`_WARP_LINES` are dropped."""

    def find_spec(self, name, path, target=None):
        if name != _WARP_MODULE:
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else getattr(finder, "find_spec", lambda *a: None)(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                break
        else:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    run(module)
            finally:
                sys.stdout.write("".join(line for line in out.getvalue().splitlines(keepends=True)
                                         if not line.startswith(_WARP_LINES)))

        spec.loader.exec_module = exec_module
        return spec


def quiet_known_noise() -> None:
    """Drops the known start-up messages above (idempotent); called first by :func:`main`."""
    warnings.filterwarnings("ignore", message=_BRAX_NOTICE, category=UserWarning)
    # Orbax's restore of a damaged checkpoint leaves failed asyncio tasks nobody awaits; the fallback already
    # reported the failure in one line, so asyncio's "exception was never retrieved" dumps are noise.
    logging.getLogger("asyncio").addFilter(lambda r: "exception was never retrieved" not in r.getMessage())
    if not any(isinstance(f, _QuietWarpImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietWarpImport())


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64, got {text!r}") from e


def _sweep_item(text: str) -> tuple[str, tuple[float, ...]]:
    """``teacher.lr=1e-4,1e-3`` -> ("teacher.lr", (1e-4, 1e-3)); :func:`mjxmeta.algo.config.validate` checks the rest."""
    name, sep, values = text.partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        return name.strip(), tuple(float(v) for v in values.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected FIELD=V1,V2,... like teacher.lr=1e-4,1e-3, got {text!r}") from e


# ------------------------------------------------------ flags from the config
# Sub-config field -> flag: student and meta fields keep their names (--hidden,
# --candidates), teacher fields are prefixed (--teacher-hidden); a field's
# metadata["flag"] overrides the generated name.
_SUBCONFIGS = {"student": (StudentConfig, ""), "teacher": (TeacherConfig, "teacher-"), "meta": (MetaConfig, "")}
_PARSERS = {int: int, float: float, str: str, tuple[int, ...]: _widths}
_REPEATED = {tuple[tuple[str, tuple[float, ...]], ...]: _sweep_item}  # one item per use of the flag


@dataclasses.dataclass(frozen=True)
class Flag:
    """One ``mjxmeta train`` flag: its dotted config ``field``, ``option`` (e.g. ``--batch-size``), the
    field's annotation ``type``, ``default`` and docstring ``help``, and ``choices`` (shown in the help;
    ``validate`` enforces them)."""

    field: str
    option: str
    type: Any
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


def _flags() -> dict[str, Flag]:
    """{dotted field: Flag} for every leaf field of :class:`Config`, in declaration order."""
    out: dict[str, Flag] = {}
    classes = [(Config, "", "", Config())] + [(cls, name + ".", prefix, getattr(Config(), name))
                                              for name, (cls, prefix) in _SUBCONFIGS.items()]
    for cls, dotted, prefix, defaults in classes:
        hints, docs = typing.get_type_hints(cls), field_docs(cls)
        for f in dataclasses.fields(cls):
            if cls is not Config or f.name not in _SUBCONFIGS:
                option = "--" + f.metadata.get("flag", prefix + f.name.replace("_", "-"))
                out[dotted + f.name] = Flag(dotted + f.name, option, hints[f.name], getattr(defaults, f.name),
                                            docs.get(f.name, ""), f.metadata.get("choices"))
    options = [f.option for f in out.values()]
    if len(set(options)) < len(options):
        raise RuntimeError(f"two config fields generate the same flag: {sorted(options)}")
    return out


FLAGS: dict[str, Flag] = _flags()


def _plain(text: str) -> str:
    """Docstring markup -> terminal text: ``:data:`X``` -> X, ````x```` -> x."""
    return re.sub(r"``([^`]+)``", r"\1", re.sub(r":\w+:`~?([^`]+)`", r"\1", text))


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field; defaults are SUPPRESSed, so the namespace holds only the flags given."""
    groups = {"": parser.add_argument_group("run (Config)")}
    for name, (cls, _) in _SUBCONFIGS.items():
        groups[name] = parser.add_argument_group(f"{name} ({cls.__name__})", (cls.__doc__ or "").split("\n")[0])
    for flag in FLAGS.values():
        group = groups[flag.field.split(".")[0] if "." in flag.field else ""]
        preset = flag.field.startswith("student.") and flag.field.split(".")[1] in PRESETS["baselines2017"]
        shown = (",".join(map(str, flag.default)) or "none") if isinstance(flag.default, tuple) else flag.default
        text = f"{_plain(flag.help)} (default: {shown}{', or the --preset' if preset else ''})".replace("%", "%%")
        kw: dict[str, Any] = dict(dest=flag.field, default=argparse.SUPPRESS, help=text)
        if flag.type is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif flag.type in _REPEATED:
            kw.update(action="append", type=_REPEATED[flag.type], metavar="FIELD=V1,V2,...")
        else:
            kw["type"] = _PARSERS[flag.type]
            kw["metavar"] = "{" + ",".join(flag.choices) + "}" if flag.choices else flag.field.split(".")[-1].upper()
        group.add_argument(flag.option, **kw)


def _add_distributed_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of a run spread over several processes (hosts); README, "Seeds across hosts"."""
    g = parser.add_argument_group(
        "several processes (command line only; not config fields)",
        "Start the same command in every process; the seeds are split over all processes' devices (--seeds must "
        "be a multiple of the global device count). Only process 0 writes config.json, metrics.jsonl and "
        "TensorBoard; all write their shards of the checkpoints (--run-dir on a shared file system).")
    g.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="address of process 0 for jax.distributed.initialize (default: not distributed, unless "
                        "--distributed)")
    g.add_argument("--num-processes", metavar="P", type=int, default=None, help="number of processes")
    g.add_argument("--process-id", metavar="I", type=int, default=None, help="this process's index in [0, P)")
    g.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() and let it detect what the three flags above leave "
                        "unset from the launcher: " + "; ".join(distributed.AUTO_DETECTED))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mjxmeta", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a student with a teacher (Algorithm 1)",
                       description="Every config field is a flag; invalid values exit with code 2 before "
                                   "anything compiles.")
    t.add_argument("--preset", default=argparse.SUPPRESS, choices=PRESET_NAMES,
                   help="student hyperparameter preset (default: baselines2017); the student flags override it")
    run = t.add_argument_group("run directory (command line only; not config fields)")
    run.add_argument("--run-dir", default=None,
                     help="where the run is written (default: checkpoints/<env>-<teacher>-<time>)")
    run.add_argument("--resume", metavar="RUN", default=None,
                     help="continue the run in RUN; flags not given keep RUN's values, only --total-steps may differ")
    run.add_argument("--overwrite", action="store_true",
                     help="if --run-dir holds a run, move it aside to RUN.old-<time> (nothing is deleted) and start "
                          "afresh (default: off: such a directory is refused with exit code 2)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown)")
    _add_distributed_flags(t)
    _add_config_flags(t)
    sub.add_parser("bench", add_help=False, help="throughput benchmark; see `mjxmeta bench --help` (mjxmeta.tools.bench)")
    e = sub.add_parser("eval", help="restore a checkpoint and print per-seed deterministic returns")
    e.add_argument("run", help="run directory")
    e.add_argument("--checkpoint", type=int, default=None, help="iteration of the checkpoint; default latest")
    e.add_argument("--episodes", type=int, default=10, help="evaluation episodes per seed")
    r = sub.add_parser("report", help="tables (mean ± sd, IQM, P(improvement) over gaussian) and PNG curves of runs",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("runs", nargs="+", metavar="RUN", help="run directories (config.json + metrics.jsonl)")
    r.add_argument("--out", required=True, help="output directory for report.md and the PNGs")
    r.add_argument("--reps", type=int, default=2000, help="bootstrap resamples per confidence interval")
    r.add_argument("--last", type=int, default=1,
                   help="final score = mean eval return of a seed's last LAST evaluated log points")
    r.add_argument("--seed", type=int, default=0, help="bootstrap RNG seed")
    v = sub.add_parser("render", help="roll out a trained policy; write a video (and Brax's HTML viewer)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    v.add_argument("run", help="run directory")
    v.add_argument("--out", required=True,
                   help="output stem: writes OUT.mp4 or OUT.gif (and OUT.html); a .mp4/.gif/.html suffix is stripped")
    v.add_argument("--checkpoint", type=int, default=None, help="iteration of the checkpoint; default latest")
    v.add_argument("--seed", type=int, default=0,
                   help="index of the training seed to render (in a sweep: of the run, v * seeds + s)")
    v.add_argument("--steps", type=int, default=200, help="env steps to roll out (auto-resets continue)")
    v.add_argument("--teacher", action="store_true", help="act with the teacher pi_e instead of the student mu")
    v.add_argument("--format", choices=("mp4", "gif"), default=None, help="video format; default OUT's suffix, else mp4")
    v.add_argument("--html", action="store_true", help="also write Brax's trajectory viewer OUT.html")
    v.add_argument("--offline", action="store_true",
                   help="implies --html; the viewer's JavaScript goes to OUT_files/ (npm packages cached once)")
    v.add_argument("--width", type=int, default=320, help="video width in pixels")
    v.add_argument("--height", type=int, default=240, help="video height in pixels")
    return p


def config_from_args(a: argparse.Namespace, base: Config | None = None) -> Config:
    """Builds and validates the Config from parsed ``train`` arguments.

    Without ``base``: the default :class:`Config` (its student from ``--preset``
    if given) with every flag given applied. With ``base`` (``--resume``):
    ``base`` with only the flags given on the command line applied (a flag
    given with its default value counts).

    Raises:
      ConfigError: naming the invalid field.
    """
    preset = getattr(a, "preset", None)
    config = Config() if base is None else base
    if preset is not None:
        config = dataclasses.replace(config, student=student_preset(preset, name=config.student.name))
    given = [dest for dest in vars(a) if dest in FLAGS]
    for dest in given:
        value = getattr(a, dest)
        config = replace_field(config, dest, tuple(value) if isinstance(value, list) else value)
    if config.student.name in BRAX_STUDENTS and "teacher.name" not in given:  # sac/ppo take no teacher
        config = replace_field(config, "teacher.name", BRAX_TEACHER)
    config = validate(config)
    check_explicit_fields(config, set(given))
    return config


def _train(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    """``mjxmeta train``: the run directory is claimed (:mod:`mjxmeta.runs.layout`: locked; a new run refuses a
    directory that holds one) and the config resolved before anything compiles; the lock is held to the end."""
    from mjxmeta.runs import layout as rundir
    from mjxmeta.runs.resume import check_budget, resume_config

    try:  # before anything else touches JAX
        distributed.initialize(a.coordinator, a.num_processes, a.process_id, auto=a.distributed)
    except ConfigError as e:
        parser.exit(EXIT_INVALID, f"mjxmeta: error: {e}\n")
    lock = None

    def claim() -> dict[str, Any]:  # process 0 alone claims the run directory and resolves the config
        nonlocal lock
        if a.resume is not None:
            run_dir = Path(a.resume)
            if a.overwrite:
                raise ConfigError("overwrite", True, "omitted with --resume (it would move the run aside)")
            if not (run_dir / CONFIG).exists():
                raise ConfigError("resume", a.resume, "a run directory containing config.json")
            if a.run_dir is not None and Path(a.run_dir).absolute() != run_dir.absolute():
                raise ConfigError("run_dir", a.run_dir, f"omitted or equal to --resume {a.resume}")
            lock = rundir.RunLock(run_dir).acquire()
            config = config_from_args(a, base=resume_config(run_dir))
            check_budget(run_dir, config)  # --total-steps below what the run has done: refused, nothing written
            distributed.check_seeds(config)
        else:
            config = config_from_args(a)
            distributed.check_seeds(config)
            lock = rundir.claim_fresh(a.run_dir, config, overwrite=a.overwrite)
            run_dir = lock.run_dir
        return {"run_dir": str(run_dir), "config": to_dict(config)}

    try:
        claimed = distributed.on_main(claim)
        run_dir, config = Path(claimed["run_dir"]), from_dict(claimed["config"], checked=True)
    except (ConfigError, rundir.RunDirError, ResumeError, distributed.PeerFailed, OSError) as e:
        if lock is not None:
            lock.release()
        parser.exit(exit_code(e), (_os_error_line(e, Path(a.resume or a.run_dir or ".")) if isinstance(e, OSError)
                                   else f"mjxmeta: error: {e}") + "\n")
    try:
        return _run_train(config, run_dir, a.resume is not None, not a.no_progress)
    finally:
        if lock is not None:  # only process 0 holds it
            lock.release()  # a directory this call created and left empty (e.g. too little free space) is removed


def exit_code(e: BaseException) -> int:
    """The exit code of a failed ``train`` (module docstring); for :class:`mjxmeta.runs.distributed.PeerFailed`
    the code of process 0's exception."""
    kind = e.kind if isinstance(e, distributed.PeerFailed) else type(e).__name__
    codes = {"ResumeError": EXIT_RESUME, "NonFiniteError": EXIT_NONFINITE, "CheckpointCorrupt": EXIT_NO_VERIFIED,
             "CheckpointWriteError": EXIT_OS_ERROR}
    os_error = isinstance(e, OSError) or (isinstance(getattr(builtins, kind, None), type)
                                          and issubclass(getattr(builtins, kind), OSError))
    return codes.get(kind, EXIT_OS_ERROR if os_error else EXIT_INVALID)


def _os_error_line(e: OSError, fallback: Path) -> str:
    """The one stderr line of an OS error writing the run (exit 5)."""
    return f"mjxmeta: error: cannot write {e.filename or fallback}: {e.strerror or e}"


def _run_train(config: Config, run_dir: Path, resume: bool, progress: bool) -> int:
    """``train`` with every failure mapped to one line on stderr and its exit code.

    The signal handlers (:class:`mjxmeta.runs.preemption.StopSignals`, which
    :func:`mjxmeta.runs.loop.train` enters again) are installed before the start
    banner, so a signal sent once the banner is out stops the run cleanly.
    """
    from mjxmeta.runs.checkpoint import CheckpointCorrupt, CheckpointWriteError
    from mjxmeta.runs.preemption import StopSignals, Stopped
    from mjxmeta.runs.layout import RunDirError

    its = executed_iterations(config)
    main = distributed.is_main()
    brax = config.student.name in BRAX_STUDENTS  # Brax's trainers take no stop request
    try:
        with contextlib.nullcontext() if brax else StopSignals(run_dir):
            if main and brax:
                print(f"run dir: {run_dir}  (Brax {config.student.name}: {config.total_steps} env steps per seed, "
                      f"{config.seeds} seeds one after another)", file=sys.stderr)
            elif main:
                print(f"run dir: {run_dir}  ({its} iterations = {its // config.log_every} chunks of "
                      f"{config.log_every}, x {config.steps_per_iteration} env steps = "
                      f"{its * config.steps_per_iteration} env steps per seed, {config.seeds} seeds"
                      + (f" x {config.num_points} sweep combinations" if config.sweep else "")
                      + f"{distributed.describe()})", file=sys.stderr, flush=True)
            final = train(config, run_dir, resume=resume, progress=progress).final_returns
    except Stopped as e:
        print(e.line(), file=sys.stderr)
        return e.exit_code
    except (ResumeError, NonFiniteError, ConfigError, RunDirError, CheckpointCorrupt, distributed.PeerFailed) as e:
        print(f"mjxmeta: error: {e}", file=sys.stderr)
        return exit_code(e)
    except CheckpointWriteError as e:  # its strerror names the checkpoint, the path and the OS error
        print(f"mjxmeta: error: {e.strerror}", file=sys.stderr)
        return EXIT_OS_ERROR
    except OSError as e:  # disk full, directory removed or read-only while writing metrics, config, ...
        print(_os_error_line(e, run_dir), file=sys.stderr)
        return EXIT_OS_ERROR
    if main:
        print(format_table(config, final))
    return 0


def _eval(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    run_dir = Path(a.run)
    if not (run_dir / CONFIG).exists():
        parser.exit(2, f"mjxmeta: error: {a.run!r} is not a run directory (no config.json)\n")
    if a.episodes < 1:
        parser.exit(2, f"mjxmeta: error: --episodes {a.episodes} is invalid: accepted an integer >= 1\n")
    from mjxmeta.runs.checkpoint import CheckpointCorrupt

    try:
        config = load_config(run_dir)
        step, returns = evaluate_checkpoint(run_dir, a.checkpoint, a.episodes)
    except (FileNotFoundError, ConfigError) as e:
        print(f"mjxmeta: error: {e}", file=sys.stderr)
        return EXIT_INVALID
    except CheckpointCorrupt as e:
        print(f"mjxmeta: error: {e}", file=sys.stderr)
        return EXIT_NO_VERIFIED
    print(f"checkpoint at iteration {step}, {a.episodes} episodes per seed")
    print(format_table(config, [float(r.mean()) for r in returns]))
    return 0


def _report(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    from mjxmeta.tools.report import ReportError, write_report

    for name, value in (("--reps", a.reps), ("--last", a.last)):
        if value < 1:
            parser.exit(2, f"mjxmeta: error: argument {name}: {value} is invalid: accepted an integer >= 1\n")
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        parser.exit(EXIT_INVALID, f"mjxmeta: error: argument --out: {a.out!r} is a file; accepted a directory\n")
    try:
        path = write_report(a.runs, a.out, reps=a.reps, last=a.last, seed=a.seed)
    except ReportError as e:
        parser.exit(EXIT_INVALID, f"mjxmeta: error: argument RUN: {e}\n")
    except OSError as e:  # --out under a file, unwritable, disk full
        parser.exit(EXIT_INVALID, f"mjxmeta: error: argument --out: cannot write {e.filename or a.out}: "
                                  f"{e.strerror or e}\n")
    print(path.read_text().split("## Learning curves")[0].rstrip())
    print(f"\nwrote {path} and PNGs in {path.parent}", file=sys.stderr)
    return 0


def _render(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    """``mjxmeta render``: every input is checked before anything compiles."""
    from mjxmeta.tools import render, viewer
    from mjxmeta.runs.checkpoint import CheckpointCorrupt

    def bad(flag: str, value: Any, accepted: str):
        parser.exit(2, f"mjxmeta: error: argument {flag}: {value!r} is invalid: accepted {accepted}\n")

    run_dir = Path(a.run)
    if not (run_dir / CONFIG).exists():
        bad("RUN", a.run, "a run directory containing config.json")
    try:
        config = load_config(run_dir)
    except ConfigError as e:
        parser.exit(EXIT_INVALID, f"mjxmeta: error: {e}\n")
    stem, implied = render.split_out(a.out)
    if a.format and implied and a.format != implied:
        bad("--format", a.format, f"omitted or equal to the suffix of --out {a.out!r}")
    fmt = a.format or implied or "mp4"
    if not 0 <= a.seed < config.num_runs:
        bad("--seed", a.seed, f"an integer in [0, {config.num_runs}) (the run has {config.seeds} seeds"
                              + (f" x {config.num_points} sweep combinations: run v * {config.seeds} + s"
                                 if config.sweep else "") + ")")
    if not 1 <= a.steps <= 100_000:
        bad("--steps", a.steps, "an integer in [1, 100000]")
    for flag, px in (("--width", a.width), ("--height", a.height)):
        if not 16 <= px <= 4096 or (fmt == "mp4" and px % 2):
            bad(flag, px, "an integer in [16, 4096]" + (", even for mp4 (H.264 yuv420p)" if fmt == "mp4" else ""))
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        bad("--out", a.out, f"a path in a writable directory ({e.strerror or e})")
    ok, why = render.gl_status()
    if not ok:
        print(f"mjxmeta: error: {why}", file=sys.stderr)
        return 2
    try:
        if a.offline:
            viewer.check_viewer_folder(viewer.viewer_folder(stem.with_name(stem.name + ".html")))
            viewer.viewer_packages()  # fetch/verify the viewer's JavaScript before compiling
        trainer, state, record = load_checkpoint(run_dir, a.checkpoint)
    except (FileNotFoundError, ConfigError, render.RenderError, CheckpointCorrupt) as e:  # ConfigError: sac/ppo
        print(f"mjxmeta: error: {e}", file=sys.stderr)
        return EXIT_NO_VERIFIED if isinstance(e, CheckpointCorrupt) else EXIT_INVALID
    rollout = render.rollout_states(trainer, state, a.seed, a.steps, use_teacher=a.teacher)
    paths = render.write_outputs(trainer, rollout, stem, fmt, a.width, a.height, html=a.html, offline=a.offline)
    who = "teacher" if a.teacher else "student"
    print(f"{config.env}: {who} of seed {a.seed} at iteration {record['iteration']}, {a.steps} steps, "
          f"return {float(rollout.reward.sum()):.2f}, {int(rollout.done.sum())} episode end(s)")
    for path in paths.values():
        print(f"wrote {path}")
    if a.offline:
        print(f"view: python -m http.server -d {paths['html'].parent} and open "
              f"http://localhost:8000/{paths['html'].name}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mjxmeta`` console script; returns the exit code."""
    quiet_known_noise()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["bench"]:  # own parser: mjxmeta/tools/bench.py
        from mjxmeta.tools.bench import main as bench_main
        return bench_main(args[1:])
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command != "report":  # the commands that compile; before their first compile
        compile_cache.enable()
    if a.command == "train":
        return _train(parser, a)
    if a.command == "report":
        return _report(parser, a)
    if a.command == "render":
        return _render(parser, a)
    return _eval(parser, a)


if __name__ == "__main__":
    sys.exit(main())
