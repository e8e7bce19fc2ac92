import json
import re

from tdxedu.cli import main


def test_explore_list_and_json(capsys):
    assert main(["explore", "--list"]) == 0
    out = capsys.readouterr().out
    assert "hkid-release-v19-notifier" in out and "vcpu-migration" in out
    assert main(["explore", "busy-accept-no-retry", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["verdicts"]["kvm_bug"]["verdict"] == "sometimes"
    assert d["verdicts"]["kvm_bug"]["witness"]["trace"]


def test_explore_prints_readable_trace(capsys):
    assert main(["explore", "hkid-release-v19-notifier"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"hkid_leaked +sometimes", out)
    assert "tdh_mng_vpflushdone(0x1000) -> TDX_FLUSHVP_NOT_DONE" in out


def test_explore_unknown_scenario(capsys):
    assert main(["explore", "nope"]) == 2
    assert "explore --list" in capsys.readouterr().err
