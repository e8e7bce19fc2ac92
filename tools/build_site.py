"""Build the static site: `python3 dev.py site` (or `python tools/build_site.py [OUT]`).

site/ (git-ignored) holds an index of the lessons (objectives and times, read from the
notebooks by tools/catalog.py), every lesson rendered with its saved outputs, the sources page,
the conformance table and the instructors' guide, all linked to each other, and a "run it live"
link on every page. It works offline: nothing is loaded from outside site/.

Why nbconvert with the widget manager: the lessons' pictures live in ipywidgets (Image, HTML,
Button, Dropdown inside VBox/HBox), saved in each notebook's widget state by
`dev.py execute`. nbconvert's lab template writes that state into the page, and the
@jupyter-widgets/html-manager bundle (`dist/embed.js`, fetched once from the npm registry with
`npm pack` and cached in build/site-cache/) draws each widget from it exactly as JupyterLab
does, pictures included, without a kernel. The bundle and its fonts are copied to
site/_static/html-manager/; the template (tools/site_template/tdxsite) drops the CDN scripts
(require.js, MathJax, mermaid) the lab template would load.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import catalog  # noqa: E402 - tools/ is not a package

ROOT = catalog.ROOT
NOTEBOOKS = catalog.NOTEBOOKS
DOCS = ROOT / "docs"
OUT = ROOT / "site"
CACHE = ROOT / "build" / "site-cache"
TEMPLATES = Path(__file__).resolve().parent / "site_template"
STATIC = "_static"

# The widget manager for ipywidgets 8 (widget protocol 2, @jupyter-widgets/controls 2.0.0).
HTML_MANAGER = "@jupyter-widgets/html-manager"
HTML_MANAGER_VERSION = "1.0.15"
# Pages made from docs/: (markdown file, page, label in the navigation bar).
DOC_PAGES = (
    ("sources.md", "sources.html", "Sources"),
    ("conformance.md", "conformance.html", "Conformance"),
    ("teaching.md", "teaching.html", "For instructors"),
)
BINDER_FALLBACK = "https://mybinder.org/v2/gh/tdxedu/tdxedu/HEAD"

SITE_CSS = """\
body.jp-Notebook { margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 0 16px 48px; }
.tdx-nav { position: sticky; top: 0; z-index: 10; display: flex; flex-wrap: wrap;
  gap: 4px 18px; padding: 8px 16px; background: #24292f; font: 14px/1.6 sans-serif; }
.tdx-nav a { color: #e6edf3; text-decoration: none; }
.tdx-nav a:hover, .tdx-nav a[aria-current] { text-decoration: underline; }
.tdx-nav .tdx-home { font-weight: bold; margin-right: 12px; }
.tdx-banner { max-width: 1068px; margin: 12px auto 0; padding: 8px 16px; background: #fff8c5;
  border: 1px solid #d4a72c; border-radius: 6px; font: 14px/1.5 sans-serif; }
.tdx-banner code { font-size: 13px; }
table.tdx-lessons td { vertical-align: top; text-align: left; }
.widget-subarea .jupyter-widgets { font-family: var(--jp-ui-font-family); }
table.tdx-lessons td ul { margin: 0; padding-left: 1.2em; }
"""


class SiteError(RuntimeError):
    """The site cannot be built (says what is missing and how to get it)."""


# -- the widget manager -------------------------------------------------------------------------


def html_manager_dist(cache: Path = CACHE) -> Path:
    """The unpacked `dist/` of the html-manager package: from the cache, else `npm pack`."""
    here = cache / f"html-manager-{HTML_MANAGER_VERSION}" / "dist"
    if (here / "embed.js").is_file():
        return here
    npm = shutil.which("npm")
    if npm is None:
        raise SiteError(
            f"npm not found: the site needs {HTML_MANAGER}@{HTML_MANAGER_VERSION} from the npm "
            "registry once (to draw the widgets without a kernel). Install Node.js and npm "
            "(Debian: apt-get install npm), or unpack the package's dist/ into "
            f"{here.relative_to(ROOT) if here.is_relative_to(ROOT) else here}."
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        spec = f"{HTML_MANAGER}@{HTML_MANAGER_VERSION}"
        r = subprocess.run(
            [npm, "pack", spec, "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if r.returncode != 0 or not tarballs:
            raise SiteError(f"npm pack {spec} failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
        with tarfile.open(tarballs[0]) as tar:
            members = [
                m for m in tar.getmembers() if m.name.startswith("package/dist/") and m.isfile()
            ]
            # filter="data" (refuse links and absolute paths) exists from Python 3.11.4 on.
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **safe)
        target = here.parent
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.move(str(Path(tmp) / "package" / "dist"), str(here))
    return here


def copy_static(out: Path, dist: Path) -> None:
    static = out / STATIC
    manager = static / "html-manager"
    manager.mkdir(parents=True, exist_ok=True)
    for f in dist.iterdir():
        # embed.js is the standalone bundle; the AMD builds need require.js, the map is for
        # debugging only.
        if f.is_file() and "amd" not in f.name and not f.name.endswith(".map"):
            shutil.copy2(f, manager / f.name)
    (static / "site.css").write_text(SITE_CSS)


# -- links --------------------------------------------------------------------------------------


def _source_tags() -> dict[str, str]:
    """Known bibliography tags -> their anchor on sources.html."""
    try:
        from tdxedu.sources import SOURCES
    except Exception:  # noqa: BLE001 - a site without tag links is still a site
        return {}
    return {s.tag: s.tag.lower() for s in SOURCES}


def _outside_code(text: str, fn) -> str:
    """Apply `fn` to the parts of Markdown `text` outside code spans and fenced blocks."""
    parts = re.split(r"(```.*?```|`+[^`]*`+)", text, flags=re.S)
    return "".join(p if i % 2 else fn(p) for i, p in enumerate(parts))


def rewrite_markdown(text: str, pages: dict[str, str], tags: dict[str, str]) -> str:
    """Links to lessons (.ipynb) and docs (.md) point at their pages; a `[TAG]` citation links
    to its entry on the sources page."""

    def link(m: re.Match) -> str:
        target, frag = m.group(2), m.group(3) or ""
        name = target.rsplit("/", 1)[-1]
        if name in pages:
            return f"{m.group(1)}({pages[name]}{frag})"
        return m.group(0)

    def fix(part: str) -> str:
        part = re.sub(r"(\]\s*)\(((?!https?:|mailto:)[^)#\s]+)(#[^)\s]*)?\)", link, part)
        if tags:
            part = re.sub(
                r"(?<![\[\w])\[([A-Za-z][\w.+-]*)\](?![(\[:])",
                lambda m: (
                    f"[\\[{m.group(1)}\\]](sources.html#{tags[m.group(1)]})"
                    if m.group(1) in tags
                    else m.group(0)
                ),
                part,
            )
        return part

    return _outside_code(text, fix)


def rewrite_html(body: str, pages: dict[str, str]) -> str:
    """Links written by code outputs (HTML), e.g. `<a href="01_x.ipynb">`."""
    for name, page in pages.items():
        body = body.replace(f'href="{name}', f'href="{page}')
    return body


# -- pages --------------------------------------------------------------------------------------


def _exporter() -> HTMLExporter:
    return HTMLExporter(
        template_name="tdxsite",
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_anchor_links=False,
    )


def binder_base() -> str:
    """The Binder launch URL of the repository, as the README's badge gives it."""
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    m = re.search(r"https://mybinder\.org/v2/gh/[^)?\s]+", text)
    return m.group(0) if m else BINDER_FALLBACK


def live_banner(lesson: str | None) -> str:
    url = binder_base() + (f"?urlpath=lab/tree/notebooks/{lesson}.ipynb" if lesson else "")
    where = "this lesson" if lesson else "the lessons"
    static = (
        "A static page: the widgets show their saved state and do not respond here. "
        if lesson
        else ""
    )
    return (
        f"{static}<strong>Run it live:</strong> open {where} on "
        f'<a href="{html.escape(url)}">Binder</a>, or on your machine: '
        '<code>pip install "tdxedu[lab]"</code> then <code>tdxedu lab</code>.'
    )


def _render(
    exporter: HTMLExporter, nb, page: str, title: str, nav, banner: str, pages: dict[str, str]
) -> str:
    nb.metadata["title"] = title
    resources = {
        "site": {"static": STATIC, "nav": nav, "page": page, "banner": banner},
        "metadata": {"name": title},
    }
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return rewrite_html(body, pages)


def _markdown_notebook(text: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(text)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def index_markdown(lessons: list[catalog.Lesson], doc_pages: list[tuple[str, str]]) -> str:
    rows = []
    for les in lessons:
        objectives = "".join(f"<li>{_inline(o)}</li>" for o in les.objectives)
        minutes = f"{les.minutes} min" if les.minutes else ""
        rows.append(
            f"<tr><td>{html.escape(les.number)}</td>"
            f'<td><a href="{les.name}.html">{_inline(les.title or les.name)}</a></td>'
            f"<td>{minutes}</td><td><ul>{objectives}</ul></td></tr>"
        )
    total = sum(les.minutes or 0 for les in lessons)
    docs = "\n".join(f"* [{label}]({page})" for page, label in doc_pages)
    tour = f"{binder_base()}?urlpath=lab/tree/notebooks/00_tour.ipynb"
    return f"""# tdxedu: how Linux KVM drives Intel TDX, lesson by lesson

An executable model of the TDX module's SEAMCALLs and of KVM's memory management (TDP MMU
roots, Secure-EPT teardown, Dynamic PAMT), taught in {len(lessons)} lessons of 20 to 40
minutes (about {total} minutes in all). Each lesson asks you to predict before you run, and ends
with exercises that the model itself checks. No TDX hardware needed.

These pages show each lesson as it was last run, widgets and pictures included; to press
**Step** yourself, run it live: on [Binder]({tour}),
or on your machine with `pip install "tdxedu[lab]"` then `tdxedu lab` (it copies the lessons
into `~/tdxedu-lessons/` and opens JupyterLab there).

## The lessons

<table class="tdx-lessons">
<thead><tr><th>#</th><th>lesson</th><th>time</th><th>you will be able to</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>

## Reference

{docs}

The code is under the MIT License; the lessons' text and figures are under
[CC BY 4.0](https://creativecommons.org/licenses/by/4.0/).
"""


def _inline(text: str) -> str:
    """Escape, keep `code` and **bold** (objectives are one-line Markdown)."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"\*([^*\s][^*]*)\*", r"<em>\1</em>", out)


def build(
    out: Path = OUT, notebooks: Path = NOTEBOOKS, docs: Path = DOCS, cache: Path = CACHE, log=print
) -> list[Path]:
    """Build the site into `out` (replaced); returns the pages written."""
    t0 = time.monotonic()
    dist = html_manager_dist(cache)
    lessons = catalog.lessons(notebooks)
    doc_pages = [(page, label) for md, page, label in DOC_PAGES if (docs / md).is_file()]
    pages = {f"{les.name}.ipynb": f"{les.name}.html" for les in lessons}
    pages.update({md: page for md, page, _ in DOC_PAGES if (docs / md).is_file()})
    pages["README.md"] = "index.html"
    nav = [
        ("index.html", "Lessons"),
        *[(f"{les.name}.html", les.number or les.name) for les in lessons],
        *doc_pages,
    ]
    tags = _source_tags()

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    copy_static(out, dist)
    exporter = _exporter()
    written = []

    def write(page: str, text: str) -> None:
        (out / page).write_text(text, encoding="utf-8")
        written.append(out / page)

    write(
        "index.html",
        _render(
            exporter,
            _markdown_notebook(index_markdown(lessons, doc_pages)),
            "index.html",
            "tdxedu lessons",
            nav,
            "",
            pages,
        ),
    )
    for les in lessons:
        nb = nbformat.read(les.path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = rewrite_markdown(cell.source, pages, tags)
        write(
            f"{les.name}.html",
            _render(exporter, nb, f"{les.name}.html", les.label, nav, live_banner(les.name), pages),
        )
    for md, page, label in DOC_PAGES:
        if (docs / md).is_file():
            text = rewrite_markdown((docs / md).read_text(encoding="utf-8"), pages, tags)
            write(
                page,
                _render(
                    exporter,
                    _markdown_notebook(text),
                    page,
                    f"tdxedu: {label}",
                    nav,
                    live_banner(None),
                    pages,
                ),
            )
    log(
        f"site: {len(written)} pages ({len(lessons)} lessons) in {out} "
        f"in {time.monotonic() - t0:.1f} s"
    )
    return written


def main(argv: list[str]) -> int:
    out = Path(argv[0]).resolve() if argv else OUT
    try:
        build(out)
    except SiteError as exc:
        print(f"site: {exc}", file=sys.stderr)
        return 1
    print(f"open {out / 'index.html'} (or serve it: python3 -m http.server -d {out})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main(sys.argv[1:]))
