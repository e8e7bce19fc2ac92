"""Binder's server config from binder/postBuild (no network: only the config part runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_postbuild_hides_the_py_twins(tmp_path: Path):
    """The lessons appear once in Binder's file browser: postBuild's server config hides
    every jupytext twin (NN_name.py) and keeps Jupyter's own hidden names. Runs without
    network: only the config part of postBuild, read by jupyter_server's ContentsManager."""
    script = (BINDER / "postBuild").read_text()
    part = script[script.index('CONFIG_DIR="$(jupyter --config-dir)"'):]
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", part], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("jupyter_server_config.py", path=str(tmp_path / "cfg")).load_config()
    cm = FileContentsManager(config=cfg, root_dir=str(ROOT / "notebooks"))
    listed = [m["name"] for m in cm.get("", content=True)["content"]]
    lessons = sorted(p.name for p in NOTEBOOKS)
    assert sorted(n for n in listed if n[:2].isdigit()) == lessons
    assert "__pycache__" in cm.hide_globs and "*.pyc" in cm.hide_globs
    assert cfg.ServerApp.jpserver_extensions.get_value({}) == {"jupyterlab_jupytext": False}
