"""Rendering a trained policy: MuJoCo offscreen video and Brax's HTML viewer.

Three steps, each usable on its own:

* :func:`rollout_states`: a jitted rollout of ONE training seed's policy on one
  env (the deterministic student mu(s), or with ``use_teacher`` the teacher's
  stochastic pi_e), returning joint positions ``qpos`` per frame;
* :func:`render_video`: MuJoCo's offscreen renderer (``mujoco.Renderer``) on
  the env's ``MjModel``, frames written as ``.mp4`` (imageio + the ffmpeg binary
  bundled in the ``imageio-ffmpeg`` wheel) or ``.gif`` (Pillow);
* :func:`mjxmeta.tools.viewer.render_html`: Brax's trajectory viewer, optionally
  with its JavaScript vendored for offline use (see :mod:`mjxmeta.tools.viewer`).

Headless OpenGL: :mod:`mjxmeta.tools.headless`.

The ``pendulum`` env is pure JAX; it is drawn with the small MJCF model
``mjxmeta/algo/envs/assets/pendulum.xml`` (one hinge, rod length 1 m) whose joint
angle equals Gymnasium's theta (0 = upright, counter-clockwise positive in the
``side`` camera).
"""

from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mjxmeta.tools import viewer
from mjxmeta.tools.headless import RenderError, ensure_headless_gl, gl_status, quiet_fork  # noqa: F401 (re-exports)

PENDULUM_XML = "pendulum.xml"
VIDEO_FORMATS = ("mp4", "gif")
# Playback caps: GIF frame delays are whole centiseconds and browsers slow down
# delays under 20 ms; MP4 players are happy up to 60 fps. Faster envs are
# subsampled to stay real-time.
MAX_FPS = {"gif": 50.0, "mp4": 60.0}


def pendulum_xml_path() -> Path:
    """Path of the packaged MJCF model used to draw the ``pendulum`` env."""
    return Path(str(resources.files("mjxmeta.algo.envs") / "assets" / PENDULUM_XML))


def mj_model(env_name: str):
    """The ``mujoco.MjModel`` drawn for ``env_name`` (pendulum: the packaged XML, fast)."""
    if env_name == "pendulum":
        import mujoco
        return mujoco.MjModel.from_xml_path(str(pendulum_xml_path()))
    return brax_system(env_name).mj_model


def brax_system(env_name: str):
    """The Brax ``System`` drawn for ``env_name`` (its ``mj_model`` is the MuJoCo model).

    For ``pendulum`` it is loaded from :func:`pendulum_xml_path` with
    ``brax.io.mjcf.load``; for the MJX envs it is the env's own ``sys``.
    """
    if env_name == "pendulum":
        from brax.io import mjcf
        return mjcf.load(str(pendulum_xml_path()))
    from mjxmeta.algo.envs import make_base
    return make_base(env_name).unwrapped.sys


def env_dt(env_name: str) -> float:
    """Seconds of simulated time per env step (``Pendulum.dt`` or Brax's ``env.dt``)."""
    from mjxmeta.algo.envs import make_base
    return float(make_base(env_name).unwrapped.dt)


# ---------------------------------------------------------------- rollout
@dataclass
class Rollout:
    """One env's trajectory, host NumPy arrays.

    Attributes:
      env: env name.
      qpos: (steps + 1, nq) joint positions of the drawn MuJoCo model, frame 0
        = the reset state. For ``pendulum``, nq = 1 and qpos = theta.
      qvel: (steps + 1, nv) joint velocities.
      reward: (steps,) reward of each step.
      done: (steps,) 1.0 where the episode ended at that step (the next frame
        is then a fresh start state: the env auto-resets).
      dt: seconds per step.
    """

    env: str
    qpos: np.ndarray
    qvel: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    dt: float


def _joint_state(env_name: str, pipeline_state) -> tuple[Any, Any]:
    """(qpos, qvel) of a batched pipeline state (B, ...)."""
    if env_name == "pendulum":  # pipeline_state (B, 2) = [theta, theta_dot]
        return pipeline_state[..., :1], pipeline_state[..., 1:]
    return pipeline_state.qpos, pipeline_state.qvel


