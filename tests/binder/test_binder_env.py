"""Binder check: a fresh virtual environment built from `binder/` alone (what
repo2docker installs: binder/requirements.txt, whose "." line is this repository) runs every
lesson notebook to the end.

It downloads and installs the whole stack, so it runs in CI (CI=true) or when
TDXEDU_BINDER_CHECK=1, and is skipped with that reason otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.environ.get("TDXEDU_BINDER_CHECK") != "1",
    reason="builds a fresh venv from binder/ (network, minutes): runs in CI or with "
    "TDXEDU_BINDER_CHECK=1",
)


@pytest.fixture(scope="module")
def binder_python(tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("binder-venv")
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # repo2docker runs `pip install -r binder/requirements.txt` from the repository root.
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(BINDER / "requirements.txt")], cwd=ROOT,
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return py


def test_runtime_matches_python_major_minor():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime), runtime
    assert tuple(map(int, runtime.split("-")[1].split("."))) >= (3, 11)


def test_postbuild_is_executable():
    assert os.access(BINDER / "postBuild", os.X_OK)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs_in_binder_env(binder_python: Path, nb: Path, tmp_path: Path):
    out = tmp_path / nb.name
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    env.pop("PYTHONPATH", None)
    # Run from a copy location so the package comes from the binder venv, not the checkout.
    r = subprocess.run([str(binder_python), "-m", "jupyter", "nbconvert", "--to", "notebook",
                        "--execute", f"--output={out}", "--ExecutePreprocessor.timeout=600",
                        str(nb)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert out.exists()


def test_package_comes_from_the_binder_env(binder_python: Path, tmp_path: Path):
    r = subprocess.run([str(binder_python), "-c", "import tdxedu, sys; print(tdxedu.__file__)"],
                       cwd=tmp_path, capture_output=True, text=True, env={
                           k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert r.returncode == 0, r.stderr
    assert str(binder_python.parent.parent) in r.stdout, r.stdout
    assert sys.prefix not in r.stdout


def test_postbuild_trusts_the_lessons_and_silences_the_news(binder_python: Path, tmp_path: Path):
    """binder/postBuild as repo2docker runs it (repository root, the env's `jupyter` first on
    PATH), with the Jupyter dirs private: afterwards every lesson is trusted (JupyterLab draws
    the saved widgets) and the announcements plugin is disabled."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PATH=f"{binder_python.parent}{os.pathsep}{env['PATH']}",
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"))
    r = subprocess.run([str(BINDER / "postBuild")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    check = ("import sys, nbformat\nfrom nbformat.sign import NotebookNotary\n"
             "n = NotebookNotary()\n"
             "print(sum(n.check_signature(nbformat.read(p, as_version=4)) for p in sys.argv[1:]))")
    r = subprocess.run([str(binder_python), "-c", check, *map(str, NOTEBOOKS)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == len(NOTEBOOKS) == 7
    # `jupyter labextension disable` writes to the environment (sys.prefix) config.
    page = (binder_python.parent.parent / "etc/jupyter/labconfig/page_config.json").read_text()
    assert "@jupyterlab/apputils-extension:announcements" in page

