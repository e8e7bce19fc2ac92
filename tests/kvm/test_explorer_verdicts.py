"""Explorer verdicts for the KVM-side stories: BUSY handling ([Y4], [S20]), vCPU association
and HKID release ([K616], [M15])."""

import pytest

from tdxedu.scenarios.registry import get, load_all
from tdxedu.sim import explore, run_seeded


def verdicts(name, **kw):
    sc = get(name)
    kw.setdefault("max_steps", sc.max_steps)
    return explore(sc.build, name=name, **kw)


@pytest.mark.parametrize("story", ["busy-accept", "busy-zero-step"])
def test_no_retry_sometimes_bugs_kick_retry_once_never(story):
    """6.16's one retry after kicking every vCPU out (Yan Zhao, "Kick off vCPUs when SEAMCALL
    is busy during TD page removal") never hits KVM_BUG_ON; failing on the first BUSY can."""
    bad = verdicts(f"{story}-no-retry")
    good = verdicts(f"{story}-kick-retry-once")
    assert bad.verdict("kvm_bug") == "sometimes"
    assert good.verdict("kvm_bug") == "never"
    assert good.verdict("completed") == "always"
    w = bad.witness("kvm_bug")
    busy = [e for e in w.trace if e.status and e.status.startswith("TDX_OPERAND_BUSY")]
    assert busy and busy[0].op == "tdh_mem_range_block"
    want = "TDX_OPERAND_ID_SEPT" if story == "busy-zero-step" else "TDX_OPERAND_ID_RCX"
    assert want in busy[0].status


def test_retry_loop_can_spin_while_a_vcpu_holds_the_tree():
    """The pre-merge loop never gives up: an unfair schedule keeps it spinning (step bound)."""
    ex = verdicts("busy-zero-step-retry-loop", max_steps=40)
    assert ex.verdict("kvm_bug") == "never"
    assert ex.verdict("step_bound") == "sometimes"


def test_v19_notifier_sometimes_leaks_the_hkid_v616_never():
    """[K-Mar24] [SC-Apr24]: releasing the HKID from the MMU-notifier path races with a vCPU
    entering again; VPFLUSHDONE then returns TDX_FLUSHVP_NOT_DONE and the HKID leaks."""
    v19 = verdicts("hkid-release-v19-notifier")
    assert v19.verdict("hkid_leaked") == "sometimes"
    w = v19.witness("hkid_leaked")
    statuses = [e.status for e in w.trace if e.op == "tdh_mng_vpflushdone"]
    assert statuses == ["TDX_FLUSHVP_NOT_DONE"]
    ops = [e.op for e in w.trace]
    assert ops.index("tdh_vp_flush") < ops.index("tdh_vp_enter") < ops.index(
        "tdh_mng_vpflushdone")
    for policy in ("v6.16", "terminate-vm", "flush-at-vcpu-free"):
        ex = verdicts(f"hkid-release-{policy}")
        assert ex.verdict("hkid_leaked") == "never", policy
        assert ex.verdict("pages_leaked") == "never", policy
        assert ex.verdict("completed") == "always", policy


def test_migrating_vcpu_is_always_flushed_on_the_old_cpu_first():
    """tdx_vcpu_load ([K616]): the old pCPU runs TDH.VP.FLUSH before the
    vCPU can enter on the new one, so VP.ENTER never sees TDX_VCPU_ASSOCIATED."""
    ex = verdicts("vcpu-migration")
    assert ex.verdict("flushed_before_migrating") == "always"
    assert ex.verdict("vp_enter_vcpu_associated") == "never"
    assert ex.verdict("completed") == "always"


@pytest.mark.parametrize("name", ["busy-accept-no-retry", "hkid-release-v6.16",
                                  "busy-zero-step-kick-retry-once"])
def test_pruning_keeps_the_verdicts(name):
    pruned = verdicts(name)
    full = verdicts(name, prune=False)
    assert {c: v.verdict for c, v in pruned.verdicts.items()} == {
        c: v.verdict for c, v in full.verdicts.items()}
    assert pruned.executions * 10 <= full.executions  # the pruning target: 10x fewer executions
    for c, v in full.verdicts.items():  # still the shortest witnesses
        w = pruned.verdicts[c].witness
        assert (w is None) == (v.witness is None) and (w is None or len(w) == len(v.witness))


def test_same_seed_same_trace_byte_for_byte():
    build = get("vcpu-migration").build
    a = run_seeded(build, 7).trace.to_json()
    b = run_seeded(build, 7).trace.to_json()
    assert a == b
    others = {run_seeded(build, s).trace.to_json() for s in range(8)}
    assert len(others) > 1  # seeds do choose different interleavings


def test_every_scenario_is_registered_with_a_description():
    sc = load_all()
    for name in ("busy-accept-no-retry", "busy-zero-step-kick-retry-once",
                 "hkid-release-v19-notifier", "vcpu-migration"):
        assert name in sc and sc[name].description
    with pytest.raises(ValueError, match="known:"):
        get("no-such-scenario")


def test_terminate_vm_waits_for_the_vcpu_and_keeps_it_out():
    """KVM_TDX_TERMINATE_VM ([TERM-V5]): trylocks every vCPU mutex (-EBUSY while a
    vCPU is in KVM_RUN), marks the VM dead, releases the HKID; no vCPU enters afterwards and
    nothing leaks, in every interleaving."""
    ex = verdicts("hkid-release-terminate-vm")
    assert ex.verdict("entered_after_vm_dead") == "never"
    assert ex.verdict("hkid_leaked") == "never" and ex.verdict("kvm_bug") == "never"
    assert ex.verdict("completed") == "always"
    assert ex.verdict("vp_enter_failed") == "never"