# trainer -> {(steps, use_teacher): jitted rollout}, so repeated renders reuse the compile.
_ROLLOUTS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def rollout_key(trainer, seed: int):
    """Default start-state key of :func:`rollout_states` for training seed ``seed``."""
    import jax
    base = jax.random.fold_in(jax.random.PRNGKey(trainer.config.seed), 2**30 + 1)
    return jax.random.fold_in(base, seed)


def rollout_states(trainer, state, seed: int = 0, steps: int = 200, use_teacher: bool = False,
                   key=None) -> Rollout:
    """Rolls out ONE training seed's policy on one env for ``steps`` steps (jitted scan).

    Args:
      trainer: :class:`mjxmeta.algo.trainer.Trainer` of the run (its env, student and teacher).
      state: the batched ``TrainState`` (leading seed axis S, e.g. a restored
        checkpoint) or a single seed's state (no leading axis).
      seed: index in [0, S) of the training seed to render (ignored for an
        unbatched state).
      steps: env steps; the result has ``steps + 1`` frames.
      use_teacher: act with the teacher pi_e (stochastic, clipped to [-1, 1],
        with its per-env memory) instead of the deterministic student mu(s).
      key: raw PRNG key for the start state and teacher noise; default
        :func:`rollout_key`.

    The env is the run's batched auto-resetting env with one copy; an episode
    that ends (termination or time limit) restarts from a fresh random state
    and the rollout continues.
    """
    import jax
    import jax.numpy as jnp

    from mjxmeta.algo.acting import teacher_step
    from mjxmeta.algo.acting import env_step

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    # Only the policies are needed (not the replay buffer or the teacher envs).
    policy = (state.student, state.normalizer, state.teacher.params, state.hyper.teacher)
    if state.iteration.ndim == 1:  # batched over seeds
        n = int(state.iteration.shape[0])
        if not 0 <= seed < n:
            raise ValueError(f"seed must be in [0, {n}), got {seed}")
        policy = jax.tree.map(lambda x: x[seed], policy)
    key = rollout_key(trainer, seed) if key is None else key
    env, student, teacher, name = trainer.env, trainer.student, trainer.teacher, trainer.config.env

    def run(policy, key):
        st, norm, params, teacher_hyper = policy
        k_reset, k_act = jax.random.split(key)
        env_state = env.reset(k_reset[None])
        memory = teacher.fresh_memory(params, jax.random.fold_in(k_reset, 1), 1)

        def body(carry, k):
            env_state, memory = carry
            env_state = env.refill_if_short(env_state)  # every start fresh, however many episodes
            if use_teacher:
                nstate, memory, _, done, _, _ = teacher_step(env, student, teacher, st, norm, params,
                                                             env_state, memory, k, teacher_hyper=teacher_hyper)
            else:
                nstate, _, done = env_step(env, env_state, student.act(st, norm, env_state.obs))
            q, qd = _joint_state(name, nstate.pipeline_state)
            return (nstate, memory), (q[0], qd[0], nstate.reward[0], done[0])

        q0, qd0 = _joint_state(name, env_state.pipeline_state)
        _, (q, qd, r, d) = jax.lax.scan(body, (env_state, memory), jax.random.split(k_act, steps))
        return jnp.concatenate([q0, q]), jnp.concatenate([qd0, qd]), r, d

    cache = _ROLLOUTS.setdefault(trainer, {})
    fn = cache.setdefault((steps, bool(use_teacher)), jax.jit(run))
    q, qd, r, d = jax.device_get(fn(policy, key))
    return Rollout(env=name, qpos=np.asarray(q), qvel=np.asarray(qd), reward=np.asarray(r),
                   done=np.asarray(d), dt=float(env.unwrapped.dt))


# ----------------------------------------------------------------- frames
def _has_skybox(model) -> bool:
    import mujoco
    return bool(np.any(np.asarray(model.tex_type) == mujoco.mjtTexture.mjTEXTURE_SKYBOX))


def _background(height: int, width: int) -> np.ndarray:
    """Vertical blue-grey gradient (H, W, 3) uint8 for models without a skybox."""
    t = np.linspace(0.0, 1.0, height)[:, None]
    top, bottom = np.array([115, 150, 200]), np.array([25, 30, 40])
    col = (top * (1 - t) + bottom * t).astype(np.uint8)
    return np.broadcast_to(col[:, None, :], (height, width, 3))


