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

pytestmark = pytest.mark.browser

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
LESSONS = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
TIMEOUT_MS = 120_000  # generous upper bound for a whole notebook on a loaded 2-core machine

ERROR_SELECTORS = (
    '.jp-OutputArea-output[data-mime-type*="error"]',
    '.jp-RenderedText[data-mime-type*="error"]',
)
STDERR_SELECTOR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'

ALL_CELLS_RAN_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  if (!nb) return false;
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
    found = []
    for sel in ERROR_SELECTORS:
        found += page.locator(sel).all_inner_texts()
    found += [t for t in page.locator(STDERR_SELECTOR).all_inner_texts() if "Traceback" in t]
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
        page.goto(f"{base_url}/lab/tree/notebooks/{name}", timeout=TIMEOUT_MS)
        page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(timeout=TIMEOUT_MS)
        _wait_idle(page)
        page.locator(".jp-NotebookPanel .jp-Notebook").first.click()

        # Start from a clean slate so that every output below comes from this run.
        _menu(page, "Edit", "Clear Outputs of All Cells")
        _menu(page, "Run", "Run All Cells")
        page.wait_for_function(ALL_CELLS_RAN_JS, timeout=TIMEOUT_MS)
        _wait_idle(page)

        errors = _error_outputs(page)
        assert not errors, f"{name}: error output after Run All:\n" + "\n---\n".join(errors)

        label = opts.get("step_button")
        if label:
            step = page.get_by_role("button", name=label, exact=True).first
            step.wait_for(timeout=30_000)
            area = page.locator(".jp-OutputArea-output").filter(has=step).first
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
