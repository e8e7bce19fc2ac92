"""The known-bad catalogue is big and varied enough to mean something: at least 50 variants,
new ones for each gap a reviewer would miss (lock modes [K616-TDX] [S-TDX], RCU and lockless
walkers [S-TDX], failure paths and hardware variation [K616-TDX], two-vCPU worlds), each caught
by a *named* check that `check-mutants --json` reports, never only by a step bound or a Python
exception; the correct policies raise no alarm in the same worlds."""

from __future__ import annotations

import json

import pytest

from tdxedu.cli import main
from tdxedu.mutants import catalogue
from tdxedu.mutants.scenarios import FACTORIES

MIN_VARIANTS = 50


def test_at_least_fifty_variants():
    assert len(catalogue()) >= MIN_VARIANTS


def test_every_gap_has_new_variants():
    fams: dict[str, list[str]] = {}
    for m in catalogue().values():
        fams.setdefault(m.family, []).append(m.name)
    assert len(fams.get("lockdep", ())) >= 4  # lock-mode assertions
    assert len(fams.get("rcu", ())) >= 4  # lockless walkers, grace periods, rcu_barrier
    assert len(fams.get("faults", ())) >= 4  # injected SEAMCALL failures, hardware variation
    # worlds with two vCPUs where the bug needs two (and a variant that only they show)
    two = [n for n, f in FACTORIES.items() if n in ("zap-running-2", "zap-zero-step-2")]
    assert len(two) == 2
    assert "zap-running-2" in catalogue()["track-kick-first-vcpu-only"].scenarios


@pytest.fixture(scope="module")
def report():
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["check-mutants", "--json"])
    return rc, json.loads(buf.getvalue())


def test_json_names_the_check_that_caught_each_variant(report):
    rc, d = report
    assert rc == 0 and d["summary"]["ok"], d["summary"]
    assert d["summary"]["false_alarms"] == 0 and d["summary"]["mutants"] == len(catalogue())
    for m in d["mutants"]:
        by = m["caught_by"]
        assert by is not None, f"{m['name']} escaped (or only a step bound / exception)"
        assert by["check"] and by["condition"] not in ("step_bound", "exception"), m["name"]
        assert m["expected_catch_seen"], (m["name"], m["expected_catch"], by)
    checks = {m["caught_by"]["check"] for m in d["mutants"]}
    assert {"lockdep", "rcu", "softlockup", "seamcall_leaked", "kvm_bug", "hkid_leaked"} <= checks
