"""Rendering without a display: MuJoCo's headless OpenGL backend, the rendering error, quiet subprocesses.

Unless ``MUJOCO_GL`` is set, :func:`ensure_headless_gl` selects ``egl`` (Debian
``libegl1``; ``MUJOCO_GL=osmesa`` with ``libosmesa6`` also works), even when
``mujoco`` was imported earlier and picked GLFW. Used by the video
(:mod:`mjxmeta.tools.render`) and the HTML viewer (:mod:`mjxmeta.tools.viewer`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings


class RenderError(RuntimeError):
    """Rendering cannot proceed (no headless OpenGL, npm missing, unknown viewer URL...)."""


# ----------------------------------------------------------------- models


@contextlib.contextmanager
def quiet_fork():
    """Silences JAX's "os.fork() was called" warning: subprocess forks and execs at once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        yield


def ensure_headless_gl() -> str:
    """Makes ``mujoco.Renderer`` use a headless OpenGL backend; returns its name.

    ``MUJOCO_GL`` unset -> ``egl``. ``egl``/``osmesa`` are enforced even if
    ``mujoco`` was imported before and chose GLFW (its context class is
    swapped). Any other explicit value (e.g. ``glfw`` on a desktop) is left alone.
    """
    backend = os.environ.get("MUJOCO_GL", "").strip().lower()
    if not backend:
        backend = os.environ["MUJOCO_GL"] = "egl"
    if backend not in ("egl", "osmesa"):
        return backend
    os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    try:
        from mujoco.rendering.classic import gl_context
    except ImportError:  # older layout
        from mujoco import gl_context  # type: ignore[no-redef]
    current = getattr(gl_context, "GLContext", None)
    if current is None or getattr(current, "__module__", "") != f"mujoco.{backend}":
        try:
            gl_context.GLContext = importlib.import_module(f"mujoco.{backend}").GLContext
        except Exception as e:  # ImportError, OSError from ctypes, PyOpenGL platform clash
            raise RenderError(f"cannot use headless OpenGL backend MUJOCO_GL={backend}: {str(e).rstrip('.')}. On Debian: "
                              "apt-get install libegl1 libgl1 (egl) or libosmesa6 (osmesa)") from e
    return backend


def gl_status() -> tuple[bool, str]:
    """(True, backend) if a tiny offscreen render works, else (False, reason)."""
    try:
        backend = ensure_headless_gl()
        import mujoco
        m = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
        r = mujoco.Renderer(m, 16, 16)
        try:
            r.update_scene(mujoco.MjData(m))
            r.render()
        finally:
            r.close()
        return True, backend
    except Exception as e:  # noqa: BLE001 - report any failure as the reason
        return False, f"offscreen OpenGL rendering unavailable (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {e}"
