"""`tdxedu lab`: the learner's own copy of the lessons, opened in JupyterLab.

The shipped lessons (``tdxedu/notebooks/`` in an installed wheel, ``notebooks/`` in a source
checkout) are never opened directly: JupyterLab autosaves, and a saved run replaces the
lesson's widget state with models that only lived in that kernel. So the lessons are copied
into a workspace (``~/tdxedu-lessons`` by default), copies the learner already has are kept,
and ``--reset LESSON`` puts a fresh copy back (the old one moves to ``backups/``).

Copies identical to a shipped lesson are signed (nbformat's ``NotebookNotary``, what
``jupyter trust`` does): JupyterLab draws the saved widget pictures only in a trusted
notebook. The workspace carries its own JupyterLab page config (``.tdxedu/jupyter``, put on
``JUPYTER_CONFIG_PATH`` for this server only) that turns the news toast off, and jupytext's
pairing (it would add a ``.py`` twin beside every lesson the learner saves).
"""

from __future__ import annotations

import filecmp
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PACKAGED_LESSONS = PACKAGE / "notebooks"  # where a wheel puts them (see setup.py)
CHECKOUT_LESSONS = PACKAGE.parent / "notebooks"  # a source checkout
DEFAULT_WORKSPACE = Path("~/tdxedu-lessons")
TOUR = "00_tour.ipynb"  # opened at start-up
BACKUPS = "backups"
CONFIG_DIR = Path(".tdxedu") / "jupyter"  # hidden: the file browser does not list it
# JupyterLab plugins a learner does not need: "get notified about Jupyter news?" covers the
# lesson on first start.
DISABLED_PLUGINS = ("@jupyterlab/apputils-extension:announcements",)
# Server extensions a learner does not need: jupytext would write a paired .py twin beside
# every lesson saved (the shipped lessons carry the pairing for their authors).
DISABLED_SERVER_EXTENSIONS = ("jupyterlab_jupytext",)
# JupyterLab options for every launch: no "a newer JupyterLab is out" notice either.
LAB_OPTIONS = ("--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",)


class LabError(Exception):
    """A problem the learner can fix (printed without a traceback)."""


