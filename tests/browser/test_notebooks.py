"""Every lesson in a real browser: JupyterLab + Debian Chromium driven by Playwright.

Per notebook: open it, clear outputs, Run All Cells, wait until every code cell has run and
the kernel is idle, assert no error output, then click the first button labelled exactly
"Step" and assert that the widget's visible text and its picture (an ``img`` inside the
widget) changed.

A notebook may tune this in its metadata (default shown)::

    "tdxedu": {"browser": {"step_button": "Step", "expect_picture": true}}

``"step_button": null`` skips the click (say why in the notebook).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

pytestmark = pytest.mark.browser

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
LESSONS = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
TIMEOUT_MS = 120_000  # generous upper bound for a whole notebook on a loaded 2-core machine

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on screen
ERROR_SELECTORS = (
    '.jp-OutputArea-output[data-mime-type*="error"]',
    '.jp-RenderedText[data-mime-type*="error"]',
)
STDERR_SELECTOR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'

# True once every code cell shows an execution count, or as soon as an error is visible
# (after an error the kernel aborts the queued cells, which would then never get a count).
ALL_CELLS_RAN_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return false;
  if (nb.querySelector('.jp-OutputArea-output[data-mime-type*="error"]')) return true;
  const stderr = [...nb.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')];
  if (stderr.some(e => /Traceback|UsageError/.test(e.textContent))) return true;
  const prompts = [...nb.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
  return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}"""


def _browser_options(name: str) -> dict:
    meta = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8")).get("metadata", {})
    opts = {"step_button": "Step", "expect_picture": True}
    opts.update(meta.get("tdxedu", {}).get("browser", {}))
    return opts


def _menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{menu}$")).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")).first.click()


def _wait_idle(page) -> None:
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\|\s*Idle")).first.wait_for(
        timeout=TIMEOUT_MS
    )


def _error_outputs(page) -> list[str]:
    panel = page.locator(PANEL)
    found = []
    for sel in ERROR_SELECTORS:
        found += panel.locator(sel).all_inner_texts()
    # A bad %magic prints "UsageError: ..." on stderr without an error output (nbval#147).
    found += [
        t
        for t in panel.locator(STDERR_SELECTOR).all_inner_texts()
        if "Traceback" in t or "UsageError" in t
    ]
    return found


def _widget_state(area) -> tuple[str, list[str]]:
    """Visible text of the widget and a short digest of each picture's src."""
    text = area.inner_text()
    srcs = area.locator("img").evaluate_all("els => els.map(e => e.getAttribute('src') || '')")
    return text, [hashlib.sha1(s.encode()).hexdigest()[:12] for s in srcs]


@pytest.mark.parametrize("name", LESSONS)
def test_notebook_runs_and_step_button_responds(lab_server, page, browser_timings, name):
    base_url, _root = lab_server
    opts = _browser_options(name)
    t0 = time.monotonic()
    outcome = "failed"
    try:
        # ?reset: start from an empty workspace, not with the previous test's tabs open.
        page.goto(f"{base_url}/lab/tree/notebooks/{name}?reset", timeout=TIMEOUT_MS)
        notebook = page.locator(f"{PANEL} .jp-Notebook").first
        notebook.wait_for(timeout=TIMEOUT_MS)
        _wait_idle(page)
        notebook.click()

        # Start from a clean slate so that every output below comes from this run.
        _menu(page, "Edit", "Clear Outputs of All Cells")
        _menu(page, "Run", "Run All Cells")
        page.wait_for_function(ALL_CELLS_RAN_JS, timeout=TIMEOUT_MS)
        _wait_idle(page)

        errors = _error_outputs(page)
        assert not errors, f"{name}: error output after Run All:\n" + "\n---\n".join(errors)

        label = opts.get("step_button")
        if label:
            # The widget is the first output area that holds such a button.
            area = page.locator(f"{PANEL} .jp-OutputArea-output").filter(
                has=page.get_by_role("button", name=label, exact=True)
            )
            area = area.first
            step = area.get_by_role("button", name=label, exact=True).first
            try:
                step.wait_for(timeout=15_000)
            except PlaywrightTimeoutError:
                pytest.fail(
                    f"{name}: no button labelled exactly {label!r} after Run All. Lessons are "
                    "driven by a Step button; if this one has none, say so in its metadata: "
                    '"tdxedu": {"browser": {"step_button": null}}',
                    pytrace=False,
                )
            if opts.get("expect_picture", True):
                area.locator("img").first.wait_for(timeout=30_000)
            text0, srcs0 = _widget_state(area)

            step.click()

            deadline = time.monotonic() + 30
            text1, srcs1 = text0, srcs0
            while time.monotonic() < deadline:
                text1, srcs1 = _widget_state(area)
                picture_done = srcs1 != srcs0 or not opts.get("expect_picture", True)
                if text1 != text0 and picture_done:
                    break
                page.wait_for_timeout(100)
            assert text1 != text0, f"{name}: the widget's visible text did not change on {label!r}"
            if opts.get("expect_picture", True):
                assert srcs1 and srcs1 != srcs0, f"{name}: the widget's picture did not change"
            errors = _error_outputs(page)
            assert not errors, f"{name}: error output after {label!r}:\n" + "\n---\n".join(errors)
        outcome = "passed"
    finally:
        browser_timings.append((name, time.monotonic() - t0, outcome))


def test_every_notebook_is_covered():
    """The browser test sees the same notebooks nbval runs (guards the glob)."""
    assert LESSONS == sorted(p.name for p in Path(NOTEBOOKS).glob("*.ipynb"))
    assert LESSONS, "no notebooks/*.ipynb found"
