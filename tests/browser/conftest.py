"""Fixtures for the real-browser test: JupyterLab on 127.0.0.1 + Debian Chromium via Playwright.

* JupyterLab is launched the way ``tdxedu lab`` launches it (``tdxedu.lab``: the lessons copied
  into a fresh workspace, unedited copies signed, the workspace's own JupyterLab config), in
  its own process group (kernels included) on a fresh free port, token and password off,
  ``--allow-root``, with private Jupyter config/data/settings dirs so nothing of the
  developer's (or a trust database) helps: what the learner sees is what is tested.
* Chromium is Debian's ``/usr/bin/chromium`` (no browser download is possible). If it is
  missing the tests skip with a reason, except under ``CI=true`` where that is a failure.
* Every lesson's full page after Run All is saved to ``test-artifacts/<lesson>.png`` (failing
  tests also save ``<test>.png``); per-notebook timings, the Step-click latency per lesson and
  the pictures' pixel/display ratios are printed in the terminal summary and written to
  ``test-artifacts/browser-*.txt``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
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
SERVER_START_TIMEOUT = 90.0

TIMINGS: list[tuple[str, float, str]] = []  # (notebook, seconds, outcome)
LATENCIES: dict[str, list[float]] = {}  # notebook -> ms from a Step click to the new picture
PICTURES: dict[str, list[dict]] = {}  # notebook -> every raster picture's pixels vs display


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
    """(base_url, workspace, plan) of a private JupyterLab started as `tdxedu lab` starts it."""
    require_chromium()
    from tdxedu import lab

    base = tmp_path_factory.mktemp("lab")
    workspace = base / "tdxedu-lessons"
    port = _free_port()
    server_args = [
        "--no-browser", "--allow-root",
        "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        "--IdentityProvider.token=", "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
    ]  # fmt: skip
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(base / "jupyter-config"),
        JUPYTER_DATA_DIR=str(base / "jupyter-data"),  # the trust database: empty before
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(base / "user-settings"),
        IPYTHONDIR=str(base / "ipython"),
        PYTHONHASHSEED=env.get("PYTHONHASHSEED", "0"),
    )
    env.pop("JUPYTER_CONFIG_PATH", None)
    saved = os.environ.copy()
    os.environ.update(env)  # apply() signs into JUPYTER_DATA_DIR, as the server will read it
    try:
        plan = lab.make_plan(NOTEBOOKS, workspace, extra=server_args)
        lab.apply(plan)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    log = base / "jupyterlab.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            plan.command,
            env=plan.env(env),
            cwd=base,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log)
        yield url, workspace, log
    finally:
        _kill_group(proc)


@pytest.fixture(scope="session")
def browser_timings() -> list[tuple[str, float, str]]:
    """Tests append (notebook, seconds, outcome); printed in the terminal summary."""
    return TIMINGS


@pytest.fixture(scope="session")
def step_latencies() -> dict[str, list[float]]:
    """Tests add each lesson's Step-click latencies (ms); printed in the terminal summary."""
    return LATENCIES


@pytest.fixture(scope="session")
def picture_sizes() -> dict[str, list[dict]]:
    """Tests add each lesson's pictures (natural vs displayed width); printed in the summary."""
    return PICTURES


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


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency_lines(latencies: dict[str, list[float]]) -> list[str]:
    """Median and p90 of Step click -> new picture on screen, per lesson and overall."""
    lines = [f"{'lesson':34} {'clicks':>6} {'median':>9} {'p90':>9}"]
    every: list[float] = []
    for nb, ms in latencies.items():
        every += ms
        if ms:
            lines.append(f"{nb:34} {len(ms):6d} {statistics.median(ms):6.0f} ms "
                         f"{_percentile(ms, 0.9):6.0f} ms")
        else:
            lines.append(f"{nb:34} {0:6d}  (no picture changed)")
    if every:
        lines.append(f"{'all lessons':34} {len(every):6d} {statistics.median(every):6.0f} ms "
                     f"{_percentile(every, 0.9):6.0f} ms   (target: median < 150 ms)")
    return lines


def picture_lines(pictures: dict[str, list[dict]]) -> list[str]:
    """Per lesson: raster pictures shown, how many are upscaled (fewer pixels than shown)."""
    lines = []
    for nb, pics in pictures.items():
        shown = [p for p in pics if p["shown"] > 0]
        up = [p for p in shown if p["natural"] < p["shown"]]
        worst = min((p["natural"] / p["shown"] for p in shown), default=1.0)
        lines.append(f"{nb:34} {len(shown):3d} raster pictures, {len(up):3d} upscaled, "
                     f"lowest pixels/displayed width {worst:.2f}")
    return lines


def pytest_terminal_summary(terminalreporter):
    ARTIFACTS.mkdir(exist_ok=True)
    sections = [
        ("time per notebook", "browser-timings.txt",
         [f"{sec:6.1f} s  {outcome:7}  {nb}" for nb, sec, outcome in TIMINGS]),
        ("Step click -> new picture on screen (in Chromium)", "browser-step-latency.txt",
         latency_lines(LATENCIES) if LATENCIES else []),
        ("pictures after Run All: pixels vs displayed width", "browser-pictures.txt",
         picture_lines(PICTURES)),
    ]
    for title, filename, lines in sections:
        if not lines:
            continue
        terminalreporter.write_sep("-", f"browser test: {title}")
        for line in lines:
            terminalreporter.write_line(line)
        (ARTIFACTS / filename).write_text("\n".join(lines) + "\n")
