"""`tdxedu lab` (tdxedu/lab.py): the learner's workspace of lesson copies.

Checks what a learner relies on: the shipped lessons are copied, never overwritten and
never edited in place; `--reset` restores a pristine copy and keeps the old one; unedited
copies are signed so JupyterLab draws their saved widget state (nbformat NotebookNotary,
as `jupyter trust`); the workspace's own JupyterLab config turns off the news toast and
jupytext's pairing; `--dry-run` changes nothing. The browser test (tests/browser) checks
the same launch in a real JupyterLab.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.sign import NotebookNotary

from tdxedu import cli, lab

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture()
def source(tmp_path) -> Path:
    """Three small shipped lessons (real notebooks, so they can be signed)."""
    src = tmp_path / "shipped"
    src.mkdir()
    for name in ("00_tour.ipynb", "01_seamcalls_and_lifecycle.ipynb", "03_operand_busy.ipynb"):
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_markdown_cell(f"# {name}"))
        nbformat.write(nb, src / name)
    (src / "00_tour.py").write_text("# jupytext twin: not a lesson copy\n")
    return src


@pytest.fixture(autouse=True)
def jupyter_dirs(tmp_path, monkeypatch):
    """Signatures go to a private Jupyter data dir, never the developer's."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))
    monkeypatch.delenv("TDXEDU_WORKSPACE", raising=False)
    monkeypatch.delenv("TDXEDU_NOTEBOOKS", raising=False)
    return tmp_path / "jupyter-data"


def _trusted(path: Path) -> bool:
    return NotebookNotary().check_signature(nbformat.read(path, as_version=4))


def _edit(path: Path, text: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(text))
    nbformat.write(nb, path)


def test_the_source_checkout_lessons_are_found():
    assert lab.find_lessons() == ROOT / "notebooks"
    assert lab.lesson_names(lab.find_lessons()) == LESSONS and len(LESSONS) == 7


def test_a_folder_without_lessons_is_refused(tmp_path):
    with pytest.raises(lab.LabError, match="cannot find the lessons folder"):
        lab.find_lessons(tmp_path)


