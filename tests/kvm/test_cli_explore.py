import json
import re

import pytest

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


def test_explore_counts_add_up_to_the_lines_shown(capsys):
    """The header's scheduler steps and events match the numbered lines under it."""
    assert main(["explore", "hkid-release-v19-notifier", "--trace", "kvm_bug"]) == 0
    out = capsys.readouterr().out
    block = out.split("shortest run where kvm_bug: ", 1)[1]
    head, *lines = block.strip().splitlines()
    steps, events = map(int, re.match(r"(\d+) scheduler steps, (\d+) events", head).groups())
    assert len({ln.split()[1] for ln in lines if ln.startswith("step ")}) == steps
    assert sum("(no event" not in ln for ln in lines) == events


@pytest.mark.parametrize("value", ["0", "-1"])
def test_explore_max_steps_below_one_is_refused(value, capsys):
    assert main(["explore", "busy-accept-no-retry", "--max-steps", value]) == 2
    assert f"at least 1, got {value}" in capsys.readouterr().err


def test_explore_list_is_words_not_dicts(capsys):
    assert main(["explore", "--list"]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "policy vcpu-cache, without the kernel's pamt_lock" in out


def test_explore_unknown_option_shows_the_explore_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["explore", "busy-accept-no-retry", "--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: tdxedu explore") and "unrecognized arguments: --bogus" in err


def test_explore_reduction_flag_same_verdicts_fewer_steps(capsys):
    """`--reduction stutter` answers as the merging does, and on the pre-merge BUSY retry loop
    (`_busy_without_kick`, [Y-RFC]) executes far fewer steps: every retry that gets
    TDX_OPERAND_BUSY again changes nothing and is a loop, not a new state."""
    out = {}
    for red in ("merge", "stutter"):
        assert main(["explore", "busy-accept-retry-loop", "--json", "--reduction", red]) == 0
        out[red] = json.loads(capsys.readouterr().out)
    assert out["stutter"]["reduction"] == "stutter"
    assert {c: v["verdict"] for c, v in out["stutter"]["verdicts"].items()} == {
        c: v["verdict"] for c, v in out["merge"]["verdicts"].items()}
    assert out["stutter"]["executions"] == out["merge"]["executions"]
    assert out["stutter"]["steps"] * 5 <= out["merge"]["steps"]


def test_explore_no_prune_contradicting_reduction_is_refused(capsys):
    assert main(["explore", "busy-accept-no-retry", "--no-prune", "--reduction", "stutter"]) == 2
    assert "--no-prune contradicts --reduction stutter" in capsys.readouterr().err
