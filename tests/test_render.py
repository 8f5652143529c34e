"""``mjxmeta render``: offscreen video frames and Brax's offline HTML viewer.

One tiny ``pendulum`` run is trained once for the module (via the CLI). The
MJX check renders a real ``inverted_pendulum`` reset state (plus a synthetic
motion of cart and pole) without training, so no trainer compiles for it.

Skips, each with its reason: no headless OpenGL (``libegl1``/``libosmesa6``),
no Chromium, or no npm while the viewer's package cache is empty.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from mjxmeta import cli
from mjxmeta.tools import render, viewer
from mjxmeta.runs.loop import load_checkpoint

# imageio-ffmpeg starts ffmpeg with subprocess (fork + exec at once), which JAX warns about.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")

TINY = ["--env", "pendulum", "--seeds", "1", "--hidden", "16,16", "--teacher-hidden", "16,16",
        "--batch-size", "32", "--buffer-size", "20000", "--rollout-steps", "50", "--return-horizon", "50",
        "--log-every", "2", "--eval-envs", "2", "--total-steps", "500", "--no-progress"]


@pytest.fixture(scope="module")
def gl() -> str:
    """The headless OpenGL backend; skips (before any training) where there is none."""
    ok, why = render.gl_status()
    if not ok:
        pytest.skip(f"{why} (install libegl1 libgl1, or libosmesa6 with MUJOCO_GL=osmesa)")
    return why


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def assert_frames_ok(frames: np.ndarray, what: str) -> None:
    """Non-blank (mean well above black, real contrast) and changing over time."""
    frames = np.asarray(frames, np.float32)
    assert frames.ndim == 4 and frames.shape[-1] == 3, frames.shape
    means = frames.mean(axis=(1, 2, 3))
    stds = frames.std(axis=(1, 2, 3))
    assert means.min() > 20, f"{what}: a frame is almost black (mean {means.min():.1f})"
    assert stds.min() > 10, f"{what}: a frame is almost uniform (std {stds.min():.1f})"
    diffs = [np.abs(frames[i] - frames[0]).mean() for i in range(1, len(frames))]
    assert max(diffs) > 1.0, f"{what}: frames do not change over time (max mean |diff| {max(diffs):.3f})"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("render") / "run"
    assert cli.main(["train", *TINY, "--run-dir", str(run)]) == 0
    return run


def read_mp4(path: Path) -> np.ndarray:
    import imageio.v2 as imageio
    with imageio.get_reader(path) as reader:  # len(reader) may be inf: no list(reader)
        return np.stack([f for f in reader])


def read_gif(path: Path) -> np.ndarray:
    from PIL import Image, ImageSequence
    with Image.open(path) as im:
        return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])


def test_render_student_mp4(gl, run_dir, tmp_path, capsys):
    out = tmp_path / "student"
    assert cli.main(["render", str(run_dir), "--out", str(out), "--steps", "60"]) == 0
    frames = read_mp4(out.with_suffix(".mp4"))
    assert len(frames) == 61 and frames.shape[1:] == (240, 320, 3)
    assert_frames_ok(frames, "pendulum student mp4")
    assert "student of seed 0" in capsys.readouterr().out


def test_render_teacher_gif(gl, run_dir, tmp_path):
    out = tmp_path / "teacher.gif"
    assert cli.main(["render", str(run_dir), "--out", str(out), "--teacher", "--steps", "30",
                     "--width", "160", "--height", "120"]) == 0
    frames = read_gif(out)
    assert len(frames) == 31 and frames.shape[1:] == (120, 160, 3)
    assert_frames_ok(frames, "pendulum teacher gif")


def test_rollout_student_is_deterministic_and_teacher_is_not(run_dir):
    trainer, state, _ = load_checkpoint(run_dir)
    a = render.rollout_states(trainer, state, 0, 20)
    b = render.rollout_states(trainer, state, 0, 20)
    t = render.rollout_states(trainer, state, 0, 20, use_teacher=True)
    assert a.qpos.shape == (21, 1) and a.reward.shape == (20,)
    np.testing.assert_array_equal(a.qpos, b.qpos)
    np.testing.assert_array_equal(a.qpos[0], t.qpos[0])  # same start state
    assert not np.allclose(a.qpos[1:], t.qpos[1:])       # teacher noise changes the path


@pytest.mark.parametrize("out, args, flag", [
    ("x", ["--seed", "1"], "--seed"),               # the run has one seed
    ("x", ["--steps", "0"], "--steps"),
    ("x", ["--width", "321"], "--width"),           # odd width for mp4
    ("x", ["--height", "8", "--format", "gif"], "--height"),
    ("x.mp4", ["--format", "gif"], "--format"),     # contradicts the suffix of --out
])
def test_render_rejects_bad_input(run_dir, tmp_path, capsys, out, args, flag):
    with pytest.raises(SystemExit) as e:
        cli.main(["render", str(run_dir), "--out", str(tmp_path / out), *args])
    assert e.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_render_rejects_non_run_dir(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["render", str(tmp_path), "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "argument RUN" in capsys.readouterr().err


def test_inverted_pendulum_frames(gl, tmp_path):
    """An MJX env: a real reset state (mjx qpos -> MjData), then the cart and pole moved."""
    import jax

    from mjxmeta.algo.envs import make_base

    env = make_base("inverted_pendulum")
    q0 = np.asarray(jax.jit(env.reset)(jax.random.PRNGKey(0)).pipeline_state.qpos)
    qpos = np.repeat(q0[None], 12, axis=0)
    qpos[:, 0] = np.linspace(-0.5, 0.5, 12)  # cart position [m]
    qpos[:, 1] = np.linspace(-0.8, 0.8, 12)  # pole angle [rad]
    frames = render.render_video("inverted_pendulum", qpos, tmp_path / "ip.gif", 160, 120,
                                 model=env.unwrapped.sys.mj_model)
    assert frames.shape == (12, 120, 160, 3)
    assert_frames_ok(frames, "inverted_pendulum")
    assert_frames_ok(read_gif(tmp_path / "ip.gif"), "inverted_pendulum gif")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requested: list[str] = []

    def log_message(self, fmt, *args):
        _QuietHandler.requested.append(self.path)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium and the viewer's JavaScript packages (cached, or npm to fetch them); else skip."""
    path = chromium_binary()
    if path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    cache = viewer.viewer_cache_dir()
    cached = all(viewer._package_dir(cache, n).is_dir() for n in viewer.VIEWER_PACKAGES)
    if not cached and shutil.which("npm") is None:
        pytest.skip(f"npm is not installed and the viewer package cache {cache} is empty")
    return path


