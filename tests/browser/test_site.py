"""The static site works offline: tools/build_site.py (`python3 dev.py site`) is built into a
temporary folder, served on 127.0.0.1, and every page is opened in Debian Chromium with every
request that leaves the server blocked.

Per page: no request fails or is blocked (so nothing is fetched from a CDN: every script,
style and font is in the site), no console error or uncaught exception, every image is loaded
(decoded, non-zero width), every link inside the site resolves (the page exists and so does
the `#fragment`). Per lesson page: every widget view the notebook saved is drawn by the
bundled widget manager (as JupyterLab draws it, from the saved state, no kernel), with its
pictures, and none says "Error displaying widget". The index lists every lesson with its
objectives and time. Each page's first screen goes to test-artifacts/site-<page>.png.

Building needs the npm registry once (the widget manager, cached in build/site-cache/); with
neither npm nor the cache the test is skipped, except under CI=true where it fails.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
sys.path.insert(0, str(ROOT / "tools"))
import build_site  # noqa: E402
import catalog  # noqa: E402

LESSONS = catalog.lessons()
PAGES = [
    "index.html",
    *[f"{les.name}.html" for les in LESSONS],
    *[page for md, page, _ in build_site.DOC_PAGES if (build_site.DOCS / md).is_file()],
]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

PAGE_FACTS_JS = """() => ({
  views: document.querySelectorAll('script[type="__VIEW__"]').length,
  drawn: document.querySelectorAll('.widget-subarea > .jupyter-widgets').length,
  widget_images: [...document.querySelectorAll('.widget-subarea img')].filter(
      i => i.complete && i.naturalWidth > 0).length,
  widget_errors: document.body.innerText.includes('Error displaying widget'),
  images: [...document.images].map(i => ({src: i.src.slice(0, 80), complete: i.complete,
                                          width: i.naturalWidth})),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
})""".replace("__VIEW__", WIDGET_VIEW)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test reports what matters
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(base URL, folder) of a freshly built site served on 127.0.0.1."""
    out = tmp_path_factory.mktemp("site") / "site"
    t0 = time.monotonic()
    try:
        build_site.build(out, log=lambda msg: None)
    except build_site.SiteError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{exc} [CI=true: .ci/run installs npm]", pytrace=False)
        pytest.skip(str(exc))
    print(f"site built in {time.monotonic() - t0:.1f} s")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=out))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", out
    finally:
        server.shutdown()
        server.server_close()


@functools.cache
def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _ids(page_html: str) -> set[str]:
    return {html.unescape(unquote(m)) for m in re.findall(r'\b(?:id|name)="([^"]+)"', page_html)}


def _saved_views(name: str) -> int:
    """Widget views in the lesson's outputs whose model the notebook saved."""
    nb = json.loads((catalog.NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return sum(
        1
        for cell in nb["cells"]
        for out in cell.get("outputs", [])
        if out.get("data", {}).get(WIDGET_VIEW, {}).get("model_id") in state
    )


def _saved_images(name: str) -> int:
    nb = json.loads((catalog.NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return sum(1 for m in state.values() if m.get("model_name") == "ImageModel")


@pytest.mark.parametrize("page_name", PAGES)
def test_page_works_offline(browser, site, page_name):
    base, _folder = site
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []
    failed: list[str] = []
    errors: list[str] = []

    def route(r):
        if r.request.url.startswith(base):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on(
        "response",
        lambda r: failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None,
    )
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    try:
        page.goto(base + page_name, wait_until="load")
        name = page_name.removesuffix(".html")
        lesson = next((les for les in LESSONS if les.name == name), None)
        if lesson is not None:
            want = _saved_views(name)
            page.wait_for_function(
                "(n) => document.querySelectorAll('.widget-subarea > .jupyter-widgets')"
                ".length >= n",
                arg=want,
                timeout=60_000,
            )
        page.evaluate(
            "() => Promise.all([...document.images].map(i => i.decode().catch(() => null)))"
        )
        page.wait_for_load_state("networkidle")
        facts = page.evaluate(PAGE_FACTS_JS)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"site-{name}.png"))
    finally:
        context.close()

    assert not blocked, f"{page_name} asked for something outside the site: {blocked}"
    assert not failed, f"{page_name}: failed requests: {failed}"
    assert not errors, f"{page_name}: console errors: {errors}"
    broken = [i for i in facts["images"] if not i["complete"] or i["width"] == 0]
    assert not broken, f"{page_name}: images not loaded: {broken}"

    for link in dict.fromkeys(facts["links"]):
        if not link.startswith(base):
            continue  # outside the site (lore, GitHub, Binder): a reader's click, not a load
        target, frag = urldefrag(link)
        status, text = _fetch(target)
        assert status == 200, f"{page_name}: link {link} -> HTTP {status}"
        if frag:
            assert unquote(frag) in _ids(text), f"{page_name}: link {link}: no #{frag} there"

    if lesson is not None:
        assert facts["drawn"] == facts["views"] == _saved_views(name), (
            f"{page_name}: {facts['views']} widget views, {facts['drawn']} drawn, "
            f"{_saved_views(name)} saved in the notebook"
        )
        assert not facts["widget_errors"], f"{page_name}: Error displaying widget"
        if _saved_images(name):
            assert facts["widget_images"] > 0, f"{page_name}: no widget picture is shown"


def test_index_lists_every_lesson(site):
    base, folder = site
    index = (folder / "index.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", index))
    for les in LESSONS:
        assert f'href="{les.name}.html"' in index, les.name
        assert les.minutes is not None and f"{les.minutes} min" in text, les.name
        for objective in les.objectives:
            plain = re.sub(r"[`*]", "", objective)
            assert plain in text, f"{les.name}: objective missing from the index: {plain}"
    assert "mybinder.org" in index and "tdxedu lab" in text
