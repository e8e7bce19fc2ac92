"""The `tdxedu` console script: help, argument handling (`tdxedu lab`: tests/test_lab.py)."""

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


def test_unknown_arguments_rejected_for_non_passthrough(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--bogus"])
    assert exc.value.code == 2


def test_python_dash_m_tdxedu_works():
    r = subprocess.run(
        [sys.executable, "-m", "tdxedu", "--version"], capture_output=True, text=True, check=True
    )
    assert r.stdout.startswith("tdxedu ")
