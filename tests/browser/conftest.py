"""Fixtures for the real-browser test: JupyterLab on 127.0.0.1 + Debian Chromium via Playwright.

* JupyterLab runs in its own process group (kernels included) on a fresh free port, token and
  password off, ``--allow-root``, root dir = a temporary copy of ``notebooks/``, with its own
  JUPYTER_CONFIG_DIR whose ``labconfig/page_config.json`` disables the news toast.
* Chromium is Debian's ``/usr/bin/chromium`` (no browser download is possible). If it is
  missing the tests skip with a reason, except under ``CI=true`` where that is a failure.
* Screenshots go to ``test-artifacts/`` only for failing tests; per-notebook timings are
  printed in the terminal summary and written to ``test-artifacts/browser-timings.txt``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("TDXEDU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DISABLED_LAB_PLUGINS = [
    "@jupyterlab/apputils-extension:announcements",  # "get notified about Jupyter news?"
]
SERVER_START_TIMEOUT = 90.0

TIMINGS: list[tuple[str, float, str]] = []  # (notebook, seconds, outcome)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    msg = (
        f"Debian Chromium not found at {CHROMIUM}: the browser test needs it "
        "(apt-get install chromium; .ci/run does this)"
    )
    if _in_ci():
        pytest.fail(msg + " [CI=true: a missing browser is a failure, not a skip]", pytrace=False)
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/api/status", timeout=2) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"JupyterLab not ready after {SERVER_START_TIMEOUT}s:\n{log.read_text()}")


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """(base_url, root_dir) of a private JupyterLab serving a copy of notebooks/."""
    require_chromium()
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    shutil.copytree(
        NOTEBOOKS,
        root / "notebooks",
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.py", "__pycache__"),
    )
    config_dir = base / "jupyter-config"
    (config_dir / "labconfig").mkdir(parents=True)
    (config_dir / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {name: True for name in DISABLED_LAB_PLUGINS}})
    )
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(base / "user-settings"),
        IPYTHONDIR=str(base / "ipython"),
        PYTHONHASHSEED=env.get("PYTHONHASHSEED", "0"),
    )
    port = _free_port()
    log = base / "jupyterlab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser", "--allow-root",
        "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        "--IdentityProvider.token=", "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=root,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log)
        yield url, root
    finally:
        _kill_group(proc)


@pytest.fixture(scope="session")
def browser_timings() -> list[tuple[str, float, str]]:
    """Tests append (notebook, seconds, outcome); printed in the terminal summary."""
    return TIMINGS


@pytest.fixture(scope="session")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _shutdown_sessions(base_url: str) -> None:
    """Stop every kernel the last test started (token off, xsrf check off)."""
    try:
        with urllib.request.urlopen(base_url + "/api/sessions", timeout=5) as r:
            sessions = json.load(r)
        for sess in sessions:
            req = urllib.request.Request(f"{base_url}/api/sessions/{sess['id']}", method="DELETE")
            urllib.request.urlopen(req, timeout=10).close()
    except OSError as exc:
        print(f"could not shut down kernels: {exc}")


@pytest.fixture()
def page(browser, lab_server, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    console_errors: list[str] = []
    pg.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    pg.console_errors = console_errors  # type: ignore[attr-defined]
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(console_errors))
        except Exception as exc:  # noqa: BLE001 - a failed screenshot must not hide the failure
            print(f"could not save screenshot: {exc}")
    context.close()
    _shutdown_sessions(lab_server[0])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    lines = [f"{sec:6.1f} s  {outcome:7}  {nb}" for nb, sec, outcome in TIMINGS]
    terminalreporter.write_sep("-", "browser test: time per notebook")
    for line in lines:
        terminalreporter.write_line(line)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser-timings.txt").write_text("\n".join(lines) + "\n")
