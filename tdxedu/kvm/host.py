"""The host machine KVM runs on: the TDX module, physical CPUs, the page allocator, the
host-wide TDX state in `arch/x86/kvm/vmx/tdx.c` (per-CPU `associated_tdvcpus` lists, the
global `tdx_lock` mutex serialising SEAMCALLs that take module-global locks, the TDX KeyID
allocator). One Host can run several VMs (Dynamic PAMT is a global resource).

`Host(dynamic_pamt=True)` configures the module with Dynamic PAMT and gives the host the
kernel's DPAMT state (`self.pamt`, `tdxedu.kvm.pamt.TdxPamt`: refcounts, `pamt_lock`, the
page-allocation policy `pamt_policy`); with the default static PAMT `self.pamt` is None and
no DPAMT code runs.
"""

from __future__ import annotations

from ..tdx import TdxModule
from ..tdx.td import KotState
from ..trace import PREEMPT, Trace
from .allocator import HostPageAllocator
from .locks import Mutex
from .pamt import TdxPamt

HKID_FREE = KotState.HKID_FREE


class Host:
    def __init__(self, *, memory: int = 64 << 20, num_packages: int = 1,
                 cpus_per_package: int = 4, trace: Trace | None = None,
                 fine_seamcalls: bool = False, dynamic_pamt: bool = False,
                 pamt_policy: str = "vcpu-cache", pamt_lock: bool = True,
                 x86_bug_tdx_pw_mce: bool = True, **module_kw):
        """`x86_bug_tdx_pw_mce`: the CPUs have the partial-write machine-check erratum
        (SPR, EMR: the TDX 1.5 platforms), so a page that held TD data must be reset with
        MOVDIR64B before the host reuses it ([AH-clear])."""
        self.trace = trace if trace is not None else Trace()
        self.debug_errors: list[str] = []  # lockdep / RCU checks that fired (kvm/locks.py)
        self.softlockups: list[str] = []  # soft-lockup watchdog reports (kvm/tdx.py)
        self.module = TdxModule(memory=memory, num_packages=num_packages,
                                lps_per_package=cpus_per_package, trace=self.trace,
                                dynamic_pamt=dynamic_pamt, **module_kw)
        self.pamt = (TdxPamt(self, policy=pamt_policy, use_lock=pamt_lock) if dynamic_pamt
                     else None)
        self.nr_cpus = self.module.num_lps
        self.x86_bug_tdx_pw_mce = x86_bug_tdx_pw_mce
        self.allocator = HostPageAllocator(self.module, pw_mce=x86_bug_tdx_pw_mce)
        self.associated_tdvcpus: list[list] = [[] for _ in range(self.nr_cpus)]
        self.cpu_online = [True] * self.nr_cpus
        self.vms: list = []  # every TD's struct kvm on this host (KvmTdx registers itself)
        self.hkid_owner: dict[int, str] = {}  # KeyIDs handed out, to whom
        self.tdx_lock = Mutex("tdx_lock", self.trace, self.debug_errors)
        self.pending_ipis = [0] * self.nr_cpus  # function-call IPIs not yet handled
        self.free_hkids = list(self.module.private_hkids)
        self.fine_seamcalls = fine_seamcalls
        # False while one thread runs a flow to its end (RunningTd's build and teardown): no
        # other actor can run, so a preemption point before each SEAMCALL would only cost time.
        self.preempt = True
        self.last_result: dict[int, object] = {}

    def tdx_guest_keyid_alloc(self, owner: str = "") -> int:
        """`tdx_guest_keyid_alloc` (the kernel's IDA of TDX private KeyIDs)."""
        if not self.free_hkids:
            return -1
        hkid = self.free_hkids.pop(0)
        self.hkid_owner[hkid] = owner
        return hkid

    def tdx_guest_keyid_free(self, hkid: int) -> None:
        self.hkid_owner.pop(hkid, None)
        self.free_hkids.append(hkid)
        self.free_hkids.sort()

    def one_cpu_per_package(self) -> list[int]:
        """The first *online* CPU of each package that has one (`tdx_mmu_release_hkid`
        builds its CACHE.WB mask from `for_each_online_cpu`, [K616])."""
        m = self.module
        out = []
        for p in range(m.num_packages):
            cpus = [c for c in range(p * m.lps_per_package, (p + 1) * m.lps_per_package)
                    if self.cpu_online[c]]
            if cpus:
                out.append(cpus[0])
        return out

    # --- invariants across every TD on the host ------------------------------------------
    def check_invariants(self) -> list[str]:
        """Host-wide invariants, each message starting with its id:

        * ``keyid-pool``: a KeyID in the kernel's free pool is HKID_FREE in the module's KOT,
          and every private KeyID is either in the pool or handed out (none lost) [M15]
          tdh_mng_key_freeid.c, [K616] tdx_hkid_free;
        * ``assoc-list``: each TD vCPU sits on exactly the `associated_tdvcpus` list of its
          `vcpu->cpu` (none if -1), and a vCPU the module associates with an LP is on that
          CPU's list, or no flush would ever reach it ([K616] tdx_vcpu_load,
          tdx_disassociate_vp, tdx_flush_vp);
        * ``might-sleep``: a path that may sleep ran with `mmu_lock` held (`Kvm.might_sleep`);
        * ``pamt-balance``: Dynamic PAMT references vs the pages the module holds;
        * ``assoc-offline``: no TD vCPU is associated with an offline CPU, and no package
          loses its last online CPU while a KeyID is configured ([K616] tdx_offline_cpu,
          tdx_disable_virtualization_cpu)."""
        out: list[str] = []
        m = self.module
        kot = m.kot
        for h in self.free_hkids:
            if kot.get(h, HKID_FREE) != HKID_FREE:
                out.append(f"keyid-pool: KeyID {h} is in the kernel's free pool but "
                           f"{kot[h].name} in the module's KOT")
            if h in self.hkid_owner:
                out.append(f"keyid-pool: KeyID {h} is in the free pool and held by "
                           f"{self.hkid_owner[h] or 'a TD'}")
        for h, owner in self.hkid_owner.items():
            if not any(kvm.name == owner and kvm.arch.tdx.hkid == h for kvm in self.vms):
                out.append(f"keyid-pool: KeyID {h} is still handed out to {owner}, which no "
                           "longer holds it (never given back to the pool)")
        if len(self.free_hkids) + len(self.hkid_owner) < len(m.private_hkids):
            free = set(self.free_hkids)
            lost = [h for h in m.private_hkids if h not in free and h not in self.hkid_owner]
            out += [f"keyid-pool: KeyID {h} lost (neither free nor handed out)" for h in lost]
        for kvm in self.vms:
            out += kvm.sleep_bugs
        on_list: dict[int, list[int]] = {}
        for cpu, vcpus in enumerate(self.associated_tdvcpus):
            for v in vcpus:
                on_list.setdefault(id(v), []).append(cpu)
        for kvm in self.vms:
            for v in kvm.vcpus:
                lists = on_list.get(id(v), [])
                want = [] if v.cpu == -1 else [v.cpu]
                if lists != want:
                    out.append(f"assoc-list: {kvm.name}/{v.name} has cpu={v.cpu} but is on "
                               f"the associated_tdvcpus list of CPU(s) {lists or 'none'}")
                vt = getattr(v.arch, "tdx", None)
                vp = m.vcpus.get(getattr(vt, "tdvpr_pa", 0) or -1)
                lp = getattr(vp, "assoc_lpid", -1)
                if vp is not None and lp is not None and lp >= 0:
                    if lp not in lists:
                        out.append(f"assoc-list: {kvm.name}/{v.name} is associated with LP "
                                   f"{lp} in the module but not on CPU {lp}'s list")
                    if not self.cpu_online[lp]:
                        out.append(f"assoc-offline: {kvm.name}/{v.name} is still associated "
                                   f"with offline CPU {lp}")
        if self.pamt is not None and self.pamt.policy != "module-hint":
            out += self._pamt_balance()
        if len(self.free_hkids) < len(m.private_hkids) and any(
                s != HKID_FREE for s in kot.values()):
            for p in range(m.num_packages):
                cpus = range(p * m.lps_per_package, (p + 1) * m.lps_per_package)
                if not any(self.cpu_online[c] for c in cpus):
                    out.append(f"assoc-offline: package {p} has no online CPU while a KeyID "
                               "is configured (CACHE.WB cannot run there)")
        return out

    def _pamt_balance(self, quiescent: bool = False) -> list[str]:
        """``pamt-balance`` (Dynamic PAMT, [V6-05] [V6-06]): every 4K page the module holds in
        a 2 MB range is covered by a kernel reference on that range (a reference is taken
        before the page is given, dropped only after it is back), and outside `pamt_lock`
        a range has a page pair installed exactly when its refcount is not zero. When no
        flow is in progress (`quiescent`) the reference count equals the pages held: a
        reference left over on an error path is a leak."""
        from ..tdx.pamt import PT_NDA, PT_PAMT, PT_RSVD

        out: list[str] = []
        mp = self.module.pamt
        owned: dict[int, int] = {}
        for pfn, e in mp.entries.items():
            if e.pt is not PT_NDA and e.pt is not PT_RSVD and e.pt is not PT_PAMT:
                owned[pfn >> 9] = owned.get(pfn >> 9, 0) + 1
        for idx, r in mp.ranges.items():
            if r.pt is not PT_NDA and r.pt is not PT_PAMT and r.pt is not PT_RSVD:
                owned[idx] = owned.get(idx, 0) + 512
        refs = self.pamt.pamt_refcounts
        if quiescent:
            for idx in sorted(set(refs) | set(owned)):
                if refs.get(idx, 0) != owned.get(idx, 0):
                    out.append(f"pamt-balance: nothing in progress, yet the 2 MB range "
                               f"{idx << 21:#x} has {refs.get(idx, 0)} references for "
                               f"{owned.get(idx, 0)} pages the module holds")
        for idx, n in owned.items():
            if n > refs.get(idx, 0):
                out.append(f"pamt-balance: the module holds {n} 4K pages of the 2 MB range "
                           f"{idx << 21:#x} but the kernel counts {refs.get(idx, 0)} references")
        if self.pamt.use_lock and self.pamt.pamt_lock.owner is None:
            pairs = {idx for idx, r in mp.ranges.items() if r.pt is PT_PAMT}
            for idx in sorted(pairs ^ set(refs)):
                out.append(f"pamt-balance: range {idx << 21:#x} has "
                           f"{'a page pair' if idx in pairs else 'no page pair'} and "
                           f"refcount {refs.get(idx, 0)}")
        return out

    def seamcall(self, name: str, *args, cpu: int):
        """Issue a SEAMCALL from `cpu`: a preemption point, then the call (atomic, or with the
        module's own preemption points when `fine_seamcalls`)."""
        if self.preempt:
            yield PREEMPT
        if self.fine_seamcalls:
            res = yield from self.module.stepwise(name, *args, lp=cpu)
        else:
            res = getattr(self.module, name)(*args, lp=cpu)
        self.last_result[cpu] = res  # for outputs the glue reads later (PAMT removal hint)
        return res
