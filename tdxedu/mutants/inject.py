"""The fault sweep: every SEAMCALL a KVM flow issues, failed in turn with each status of a
small set (BUSY, an operand error, and the leaf's own "not an error" statuses), on hosts that
vary what hardware varies (one or two packages, CACHE.WB interrupted N times), under each
kernel KVM models (`KvmTdx(kernel=...)`), in the spirit of the kernel's fail_* framework
(`tdxedu.tdx.fault_inject`).

What it checks is what must hold whatever KVM's reaction (the per-site reaction itself is
docs/conformance.md section 5, checked by tests/kvm/test_kvm_reactions.py): no Python
exception, the module's invariants and the allocator's rules hold, no lockdep report, and
nothing is lost silently: after the teardown every page still allocated is on KVM's `leaked`
list with its reason, and an HKID still assigned was reported (a KVM_BUG_ON or
`hkid_leaked`). Flows: a runtime zap of one page (BLOCK, TRACK, REMOVE, WBINVD) and the whole
teardown, for each teardown policy that models real behaviour."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from ..scenarios.td import RunningTd
from ..tdx import status as st
from ..tdx.fault_inject import inject

STATUSES = (st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_SEPT,
            st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RCX)
#: statuses a leaf returns that are not failures KVM must survive but answers it must give
LEAF_STATUSES = {"tdh_phymem_cache_wb": (st.TDX_INTERRUPTED_RESUMABLE,
                                         st.TDX_NO_HKID_READY_TO_WBCACHE),
                 "tdh_vp_flush": (st.TDX_VCPU_NOT_ASSOCIATED,)}
STRATEGIES = ("v6.16", "terminate-vm", "flush-at-vcpu-free")
HOSTS = ({"packages": 1, "cache_wb_rounds": 1}, {"packages": 2, "cache_wb_rounds": 3})


@dataclass
class SweepRun:
    kernel: str
    strategy: str
    host: dict
    leaf: str
    status: str
    nth: int
    hit: bool
    problems: list[str]


def _build(kernel: str, host: dict, mutations=()) -> RunningTd:
    td = RunningTd(memory=3 * 4096, vcpus=2, packages=host["packages"], cpus_per_package=2,
                   kernel=kernel)
    td.host.module.cache_wb_rounds = host["cache_wb_rounds"]
    td.kt.mutations = set(mutations)  # a known-bad variant (tdxedu.mutants), or none
    return td


def _life(td: RunningTd, strategy: str):
    """A runtime zap of page 1 (mmu_lock held for write), then the teardown."""
    from ..kvm.tdx import tdx_sept_remove_private_spte

    kvm = td.kvm

    def zap():
        yield from kvm.mmu_lock.write_lock("zap")
        try:
            yield from tdx_sept_remove_private_spte(kvm, 0x1000, 0)
        finally:
            kvm.mmu_lock.write_unlock("zap")

    td._run_alone(zap())
    return td.teardown(strategy)


def _problems(td: RunningTd) -> list[str]:
    kt = td.kt
    out = list(td.host.module.check_invariants()) + list(td.host.allocator.errors)
    out += list(td.host.debug_errors)
    silent = set(td.host.allocator.allocated) - {pa for pa, _ in kt.leaked}
    if silent:
        out.append(f"silent leak: pages {', '.join(hex(p) for p in sorted(silent))} still "
                   "allocated and not on KVM's leaked list")
    if kt.hkid_assigned and not (kt.hkid_leaked or td.kvm.vm_bugged):
        out.append(f"HKID {kt.hkid} still assigned and never reported")
    return out


def leaf_calls(kernel: str, strategy: str, host: dict) -> dict[str, int]:
    """How many times each leaf runs in the flow (the sites to fail)."""
    td = _build(kernel, host)
    before = dict(td.host.module.counts)
    _life(td, strategy)
    return {k: v - before.get(k, 0) for k, v in td.host.module.counts.items()
            if v - before.get(k, 0)}


def fault_sweep(kernels=("v6.16", "v6.19"), strategies=STRATEGIES, hosts=HOSTS, *,
                mutations=(), leaves=None):
    """Yield a `SweepRun` per (kernel, strategy, host, leaf, status, nth); `mutations` runs a
    known-bad KVM instead, `leaves` limits the sites."""
    for kernel in kernels:
        for strategy in strategies:
            for host in hosts:
                for leaf, n in sorted(leaf_calls(kernel, strategy, host).items()):
                    if leaves is not None and leaf not in leaves:
                        continue
                    for status in STATUSES + LEAF_STATUSES.get(leaf, ()):
                        for nth in range(1, n + 1):
                            td = _build(kernel, host, mutations)
                            f = inject(td.host.module, leaf, status, nth=nth)
                            try:
                                _life(td, strategy)
                                probs = _problems(td)
                            except Exception:  # noqa: BLE001 - a model defect, reported
                                probs = ["exception: " + traceback.format_exc(limit=4)]
                            yield SweepRun(kernel, strategy, dict(host), leaf, str(status), nth,
                                           bool(f.hits), probs)


__all__ = ["fault_sweep", "leaf_calls", "SweepRun", "STATUSES", "LEAF_STATUSES"]