def test_first_launch_copies_only_the_notebooks_signs_them_and_writes_config(source, tmp_path):
    ws = tmp_path / "ws"
    plan = lab.make_plan(source, ws, extra=["--no-browser"])
    assert plan.copy == plan.trust == lab.lesson_names(source)
    lab.apply(plan)
    assert sorted(p.name for p in ws.iterdir()) == [".tdxedu", *lab.lesson_names(source)]
    for name in plan.copy:
        assert (ws / name).read_bytes() == (source / name).read_bytes()
        assert _trusted(ws / name), f"{name} not signed: JupyterLab would draw widgets as text"
    page = json.loads((ws / ".tdxedu/jupyter/labconfig/page_config.json").read_text())
    assert page["disabledExtensions"] == {"@jupyterlab/apputils-extension:announcements": True}
    server = json.loads((ws / ".tdxedu/jupyter/jupyter_server_config.json").read_text())
    assert server["ServerApp"]["jpserver_extensions"] == {"jupyterlab_jupytext": False}
    # The server sees the workspace config first, for this launch only.
    env = plan.env({"JUPYTER_CONFIG_PATH": "/elsewhere"})
    assert env["JUPYTER_CONFIG_PATH"].split(":") == [str(ws / ".tdxedu/jupyter"), "/elsewhere"]
    assert plan.command[1:3] == ["-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={ws}" in plan.command
    assert plan.command[-2:] == ["--no-browser", str(ws / "00_tour.ipynb")]


def test_the_learners_edits_are_kept_and_the_shipped_lesson_untouched(source, tmp_path):
    ws = tmp_path / "ws"
    lab.apply(lab.make_plan(source, ws))
    shipped = (source / "03_operand_busy.ipynb").read_bytes()
    _edit(ws / "03_operand_busy.ipynb", "my_answer = 42")
    mine = (ws / "03_operand_busy.ipynb").read_bytes()
    (ws / "00_tour.ipynb").unlink()  # a deleted copy comes back

    plan = lab.make_plan(source, ws)
    assert plan.kept == ["03_operand_busy.ipynb"] and plan.copy == ["00_tour.ipynb"]
    assert "03_operand_busy.ipynb" not in plan.trust  # a changed notebook is not re-signed
    lab.apply(plan)
    assert (ws / "03_operand_busy.ipynb").read_bytes() == mine
    assert (source / "03_operand_busy.ipynb").read_bytes() == shipped
    assert not _trusted(ws / "03_operand_busy.ipynb")
    assert "your edited 03_operand_busy.ipynb" in "\n".join(plan.describe())


def test_reset_restores_a_pristine_copy_and_keeps_the_old_one(source, tmp_path):
    ws = tmp_path / "ws"
    lab.apply(lab.make_plan(source, ws))
    _edit(ws / "03_operand_busy.ipynb", "my_answer = 42")
    mine = (ws / "03_operand_busy.ipynb").read_bytes()

    plan = lab.make_plan(source, ws, reset=["3"], stamp="20260101-120000")
    backup = ws / "backups" / "03_operand_busy-20260101-120000.ipynb"
    assert plan.reset == [("03_operand_busy.ipynb", backup)] and not plan.kept
    lab.apply(plan)
    assert (ws / "03_operand_busy.ipynb").read_bytes() == (source / "03_operand_busy.ipynb"
                                                           ).read_bytes()
    assert _trusted(ws / "03_operand_busy.ipynb")
    assert backup.read_bytes() == mine

    # A second reset in the same second does not overwrite the first backup.
    _edit(ws / "03_operand_busy.ipynb", "second try")
    lab.apply(lab.make_plan(source, ws, reset=["03_operand_busy"], stamp="20260101-120000"))
    assert backup.read_bytes() == mine
    assert (ws / "backups" / "03_operand_busy-20260101-120000-2.ipynb").exists()


def test_reset_all_and_lesson_names(source, tmp_path):
    names = lab.lesson_names(source)
    assert lab.match_lessons(names, ["all"]) == names
    assert lab.match_lessons(names, ["01", "00_tour.ipynb", "1"]) == names[1::-1]
    with pytest.raises(lab.LabError, match='no lesson "7". The lessons are 00_tour, '):
        lab.match_lessons(names, ["7"])
    ws = tmp_path / "ws"
    lab.apply(lab.make_plan(source, ws))
    for name in names:
        _edit(ws / name, "x = 1")
    plan = lab.make_plan(source, ws, reset=["all"])
    assert [n for n, _ in plan.reset] == names


def test_the_workspace_is_never_the_shipped_folder(source):
    with pytest.raises(lab.LabError, match="is the shipped lessons folder"):
        lab.make_plan(source, source)


def test_dry_run_changes_nothing(source, tmp_path, capsys):
    ws = tmp_path / "ws"
    rc = cli.main(["lab", "--notebooks", str(source), "--workspace", str(ws), "--dry-run",
                   "--reset", "all", "--no-browser"])
    out = capsys.readouterr().out
    assert rc == 0 and not ws.exists()
    assert "nothing is changed" in out and "copy  00_tour.ipynb" in out
    assert "jupyterlab" in out and "--no-browser" in out


def test_cli_errors_are_one_line_and_exit_2(source, tmp_path, capsys):
    assert cli.main(["lab", "--notebooks", str(tmp_path / "missing"), "--dry-run"]) == 2
    assert "cannot find the lessons folder" in capsys.readouterr().err
    assert cli.main(["lab", "--notebooks", str(source), "--workspace", str(tmp_path / "ws"),
                     "--reset", "banana", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith('tdxedu: --reset: no lesson "banana"') and "Traceback" not in err


def test_default_workspace_is_in_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert lab.find_workspace() == tmp_path / "tdxedu-lessons"
    monkeypatch.setenv("TDXEDU_WORKSPACE", str(tmp_path / "course"))
    assert lab.find_workspace() == tmp_path / "course"


def test_the_shipped_lessons_are_signable_as_copied(tmp_path):
    """The real lessons: a copy is byte-identical, so it is trusted (widgets draw)."""
    ws = tmp_path / "ws"
    plan = lab.make_plan(ROOT / "notebooks", ws)
    shutil.copytree(ROOT / "notebooks", tmp_path / "before")
    lab.apply(plan)
    assert all(_trusted(ws / n) for n in LESSONS)
    for n in LESSONS:  # signing the copies leaves the shipped files alone
        assert (ROOT / "notebooks" / n).read_bytes() == (tmp_path / "before" / n).read_bytes()


def test_without_jupyterlab_the_learner_is_told_what_to_install(source, tmp_path, capsys,
                                                                monkeypatch):
    real = lab.importlib.util.find_spec
    monkeypatch.setattr(lab.importlib.util, "find_spec",
                        lambda name, *a: None if name == "jupyterlab" else real(name, *a))
    ws = tmp_path / "ws"
    assert cli.main(["lab", "--notebooks", str(source), "--workspace", str(ws)]) == 2
    assert "pip install 'tdxedu[lab]'" in capsys.readouterr().err
    assert not ws.exists()
