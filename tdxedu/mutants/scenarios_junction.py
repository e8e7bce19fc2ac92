"""A TD whose private memory is managed through the TDP MMU's mirror root
(`tdxedu.kvm.mirror`): the junction where a mirror-root change drives the S-EPT.

* ``td-mirror``: vCPU 0 faults a new private GFN in through `kvm_tdp_mmu_map` on the mirror
  root (SEPT.ADD + PAGE.AUG through the external hooks), then the TD is torn down: guest_memfd
  invalidation zaps the mirror leaves (`remove_external_spte`) and `kvm_mmu_uninit_tdp_mmu`
  zaps the mirror root (`free_external_spt` reclaims each S-EPT page).
"""

from __future__ import annotations

from ..kvm.mirror import tdx_attach_tdp_mmu
from ..kvm.tdp_mmu import RET_PF_FIXED, kvm_tdp_mmu_map
from ..kvm.tdp_mmu_invariants import tdp_mmu_invariants
from ..trace import WaitUntil
from .scenarios import Config, TeardownWorld, _mutate, factory


class TdMirrorWorld(TeardownWorld):
    def __init__(self, cfg: Config):
        super().__init__(cfg.teardown_policy, vcpus=1, pages=1)
        tdx_attach_tdp_mmu(self.td)
        self.trace.events.clear()

    def actors(self):
        v = self.kvm.vcpus[0]

        def fault():
            while (yield from kvm_tdp_mmu_map(v, 1)) != RET_PF_FIXED:
                pass
            self.done.add("fault")

        def closer():
            yield WaitUntil(lambda: "fault" in self.done, "the fault is handled")
            yield from self.td.teardown_steps(self.strategy)

        return {"vcpu0": fault(), "close": closer()}

    def invariants(self) -> list[str]:
        return super().invariants() + tdp_mmu_invariants(self.kvm)


@factory("td-mirror", "a TD through the TDP MMU mirror root: a private fault, then teardown "
         "(leaf zaps and the mirror root's zap drive S-EPT removal)",
         uses=("teardown_policy",), correct={"teardown_policy": ("v6.16",)})
def _td_mirror(cfg: Config):
    return _mutate(TdMirrorWorld(cfg), cfg)