# Side-on by default; reacher moves in the horizontal plane, so look down on it.
CAMERA_ELEVATION = {"reacher": -60.0}


def default_camera(model, data, elevation: float = -12.0):
    """Camera for ``model``: its ``side`` camera if it has one; else, when the root
    body (body 1) can translate (free or slide joint: cart, hopper, cheetah), a
    side-on tracking camera on it, at a distance that frames the moving bodies'
    geoms; else (a fixed base, e.g. reacher) a fixed camera on the whole model.
    """
    import mujoco
    if model.ncam and "side" in [model.camera(i).name for i in range(model.ncam)]:
        return "side"
    cam = mujoco.MjvCamera()
    cam.elevation = elevation
    cam.azimuth = 90.0
    root_joints = np.asarray(model.jnt_type)[np.asarray(model.jnt_bodyid) == 1] if model.nbody > 1 else []
    moving = {int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_SLIDE)}
    if any(int(j) in moving for j in root_joints):
        cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        cam.trackbodyid = 1
        centre = data.subtree_com[1]
        mine = np.asarray(model.geom_bodyid) > 0
        reach = np.linalg.norm(data.geom_xpos[mine] - centre, axis=1) + model.geom_rbound[mine]
        cam.distance = max(3.0 * float(np.max(reach)), 1.0)
    else:
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        centre = np.asarray(model.stat.center)
        finite = np.asarray(model.geom_type) != mujoco.mjtGeom.mjGEOM_PLANE
        reach = np.linalg.norm(data.geom_xpos[finite] - centre, axis=1) + model.geom_rbound[finite]
        cam.distance = max(2.0 * float(np.max(reach)) if finite.any() else 1.5 * model.stat.extent, 1.0)
    cam.lookat[:] = centre
    return cam


def render_frames(env_name: str, qpos_sequence: np.ndarray, width: int = 320, height: int = 240,
                  model=None, camera=None, shadows: bool = False) -> np.ndarray:
    """Draws every row of ``qpos_sequence`` with MuJoCo's offscreen renderer.

    For each frame a ``mujoco.MjData`` gets ``qpos`` and ``mj_forward`` places
    the bodies. Models without a skybox (e.g. Brax's inverted_pendulum) get a
    gradient background instead of black (from a segmentation pass).

    Args:
      model: the ``MjModel`` (default :func:`mj_model` of ``env_name``).
      camera: camera name, id or ``MjvCamera``; default :func:`default_camera`.
      shadows: draw shadows and reflections. Off by default: with software
        OpenGL (llvmpipe/OSMesa on a CPU) they cost ~8x per frame
        (pendulum 320x240: ~0.24 s vs ~0.03 s).

    Returns:
      (T, height, width, 3) uint8 RGB frames.
    """
    import mujoco
    ensure_headless_gl()
    model = mj_model(env_name) if model is None else model
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
    qpos_sequence = np.asarray(qpos_sequence, np.float64).reshape(len(qpos_sequence), -1)
    if qpos_sequence.shape[1] != model.nq:
        raise ValueError(f"qpos has {qpos_sequence.shape[1]} columns but the {env_name} model has nq={model.nq}")
    data = mujoco.MjData(model)
    data.qpos[:] = qpos_sequence[0]
    mujoco.mj_forward(model, data)
    if camera is None:
        camera = default_camera(model, data, CAMERA_ELEVATION.get(env_name, -12.0))
    fill = None if _has_skybox(model) else _background(height, width)
    frames = np.empty((len(qpos_sequence), height, width, 3), np.uint8)
    try:
        renderer = mujoco.Renderer(model, height, width)
    except Exception as e:
        raise RenderError(f"mujoco.Renderer failed (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {e}") from e
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = shadows
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = shadows
    try:
        for i, q in enumerate(qpos_sequence):
            data.qpos[:] = q
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera)
            frames[i] = renderer.render()
            if fill is not None:
                renderer.enable_segmentation_rendering()
                seg = renderer.render()
                renderer.disable_segmentation_rendering()
                empty = seg[..., 0] < 0
                frames[i][empty] = fill[empty]
    finally:
        renderer.close()
    return frames


