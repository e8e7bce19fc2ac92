"""Every known-bad variant is caught, with a trace; the correct policies never raise
an alarm in the same scenarios. One explorer run of the whole catalogue (about 7 s)."""

from __future__ import annotations

import json

import pytest

from tdxedu.cli import main
from tdxedu.kvm.tdx import KvmTdx
from tdxedu.mutants import catalogue
from tdxedu.mutants.check import check_all, run_factory, summary, to_text
from tdxedu.mutants.scenarios import FACTORIES, Config


@pytest.fixture(scope="module")
def report():
    return check_all()


def test_every_mutant_is_caught_by_its_expected_alarm_with_a_trace(report):
    for r in report["mutants"]:
        assert r.caught, f"{r.mutant.name} escaped"
        assert r.expected_seen, (r.mutant.name, r.mutant.expected_catch,
                                 [(a.condition, a.detail) for s in r.runs for a in s.alarms])
        run, alarm = r.first()
        assert alarm.witness and run.trace, r.mutant.name


def test_correct_policies_raise_no_alarm(report):
    assert report["correct"], "the baseline ran"
    flagged = [(s.factory, s.config, [a.condition for a in s.alarms])
               for s in report["correct"] if s.alarms]
    assert not flagged
    assert all(s.complete for s in report["correct"])


def test_detection_rate_printed_is_100_percent(report):
    sm = summary(report)
    assert sm["detection_rate"] == 1.0 and sm["false_alarms"] == 0 and sm["ok"]
    assert sm["mutants"] >= 16  # the catalogue's first 11 + at least five more
    text = to_text(report)
    assert f"{sm['mutants']}/{sm['mutants']} mutants caught (100%)" in text
    assert "0 false alarms" in text


def test_catalogue_entries_have_sources_and_known_scenarios():
    cat = catalogue()
    for m in cat.values():
        assert m.source and m.description and m.scenarios, m.name
        assert all(s in FACTORIES for s in m.scenarios), m.name
        assert m.config, f"{m.name} changes nothing"
    for must in ("skip-track", "skip-vpflushdone", "v19-notifier", "vm-destroy-before-mmu-uninit",
                 "no-retry", "retry-loop-no-kick", "refcount-1-v6.4-put",
                 "put-without-invalid-check", "no-pamt-lock", "pamt-put-missing-on-removal",
                 "alloc-under-mmu-lock"):
        assert must in cat


def test_mutations_are_off_by_default():
    from tdxedu.scenarios import RunningTd

    td = RunningTd(memory=4096, vcpus=1)
    assert isinstance(td.kt, KvmTdx) and td.kt.mutations == set()


def test_a_mutant_flips_a_clean_scenario():
    """The same factory is clean without the mutation and flagged with it (the hook works)."""
    clean = run_factory("teardown", Config())
    bad = run_factory("teardown", Config(mutations=frozenset({"skip-cache-wb"})))
    assert not clean.alarms
    assert {a.condition for a in bad.alarms} >= {"kvm_bug", "hkid_leaked"}


def test_cli_subset_text_and_json(capsys):
    assert main(["check-mutants", "skip-track", "--no-baseline"]) == 0
    out = capsys.readouterr().out
    assert "CAUGHT  removal/skip-track" in out and "TDX_TLB_TRACKING_NOT_DONE" in out
    assert main(["check-mutants", "no-wbinvd-after-remove", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["summary"]["ok"] and d["mutants"][0]["caught_by"]["condition"] == \
        "invariant_violated"
    assert main(["check-mutants", "no-such-mutant"]) == 2
    assert main(["check-mutants", "--list"]) == 0
    assert "alloc-under-mmu-lock" in capsys.readouterr().out