def test_offline_html_renders_in_chromium(chromium, gl, run_dir, tmp_path):

    site = tmp_path / "site"
    out = site / "pendulum"
    assert cli.main(["render", str(run_dir), "--out", str(out), "--offline", "--steps", "40",
                     "--format", "gif", "--width", "64", "--height", "48"]) == 0
    page = out.with_suffix(".html")
    html = page.read_text()
    assert "https://" not in html and "http://" not in html, "offline page still references a URL"
    for rel in ("viewer/viewer.js", "three/build/three.module.js", "lil-gui/dist/lil-gui.esm.js",
                "pako/dist/pako.min.js", "es-module-shims/dist/es-module-shims.js",
                "three/examples/jsm/controls/OrbitControls.js"):
        assert (site / "pendulum_files" / rel).is_file(), rel

    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    shot = tmp_path / "shot.png"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{page.name}"
        proc = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             # software WebGL (SwiftShader): Chromium deprecates the silent fallback, so opt in explicitly
             "--enable-unsafe-swiftshader", f"--user-data-dir={tmp_path / 'profile'}",
             "--window-size=800,600", "--virtual-time-budget=10000", f"--screenshot={shot}", url],
            capture_output=True, text=True, timeout=240)
    finally:
        server.shutdown()
        server.server_close()
    assert shot.is_file(), f"no screenshot; chromium exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert any(p.endswith("three.module.js") for p in _QuietHandler.requested), _QuietHandler.requested

    from PIL import Image
    img = np.asarray(Image.open(shot).convert("RGB"), np.float32)
    canvas = img[60:, :560]  # below/left of the lil-gui panel in the top-right corner
    background = np.array([160.0, 160.0, 160.0])  # the viewer's scene background 0xa0a0a0
    drawn = np.abs(canvas - background).max(axis=-1) > 30
    assert canvas.std() > 5, f"canvas is uniform (std {canvas.std():.2f}): the scene was not drawn"
    assert drawn.mean() > 0.005, f"only {drawn.mean():.4%} of the canvas differs from the background"