def find_lessons(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The shipped lessons: --notebooks DIR, $TDXEDU_NOTEBOOKS, the installed package data,
    or notebooks/ of the source checkout."""
    given = explicit or os.environ.get("TDXEDU_NOTEBOOKS")
    candidates = [Path(given)] if given else [PACKAGED_LESSONS, CHECKOUT_LESSONS]
    for c in candidates:
        if c.is_dir() and any(c.glob("*.ipynb")):
            return c.resolve()
    where = given or f"{PACKAGED_LESSONS} or {CHECKOUT_LESSONS}"
    raise LabError(
        f"cannot find the lessons folder ({where} has no .ipynb lesson). Reinstall tdxedu, "
        "or pass --notebooks DIR."
    )


def find_workspace(explicit: str | os.PathLike[str] | None = None) -> Path:
    given = explicit or os.environ.get("TDXEDU_WORKSPACE") or DEFAULT_WORKSPACE
    return Path(given).expanduser().resolve()


def lesson_names(source: Path) -> list[str]:
    return sorted(p.name for p in source.glob("*.ipynb"))


def match_lessons(names: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """Lessons named by `wanted`: "all", a file name, its stem, or its number ("03", "3")."""
    chosen: list[str] = []
    for w in wanted:
        if w == "all":
            return list(names)
        key = w.removesuffix(".ipynb")
        hits = [n for n in names if n.removesuffix(".ipynb") == key]
        if not hits and key.isdigit():
            hits = [n for n in names if n.split("_", 1)[0].lstrip("0") == key.lstrip("0")]
        if len(hits) != 1:
            known = ", ".join(n.removesuffix(".ipynb") for n in names)
            raise LabError(f'--reset: no lesson "{w}". The lessons are {known}, or all.')
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return chosen


@dataclass
class Plan:
    """What `tdxedu lab` does before JupyterLab starts (printed by --dry-run)."""

    source: Path
    workspace: Path
    copy: list[str] = field(default_factory=list)  # new in the workspace
    reset: list[tuple[str, Path]] = field(default_factory=list)  # (lesson, backup of old copy)
    kept: list[str] = field(default_factory=list)  # the learner's edited copies
    trust: list[str] = field(default_factory=list)  # identical to the shipped lesson
    command: list[str] = field(default_factory=list)

    @property
    def config_dir(self) -> Path:
        return self.workspace / CONFIG_DIR

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The server's environment: the workspace config first on JUPYTER_CONFIG_PATH."""
        env = dict(os.environ if base is None else base)
        rest = env.get("JUPYTER_CONFIG_PATH")
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(filter(None, [str(self.config_dir), rest]))
        return env

    def describe(self) -> list[str]:
        lines = [f"lessons:   {self.source}", f"workspace: {self.workspace}"]
        lines += [f"  copy  {n}" for n in self.copy]
        lines += [f"  reset {n} (your copy is kept as {b.relative_to(self.workspace)})"
                  for n, b in self.reset]
        if self.kept:
            lines.append(f"  keep  your edited {', '.join(self.kept)} "
                         "(`tdxedu lab --reset LESSON` gives a fresh copy)")
        lines.append(f"  trust {len(self.trust)} unedited lesson(s), so their saved widgets draw")
        lines.append(f"  config {self.config_dir / 'labconfig' / 'page_config.json'} "
                     "(Jupyter news toast off)")
        lines.append(f"  config {self.config_dir / 'jupyter_server_config.json'} "
                     "(no jupytext .py twins)")
        lines.append("  run   " + " ".join(self.command))
        return lines


def _backup_path(workspace: Path, name: str, stamp: str) -> Path:
    stem = name.removesuffix(".ipynb")
    path = workspace / BACKUPS / f"{stem}-{stamp}.ipynb"
    n = 1
    while path.exists():
        n += 1
        path = workspace / BACKUPS / f"{stem}-{stamp}-{n}.ipynb"
    return path


def make_plan(source: Path, workspace: Path, reset: Sequence[str] = (),
              extra: Sequence[str] = (), stamp: str | None = None) -> Plan:
    if workspace == source:
        raise LabError(f"the workspace {workspace} is the shipped lessons folder: pick another "
                       "with --workspace DIR (your copies go there)")
    names = lesson_names(source)
    plan = Plan(source, workspace)
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    to_reset = set(match_lessons(names, reset)) if reset else set()
    for name in names:
        ours, theirs = source / name, workspace / name
        if not theirs.exists():
            plan.copy.append(name)
        elif filecmp.cmp(ours, theirs, shallow=False):
            pass
        elif name in to_reset:
            plan.reset.append((name, _backup_path(workspace, name, stamp)))
        else:
            plan.kept.append(name)
            continue
        plan.trust.append(name)
    plan.command = lab_command(workspace, extra, TOUR if TOUR in names else None)
    return plan


def lab_command(workspace: Path, extra: Sequence[str] = (), open_first: str | None = TOUR
                ) -> list[str]:
    """The JupyterLab command line (separate so tests can check it)."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={workspace}", *LAB_OPTIONS]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")  # containers and CI machines often run as root
    cmd.extend(extra)
    if open_first:
        cmd.append(str(workspace / open_first))  # JupyterLab opens it at start-up
    return cmd


def require_jupyterlab() -> None:
    if importlib.util.find_spec("jupyterlab") is None:
        raise LabError(f"JupyterLab is not installed for {sys.executable}: "
                       "pip install 'tdxedu[lab]'")


def write_config(config_dir: Path) -> None:
    labconfig = config_dir / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    page_config = {"disabledExtensions": {name: True for name in DISABLED_PLUGINS}}
    (labconfig / "page_config.json").write_text(json.dumps(page_config, indent=1) + "\n")
    server = {"ServerApp": {"jpserver_extensions": dict.fromkeys(DISABLED_SERVER_EXTENSIONS,
                                                                 False)}}
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(server, indent=1) + "\n")


def trust(paths: Sequence[Path]) -> None:
    """Sign notebooks as `jupyter trust` does (signatures live in the Jupyter data dir)."""
    import nbformat
    from nbformat.sign import NotebookNotary

    notary = NotebookNotary()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if not notary.check_signature(nb):
            notary.sign(nb)


def apply(plan: Plan) -> None:
    """Copy, back up and reset lessons, write the workspace config, sign unedited lessons."""
    plan.workspace.mkdir(parents=True, exist_ok=True)
    for name, backup in plan.reset:
        backup.parent.mkdir(exist_ok=True)
        shutil.move(plan.workspace / name, backup)
    for name in [*plan.copy, *(n for n, _ in plan.reset)]:
        shutil.copyfile(plan.source / name, plan.workspace / name)
    write_config(plan.config_dir)
    trust([plan.workspace / n for n in plan.trust])
