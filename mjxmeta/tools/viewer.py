"""Brax's trajectory viewer for a rendered rollout, optionally packaged for offline use.

:func:`render_html` writes Brax's viewer page (``brax.io.html``) for a sequence
of link transforms (:func:`html_states`). With ``offline`` the page's
JavaScript (Brax's ``viewer.js``, three.js, lil-gui, pako, es-module-shims) is
written beside it in ``<page>_files/`` instead of being loaded from CDNs: the
third-party packages come from the npm registry (``npm pack``, which checks the
registry's integrity hash) once and are cached under :func:`viewer_cache_dir`;
later renders need no network. The page must be served over HTTP (browsers
refuse ES modules from ``file://``), e.g. ``python -m http.server`` in its folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mjxmeta.tools.headless import RenderError, quiet_fork


# npm packages the Brax viewer page imports, at the versions pinned in Brax's
# ``visualizer/index.html`` (brax 0.14): name -> version.
VIEWER_PACKAGES = {
    "three": "0.150.1",
    "lil-gui": "0.18.0",
    "pako": "2.1.0",
    "es-module-shims": "1.6.3",
}
# CDN URL in that page -> "<package>/<path in its npm tarball>", also its path
# under <page>_files/. A URL not listed here makes the offline page an error.
_URL_MAP = {
    "https://unpkg.com/es-module-shims@1.6.3/dist/es-module-shims.js": "es-module-shims/dist/es-module-shims.js",
    "https://unpkg.com/three@0.150.1/build/three.module.js": "three/build/three.module.js",
    "https://unpkg.com/three@0.150.1/examples/jsm/": "three/examples/jsm/",
    "https://cdn.jsdelivr.net/npm/lil-gui@0.18.0/+esm": "lil-gui/dist/lil-gui.esm.js",
    "https://unpkg.com/pako@2.1.0/dist/pako.min.js": "pako/dist/pako.min.js",
}
_FIXED_FILES = ("es-module-shims/dist/es-module-shims.js", "three/build/three.module.js",
                "lil-gui/dist/lil-gui.esm.js", "pako/dist/pako.min.js")

@dataclass
class ViewerState:
    """The part of a Brax pipeline state that ``brax.io.json`` reads: ``x``."""

    x: Any


def html_states(model, qpos_sequence: np.ndarray) -> list[ViewerState]:
    """Brax-viewer states from joint positions: link transforms via ``mj_forward``.

    ``x.pos`` = ``xpos[1:]``, ``x.rot`` = ``xquat[1:]`` (w, x, y, z), as in
    Brax's MJX pipeline.
    """
    import mujoco
    from brax.base import Transform
    data = mujoco.MjData(model)
    out = []
    for q in np.asarray(qpos_sequence, np.float64).reshape(len(qpos_sequence), -1):
        data.qpos[:] = q
        mujoco.mj_forward(model, data)
        out.append(ViewerState(Transform(pos=data.xpos[1:].copy(), rot=data.xquat[1:].copy())))
    return out


def viewer_cache_dir() -> Path:
    """``$MJXMETA_VIEWER_CACHE``, else ``$XDG_CACHE_HOME/mjxmeta/viewer`` (``~/.cache/...``)."""
    if os.environ.get("MJXMETA_VIEWER_CACHE"):
        return Path(os.environ["MJXMETA_VIEWER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mjxmeta" / "viewer"


def _package_dir(cache: Path, name: str) -> Path:
    return cache / f"{name}-{VIEWER_PACKAGES[name]}" / "package"


def viewer_packages(cache: str | Path | None = None, npm: str | None = None) -> Path:
    """Makes sure the viewer's npm packages are unpacked in ``cache``; returns ``cache``.

    Missing packages are fetched once with ``npm pack <name>@<version>`` (which
    checks the registry's integrity hash) and unpacked to
    ``cache/<name>-<version>/package``. With everything cached no network or npm
    is needed.

    Raises:
      RenderError: a package is missing and npm is not installed or fails.
    """
    cache = Path(cache) if cache is not None else viewer_cache_dir()
    missing = [n for n in VIEWER_PACKAGES if not _package_dir(cache, n).is_dir()]
    if not missing:
        return cache
    specs = [f"{n}@{VIEWER_PACKAGES[n]}" for n in missing]
    npm = npm or shutil.which("npm")
    if not npm:
        raise RenderError(f"--offline needs the viewer's JavaScript packages {', '.join(specs)}, which are not "
                          f"cached in {cache}, and npm is not installed to fetch them (Debian: apt-get install "
                          f"npm). Alternatively unpack their npm tarballs there as <name>-<version>/package.")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        with quiet_fork():
            proc = subprocess.run([npm, "pack", *specs, "--json", "--pack-destination", tmp],
                                  cwd=tmp, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RenderError(f"`npm pack {' '.join(specs)}` failed (exit {proc.returncode}): "
                              f"{proc.stderr.strip()[-800:]}")
        packed = {f"{e['name']}": e["filename"] for e in json.loads(proc.stdout)}
        for name in missing:
            target = cache / f"{name}-{VIEWER_PACKAGES[name]}"
            stage = Path(tmp) / f"{name}.unpacked"
            with tarfile.open(Path(tmp) / packed[name]) as tf:
                tf.extractall(stage, filter="data")
            try:
                os.replace(stage, target)
            except OSError:
                if not _package_dir(cache, name).is_dir():  # not just a concurrent process winning the race
                    raise
    return cache


def _brax_viewer_dir() -> Path:
    return Path(str(resources.files("brax") / "visualizer"))


def _three_addons(js_files: Sequence[Path], jsm_root: Path) -> list[str]:
    """Files under three's ``examples/jsm`` that ``js_files`` import, with their relative imports."""
    pattern = re.compile(r"""(?:import|export)[^'"]*?from\s*['"]([^'"]+)['"]""")
    todo = [m for f in js_files for m in pattern.findall(f.read_text())]
    todo = [m[len("three/addons/"):] for m in todo if m.startswith("three/addons/")]
    seen: list[str] = []
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        src = jsm_root / rel
        if not src.is_file():
            raise RenderError(f"three/addons/{rel} imported by Brax's viewer is not in three@"
                              f"{VIEWER_PACKAGES['three']}")
        seen.append(rel)
        for m in pattern.findall(src.read_text()):
            if m.startswith("."):
                todo.append(os.path.normpath(os.path.join(os.path.dirname(rel), m)))
    return sorted(seen)


_MARKER = ".mjxmeta-viewer"


def viewer_folder(page: str | Path) -> Path:
    """``<stem>_files/`` beside the page ``<stem>.html``: where ``offline`` puts the JavaScript."""
    page = Path(page)
    return page.with_name(page.stem + "_files")


def check_viewer_folder(folder: str | Path) -> None:
    """Raises RenderError if ``folder`` exists and was not written by :func:`write_viewer_files`."""
    folder = Path(folder)
    if folder.exists() and not (folder / _MARKER).is_file():
        raise RenderError(f"{folder} exists and was not written by mjxmeta render; refusing to replace it "
                          "(choose another --out or remove it)")


def write_viewer_files(folder: str | Path, cache: str | Path | None = None) -> Path:
    """Copies everything the viewer page loads into ``folder``; returns it.

    Layout: ``viewer/`` (Brax's ``visualizer/js``), ``three/build/three.module.js``,
    the ``three/examples/jsm`` modules Brax imports, ``lil-gui/dist/lil-gui.esm.js``,
    ``pako/dist/pako.min.js``, ``es-module-shims/dist/es-module-shims.js``,
    ``favicon.ico``, and each package's licence as ``<name>/LICENSE``. An
    existing ``folder`` is replaced only if an earlier call wrote it.

    Raises:
      RenderError: ``folder`` exists but was not written here; or see
        :func:`viewer_packages`.
    """
    cache = viewer_packages(cache)
    folder = Path(folder)
    check_viewer_folder(folder)
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "viewer").mkdir(parents=True)
    (folder / _MARKER).write_text("JavaScript of an mjxmeta render --offline page; safe to delete with the page\n")
    brax_js = sorted((_brax_viewer_dir() / "js").glob("*.js"))
    for f in brax_js:
        shutil.copy2(f, folder / "viewer" / f.name)
    favicon = _brax_viewer_dir() / "favicon.ico"
    if favicon.exists():
        shutil.copy2(favicon, folder / "favicon.ico")
    files = list(_FIXED_FILES)
    jsm = _package_dir(cache, "three") / "examples" / "jsm"
    files += [f"three/examples/jsm/{rel}" for rel in _three_addons(brax_js, jsm)]
    for rel in files:
        name, sub = rel.split("/", 1)
        dst = folder / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_package_dir(cache, name) / sub, dst)
    for name in VIEWER_PACKAGES:
        for lic in ("LICENSE", "LICENSE.md", "LICENSE.txt"):
            src = _package_dir(cache, name) / lic
            if src.is_file():
                shutil.copy2(src, folder / name / "LICENSE")
                break
    return folder


