"""dev.py's first run: the install announces itself, how long it takes, and lets pip print
its progress (it is not a silent ~90 s wait)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _dev():
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_first_run_install_says_what_it_does_and_shows_pip_progress(tmp_path, monkeypatch, capsys):
    dev = _dev()
    calls = []
    monkeypatch.setattr(dev, "_venv_works", lambda: True)
    monkeypatch.setattr(dev, "STAMP", tmp_path / "stamp")  # no stamp: a first run
    monkeypatch.setattr(dev, "run", lambda cmd, **kw: calls.append(
        (cmd, capsys.readouterr().out)) or 0)
    dev.ensure_venv()
    (cmd, said_before), = calls
    assert "first run" in said_before and "about 2 minutes" in said_before
    assert "pip" in map(str, cmd) and not {"-q", "--quiet"} & set(map(str, cmd))
    assert "installed in" in capsys.readouterr().out
    calls.clear()
    dev.ensure_venv()  # stamp up to date: no install, no message
    assert not calls and capsys.readouterr().out == ""
