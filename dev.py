#!/usr/bin/env python3
"""Developer entry point for tdxedu (standard library only).

    python3 dev.py lab     open your copies of the lessons (in my-lessons/, git-ignored) in
                           JupyterLab (extra args go to `tdxedu lab`, e.g. --reset 03)
    python3 dev.py test    run the whole suite: unit, notebooks (nbval), browser
                           (extra args go to pytest, e.g. `python3 dev.py test -k tour`)
    python3 dev.py lint    ruff check .
    python3 dev.py sync    jupytext --sync notebooks/*.ipynb (pair .ipynb <-> .py)
    python3 dev.py execute [NB...]  re-run notebooks (default: all) and save them with outputs
                           and widget state, PYTHONHASHSEED=0, timing metadata dropped
    python3 dev.py sources regenerate docs/sources.md from tdxedu/sources.py (the bibliography)
    python3 dev.py site    build the static site in site/ (git-ignored; works offline; needs npm
                           once, for the widget manager): tools/build_site.py
    python3 dev.py teaching  regenerate the per-lesson part of docs/teaching.md from the lessons

Each command creates or reuses `.venv/` next to this file and runs `pip install -e .[lab,test]`
only when pyproject.toml or setup.py changed since the last install (hash stamp inside .venv).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".tdxedu-install-stamp"
PYPROJECT = ROOT / "pyproject.toml"
SETUP = ROOT / "setup.py"
WORKSPACE = ROOT / "my-lessons"  # `dev.py lab`'s copies of the lessons (git-ignored)
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
EXTRAS = "lab,test"

# Everything `test` passes to pytest before the caller's own arguments.
PYTEST_ARGS = [
    "--nbval-lax",
    "--nbval-current-env",
    "--nbval-sanitize-with",
    "tests/nbval_sanitize.cfg",
    "--nbval-cell-timeout=300",
]
TEST_PATHS = ["tests", "notebooks"]


def say(msg: str) -> None:
    print(f"[dev.py] {msg}", flush=True)


def run(cmd: list[str], **kw) -> int:
    say("$ " + " ".join(str(c) for c in cmd))
    try:
        return subprocess.run([str(c) for c in cmd], cwd=ROOT, **kw).returncode
    except KeyboardInterrupt:
        return 130


def _venv_works() -> bool:
    if not PY.exists():
        return False
    probe = subprocess.run(
        [str(PY), "-c", "import sys; print(sys.version_info[:2] >= (3, 11))"],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0 and probe.stdout.strip() == "True"


def _wanted_stamp() -> str:
    digest = hashlib.sha256(PYPROJECT.read_bytes() + SETUP.read_bytes()).hexdigest()
    return f"{digest} extras={EXTRAS}\n"


def ensure_venv() -> Path:
    """Create .venv if needed and (re)install the package when pyproject.toml changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may run on an older python3
        sys.exit(f"[dev.py] tdxedu needs Python >= 3.11, this is {sys.version.split()[0]}")
    if not _venv_works():
        say(f"creating virtual environment {VENV.relative_to(ROOT)}/")
        venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
    want = _wanted_stamp()
    have = STAMP.read_text() if STAMP.exists() else ""
    if have != want:
        why = "first run" if not have else "pyproject.toml or setup.py changed"
        say(f"{why}: installing tdxedu and what it needs (JupyterLab, matplotlib, pytest, ...) "
            f"into {VENV.relative_to(ROOT)}/; the first time takes about 2 minutes")
        t0 = time.monotonic()
        rc = run(
            [PY, "-m", "pip", "install", "--disable-pip-version-check", "-e", f".[{EXTRAS}]"]
        )
        if rc != 0:
            STAMP.unlink(missing_ok=True)
            sys.exit(f"[dev.py] pip install failed (exit {rc})")
        STAMP.write_text(want)
        say(f"installed in {time.monotonic() - t0:.0f} s")
    return PY


def venv_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONHOME", None)
    env.update(extra)
    return env


def cmd_lab(args: list[str]) -> int:
    ensure_venv()
    where = [] if any(a.startswith("--workspace") for a in args) else ["--workspace", WORKSPACE]
    return run([BIN / "tdxedu", "lab", *where, *args], env=venv_env())


def cmd_test(args: list[str]) -> int:
    ensure_venv()
    # Explicit paths (e.g. `dev.py test tests/test_pins.py`) replace the default test paths.
    explicit = [a for a in args if not a.startswith("-") and (ROOT / a.split("::")[0]).exists()]
    paths = [] if explicit else TEST_PATHS
    rc = run(
        [PY, "-m", "pytest", *paths, *PYTEST_ARGS, *args],
        env=venv_env(PYTHONHASHSEED="0"),
    )
    if rc == 5:
        say("pytest collected no tests: treated as a failure (there are always tests)")
    return rc


def cmd_lint(args: list[str]) -> int:
    ensure_venv()
    return run([PY, "-m", "ruff", "check", ".", *args], env=venv_env())


def cmd_sync(args: list[str]) -> int:
    ensure_venv()
    notebooks = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb"))
    if not notebooks:
        say("no notebooks/*.ipynb to sync")
        return 0
    return run([PY, "-m", "jupytext", "--sync", *notebooks, *args], env=venv_env())


# Runs inside the venv: execute each notebook in its own folder, keep widget state (so the
# saved widgets render before a learner runs anything), drop per-run timing metadata.
EXECUTE_SNIPPET = """
import sys, pathlib, nbformat
from nbclient import NotebookClient
for arg in sys.argv[1:]:
    path = pathlib.Path(arg)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    print("executed", path)
"""


def cmd_execute(args: list[str]) -> int:
    ensure_venv()
    notebooks = args or sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb")
    )
    rc = run([PY, "-c", EXECUTE_SNIPPET, *notebooks], env=venv_env(PYTHONHASHSEED="0"))
    if rc == 0:
        rc = run([PY, "-m", "jupytext", "--sync", *notebooks], env=venv_env())
    return rc


SOURCES_SNIPPET = """
import pathlib, tdxedu.sources as s
pathlib.Path("docs").mkdir(exist_ok=True)
pathlib.Path("docs/sources.md").write_text(s.markdown())
print("wrote docs/sources.md:", len(s.SOURCES), "sources")
"""


def cmd_sources(args: list[str]) -> int:
    ensure_venv()
    return run([PY, "-c", SOURCES_SNIPPET, *args], env=venv_env())


def cmd_site(args: list[str]) -> int:
    ensure_venv()
    t0 = time.monotonic()
    rc = run([PY, ROOT / "tools" / "build_site.py", *args], env=venv_env(PYTHONHASHSEED="0"))
    say(f"site build took {time.monotonic() - t0:.1f} s (exit {rc})")
    return rc


def cmd_teaching(args: list[str]) -> int:
    ensure_venv()
    return run([PY, ROOT / "tools" / "teaching.py", *args], env=venv_env())


COMMANDS = {
    "lab": cmd_lab,
    "test": cmd_test,
    "lint": cmd_lint,
    "sync": cmd_sync,
    "execute": cmd_execute,
    "sources": cmd_sources,
    "site": cmd_site,
    "teaching": cmd_teaching,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help") or argv[0] not in COMMANDS:
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help", "help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
