"""The lessons anywhere: `python -m build` makes a wheel that carries the seven lessons, and
`pip install <wheel>[lab]` into a fresh virtual environment gives a `tdxedu lab` that works
from any folder and lessons that run (nbval) with the installed package.

It builds and installs the whole stack (network for pip, minutes), so it runs in CI
(CI=true) or with TDXEDU_WHEEL_CHECK=1, like tests/binder. pip's own cache is used as usual.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.environ.get("TDXEDU_WHEEL_CHECK") != "1",
    reason="builds the wheel and a fresh venv (network, minutes): runs in CI or with "
    "TDXEDU_WHEEL_CHECK=1",
)


def _pin(name: str) -> str:
    """The exact pin of `name` in pyproject.toml (lock-step: tests/test_pins.py)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]:
        if re.split(r"[=<>\[]", req)[0] == name:
            return req
    raise AssertionError(f"{name} is not pinned in pyproject.toml")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_CONFIG_PATH", "TDXEDU_NOTEBOOKS",
                        "TDXEDU_WORKSPACE")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=900, env=_clean_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    wheels = list(out.glob("tdxedu-*.whl"))
    assert len(wheels) == 1, list(out.iterdir())
    print(f"wheel: {wheels[0].name}, {wheels[0].stat().st_size / 1024:.0f} KiB")
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory) -> Path:
    """A fresh venv with `<wheel>[lab]` and the test runner; returns its bin/ folder."""
    env_dir = tmp_path_factory.mktemp("wheel-venv")
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    r = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install",
                        "--disable-pip-version-check", f"{wheel}[lab]", _pin("pytest"),
                        _pin("nbval")], capture_output=True, text=True, timeout=1500,
                       env=_clean_env(), cwd=env_dir)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return bin_dir


def _site_lessons(bin_dir: Path) -> Path:
    r = subprocess.run([str(bin_dir / "python"), "-c",
                        "import tdxedu.lab as l; print(l.PACKAGED_LESSONS)"],
                       capture_output=True, text=True, env=_clean_env(), cwd=bin_dir)
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip())


def test_the_wheel_carries_the_lessons_and_both_licenses(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.split("/")[-1] for n in names if n.startswith("tdxedu/notebooks/"))
    assert shipped == LESSONS and len(LESSONS) == 7  # .ipynb only: no .py twins
    # Every data file the package reads at run time is in the wheel too.
    for data in ("tdxedu/cost/calibration.csv",):
        assert data in names, f"{data} missing from the wheel (package-data in pyproject.toml)"
    licenses = sorted(n.split("/")[-1] for n in names if "/licenses/" in n)
    assert licenses == ["LICENSE", "LICENSE-lessons"]
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA")))
    assert b"License-Expression: MIT AND CC-BY-4.0" in meta


def test_tdxedu_lab_dry_run_from_an_empty_folder(installed: Path, tmp_path: Path):
    empty, home = tmp_path / "empty", tmp_path / "home"
    empty.mkdir()
    home.mkdir()
    r = subprocess.run([str(installed / "tdxedu"), "lab", "--dry-run", "--no-browser"],
                       cwd=empty, capture_output=True, text=True, timeout=120,
                       env=_clean_env(HOME=str(home)))
    assert r.returncode == 0, r.stdout + r.stderr
    lessons = _site_lessons(installed)
    assert str(installed.parent) in str(lessons)  # the wheel's copy, not the checkout's
    assert f"lessons:   {lessons}" in r.stdout
    assert f"workspace: {home / 'tdxedu-lessons'}" in r.stdout
    assert [ln.split()[-1] for ln in r.stdout.splitlines() if ln.startswith("  copy ")] == LESSONS
    assert f"{installed / 'python'} -m jupyterlab" in r.stdout
    assert not (home / "tdxedu-lessons").exists() and not list(empty.iterdir())


def test_the_installed_lessons_run(installed: Path, tmp_path: Path):
    """nbval (the golden cells compared, as `dev.py test` does) on the wheel's lessons,
    with the kernel of the fresh venv: the installed package, not the checkout."""
    lessons = _site_lessons(installed)
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")
    r = subprocess.run([str(installed / "python"), "-m", "pytest", "-c", str(ini),
                        "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-q",
                        "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with",
                        str(ROOT / "tests" / "nbval_sanitize.cfg"),
                        "--nbval-cell-timeout=300", str(lessons)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=1500,
                       env=_clean_env(PYTHONHASHSEED="0", MPLBACKEND="Agg"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"\d+ passed", r.stdout), r.stdout[-2000:]