def write_video(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """Writes (T, H, W, 3) uint8 frames to ``path`` (.mp4 via imageio-ffmpeg, .gif via Pillow)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in VIDEO_FORMATS:
        raise ValueError(f"video path must end in .mp4 or .gif, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "gif":
        from PIL import Image
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                       duration=max(20, int(round(1000.0 / fps))), optimize=False)
        return path
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        raise ValueError(f"mp4 (H.264, yuv420p) needs an even width and height, got {w}x{h}")
    import imageio.v2 as imageio
    with quiet_fork(), imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=7,
                                           pixelformat="yuv420p", macro_block_size=2) as writer:
        for f in frames:
            writer.append_data(f)
    return path


def playback(dt: float, fmt: str, fps: float | None = None) -> tuple[int, float]:
    """(frame stride, fps) for real-time playback of steps of ``dt`` seconds.

    ``fps`` given: stride 1 at that rate. Otherwise 1/dt, subsampled by the
    smallest stride that keeps it under :data:`MAX_FPS` of the format.
    """
    if fps is not None:
        return 1, float(fps)
    natural = 1.0 / dt
    stride = max(1, math.ceil(natural / MAX_FPS[fmt] - 1e-9))
    return stride, natural / stride


def render_video(env_name: str, qpos_sequence: np.ndarray, path: str | Path, width: int = 320,
                 height: int = 240, fps: float | None = None, dt: float | None = None, model=None,
                 shadows: bool = False) -> np.ndarray:
    """Renders ``qpos_sequence`` of ``env_name`` to ``path`` (.mp4 or .gif).

    Args:
      fps: playback rate; default real time (1/dt, subsampled past
        :data:`MAX_FPS`).
      dt: seconds per row of ``qpos_sequence``; default the env's step.
      model, shadows: as in :func:`render_frames`.

    Returns:
      the frames written, (T', height, width, 3) uint8.
    """
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in VIDEO_FORMATS:
        raise ValueError(f"video path must end in .mp4 or .gif, got {Path(path).name!r}")
    stride, rate = playback(env_dt(env_name) if dt is None else dt, fmt, fps)
    frames = render_frames(env_name, np.asarray(qpos_sequence)[::stride], width, height, model=model,
                           shadows=shadows)
    write_video(frames, path, rate)
    return frames


# ------------------------------------------------------------ whole command
def split_out(out: str | Path) -> tuple[Path, str | None]:
    """``--out FILE`` -> (stem, format implied by its suffix or None).

    ``run.mp4`` -> (``run``, ``mp4``); ``run.gif`` -> (``run``, ``gif``);
    ``run.html`` or ``run`` -> (``run``, None).
    """
    out = Path(out)
    suffix = out.suffix.lower().lstrip(".")
    if suffix in VIDEO_FORMATS:
        return out.with_suffix(""), suffix
    if suffix == "html":
        return out.with_suffix(""), None
    return out, None


def write_outputs(trainer, rollout: Rollout, stem: str | Path, fmt: str = "mp4", width: int = 320,
                  height: int = 240, html: bool = False, offline: bool = False) -> dict[str, Path]:
    """Writes ``stem.<fmt>`` and, with ``html``/``offline``, ``stem.html`` (+ ``stem_files/``).

    Returns:
      {"video": path, "html": path (if written)}.
    """
    stem = Path(stem)
    name = trainer.config.env
    sys = None if name == "pendulum" else trainer.env.unwrapped.sys
    model = mj_model(name) if sys is None else sys.mj_model
    out = {"video": stem.with_name(stem.name + "." + fmt)}
    render_video(name, rollout.qpos, out["video"], width, height, dt=rollout.dt, model=model)
    if html or offline:
        sys = brax_system(name) if sys is None else sys  # pendulum: brax.io.mjcf.load of the XML (~5 s)
        out["html"] = viewer.render_html(sys, viewer.html_states(sys.mj_model, rollout.qpos),
                                         stem.with_name(stem.name + ".html"), offline=offline, dt=rollout.dt)
    return out
