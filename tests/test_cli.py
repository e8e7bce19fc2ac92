"""The `tdxedu` console script: help, lab command line, missing notebooks folder."""

import subprocess
import sys
from pathlib import Path

import pytest

from tdxedu import cli

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_subcommands_with_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "lab" in out and "examples:" in out and "tdxedu lab --no-browser" in out


def test_lab_opens_the_tour_and_forwards_args(tmp_path):
    (tmp_path / "00_tour.ipynb").write_text("{}")
    cmd = cli.lab_command(tmp_path, ["--no-browser", "--port", "8899"])
    assert cmd[1:3] == ["-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={tmp_path}" in cmd
    assert cmd[-4:] == ["--no-browser", "--port", "8899", str(tmp_path / "00_tour.ipynb")]
    (tmp_path / "00_tour.ipynb").write_text("{}")
    assert cli.lab_command(tmp_path)[-1] == str(tmp_path / "00_tour.ipynb")


def test_lab_dry_run_in_the_source_checkout(capsys):
    assert cli.main(["lab", "--dry-run", "--no-browser"]) == 0
    out = capsys.readouterr().out
    assert "jupyterlab" in out and str(ROOT / "notebooks") in out and "--no-browser" in out


def test_lab_without_notebooks_folder_exits_2(tmp_path, capsys):
    assert cli.main(["lab", "--notebooks", str(tmp_path / "missing")]) == 2
    assert "cannot find the lessons folder" in capsys.readouterr().err


def test_unknown_arguments_rejected_for_non_passthrough(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--bogus"])
    assert exc.value.code == 2


def test_python_dash_m_tdxedu_works():
    r = subprocess.run(
        [sys.executable, "-m", "tdxedu", "--version"], capture_output=True, text=True, check=True
    )
    assert r.stdout.startswith("tdxedu ")