def offline_html(html: str, folder_url: str) -> str:
    """Rewrites the CDN URLs of Brax's viewer page to ``folder_url/...``.

    Raises:
      RenderError: if any http(s) URL is left (Brax's template changed).
    """
    for url, rel in _URL_MAP.items():
        html = html.replace(url, f"{folder_url}/{rel}")
    html = html.replace('href="/favicon.ico"', f'href="{folder_url}/favicon.ico"')
    left = sorted(set(re.findall(r"https?://[^\s\"'<>]+", html)))
    if left:
        raise RenderError("Brax's viewer page references URLs mjxmeta does not know how to vendor: "
                          + ", ".join(left))
    return html


def render_html(sys, states: Sequence[Any], path: str | Path, offline: bool = False,
                dt: float | None = None, cache: str | Path | None = None) -> Path:
    """Writes Brax's trajectory viewer for ``states`` to ``path`` (.html).

    Args:
      sys: Brax ``System`` (e.g. :func:`brax_system`).
      states: states with a link transform ``x`` (Brax pipeline states or
        :func:`html_states`), one per frame.
      offline: write the JavaScript to ``<stem>_files/`` beside the page and
        point the page's import map there (no CDN). Serve the folder over HTTP
        to view it.
      dt: seconds between states (the viewer's playback clock); default
        ``sys.opt.timestep``.
      cache: npm package cache for ``offline`` (default :func:`viewer_cache_dir`).

    Returns:
      the page's path.
    """
    from brax.io import html as brax_html
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if dt is not None:
        sys = sys.tree_replace({"opt.timestep": float(dt)})
    states = list(states)
    if not offline:
        path.write_text(brax_html.render(sys, states, height=None, colab=False))
        return path
    folder = viewer_folder(path)
    write_viewer_files(folder, cache)
    # Import-map values must be URLs: a relative one needs "./" (else it is a bare specifier).
    folder_url = "./" + urllib.parse.quote(folder.name)
    page = brax_html.render(sys, states, height=None, colab=False, base_url=f"{folder_url}/viewer/viewer.js")
    path.write_text(offline_html(page, folder_url))
    return path
