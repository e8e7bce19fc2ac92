"""The junction of the TDP MMU and KVM's TDX glue: a TD's mirror root whose changes drive the
S-EPT through the `kvm_x86_ops` external-SPTE hooks, as in the kernel since the TDX MMU
series ([TDXPREP] [RE-P2]):

* `link_external_spt` / `set_external_spte` (a private fault through `kvm_tdp_mmu_map` on the
  mirror root): TDH.MEM.SEPT.ADD for each new table, TDH.MEM.PAGE.AUG for the leaf
  (`tdx_map_private_gfn`);
* `remove_external_spte` (a mirror leaf zapped, e.g. by guest_memfd invalidation):
  `tdx_sept_remove_private_spte` (BLOCK, TRACK, REMOVE, WBINVD, clear);
* `free_external_spt` (a mirror page table freed when the mirror root is zapped at
  `kvm_mmu_uninit_tdp_mmu`): `tdx_sept_free_private_spt` (RECLAIM after the HKID is gone).

`tdx_attach_tdp_mmu(td)` gives a built `RunningTd` a v6.16 TDP MMU whose mirror root holds
what the TD has mapped; from then on KVM's teardown (`tdxedu.kvm.teardown`) zaps through the
TDP MMU, so a bug on either side of the hooks can be expressed and caught.
"""

from __future__ import annotations

from ..tdx.sept import level_size
from ..trace import run_to_completion
from .tdp_mmu import kvm_mmu_create, kvm_mmu_init_tdp_mmu, kvm_mmu_load
from .tdx import tdx_map_private_gfn, tdx_sept_remove_private_spte, to_kvm_tdx

PAGE_SHIFT = 12


def _gpa(level: int, index: int) -> int:
    """The GPA a roots-model page table (level, gfn >> 9*level) covers, as the TDX glue keys
    its S-EPT pages ((level, GPA aligned to level_size(level)))."""
    return index << (9 * level + PAGE_SHIFT)


class TdxExternalOps:
    """`vt_x86_ops`' external-SPTE hooks for a TD, issued on CPU `cpu`."""

    def __init__(self, cpu: int = 0):
        self.cpu = cpu

    @staticmethod
    def mutations(kvm) -> set:
        return to_kvm_tdx(kvm).mutations

    def has_external_spt(self, kvm, level: int, index: int) -> bool:
        return (level, _gpa(level, index)) in to_kvm_tdx(kvm).sept_pages

    def map_external(self, kvm, gfn: int, vcpu):
        cpu = vcpu.cpu if vcpu is not None and vcpu.cpu >= 0 else self.cpu
        return (yield from tdx_map_private_gfn(kvm, gfn << PAGE_SHIFT, cpu, vcpu))

    def remove_external_spte(self, kvm, gfn: int):
        yield from tdx_sept_remove_private_spte(kvm, gfn << PAGE_SHIFT, self.cpu)

    def free_external_spt(self, kvm, level: int, index: int):
        from .teardown import tdx_sept_free_private_spt

        kt = to_kvm_tdx(kvm)
        key = (level, _gpa(level, index))
        if key in kt.sept_pages:
            yield from tdx_sept_free_private_spt(kt, key, self.cpu)


def tdx_attach_tdp_mmu(td, policy: str = "v6.16") -> None:
    """Give a built TD its TDP MMU: every vCPU loads its roots (mirror root first), and the
    mirror root takes over what KVM's TDX glue has mapped (S-EPT tables and private leaves)."""
    kvm, kt = td.kvm, td.kt
    kvm_mmu_init_tdp_mmu(kvm, policy, has_mirrored_tdp=True)
    for v in kvm.vcpus:
        kvm_mmu_create(v)
    saved, td.host.preempt = td.host.preempt, False
    try:
        for v in kvm.vcpus:
            run_to_completion(kvm_mmu_load(v))
    finally:
        td.host.preempt = saved
    mirror = kvm.vcpus[0].arch.mmu.mirror_root_hpa
    for level, gpa in kt.sept_pages:
        if level_size(level) != 1 << (9 * level + PAGE_SHIFT):
            raise ValueError(f"S-EPT level {level} does not match the TDP MMU's levels")
        mirror.sps.add((level, gpa >> (9 * level + PAGE_SHIFT)))
    kvm.arch.tdp_mmu_pages += len(mirror.sps)
    mirror.leafs.update(gpa >> PAGE_SHIFT for gpa in kt.mirror)
    kvm.arch.external_ops = TdxExternalOps()
