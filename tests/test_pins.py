"""binder/requirements.txt and pyproject.toml pin the same versions (lock-step)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines, where):
    pins = {}
    for line in lines:
        m = PIN.match(line.strip())
        assert m, f"{where}: not an exact pin (name==version): {line!r}"
        pins[_norm(m.group(1))] = m.group(3)
    return pins


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _binder_lines():
    lines = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def test_runtime_and_lab_pins_match_binder():
    project = _pyproject()
    wanted = _pins(project["dependencies"], "pyproject dependencies")
    wanted.update(_pins(project["optional-dependencies"]["lab"], "pyproject [lab]"))
    reqs = [ln for ln in _binder_lines() if ln not in (".", "-e .")]
    assert _pins(reqs, "binder/requirements.txt") == wanted


def test_binder_installs_the_package_itself():
    # A binder/ folder stops repo2docker from installing pyproject.toml on its own.
    assert "." in _binder_lines() or "-e ." in _binder_lines()


def test_every_dependency_is_pinned_exactly_and_consistently():
    project = _pyproject()
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    seen = {}
    for group, reqs in groups.items():
        for name, version in _pins(reqs, f"pyproject {group}").items():
            assert seen.setdefault(name, version) == version, f"{name} pinned twice differently"


def test_binder_runtime_matches_requires_python():
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(\d+)\.(\d+)", runtime)
    assert m, runtime
    floor = re.search(r">=\s*(\d+)\.(\d+)", _pyproject()["requires-python"])
    assert (int(m[1]), int(m[2])) >= (int(floor[1]), int(floor[2]))
