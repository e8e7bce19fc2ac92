"""Scenario factories for the model's host-wide checks: several TDs on one host, CPU
offline, and two packages (where CACHE.WB and VP.FLUSH must reach the right CPU).

* ``two-tds``: TD 0 is torn down while TD 1 runs KVM_TDX_INIT_VM on the same host (KeyID pool vs the
  module's KOT, `tdx_lock` between MNG.CREATE and the HKID release).
* ``cpu-offline`` / ``cpu-offline-2pkg``: vCPU 0 runs on CPU 1, CPU 1 goes offline
  (`tdx_offline_cpu`, `tdx_disable_virtualization_cpu` walking the CPU's associated-vCPU
  list), vCPU 0 runs again on CPU 0, then the TD is torn down. With one CPU per package the
  kernel refuses the offline while a KeyID is allocated.
* ``teardown-2pkg``: two vCPUs on CPUs of two packages, then the whole teardown (VP.FLUSH by
  IPI to each vCPU's CPU, CACHE.WB on one CPU per package).
* ``dpamt-aug-busy``: the Dynamic PAMT fault path's -EBUSY exit (PAGE.AUG behind a 0-step
  VP.ENTER) and its retry.
* ``roots-vm-destroy-td``: a TD's VM destruction as the TDP MMU roots see it (the mirror root
  is invalidated and zapped only here, under mmu_lock held for write).
"""

from __future__ import annotations

from ..kvm.hotplug import cpu_down
from ..kvm.kvm import OUTSIDE_GUEST_MODE
from ..kvm.pamt import tdx_topup_pamt_cache, vcpu_pamt_cache
from ..kvm.tdx import tdx_td_init, tdx_vcpu_enter
from ..scenarios.roots import vm_destroy_world
from ..scenarios.td import RunningTd
from ..scenarios.world import TdWorld, snapshot
from ..sim.engine import World
from ..tdx.td import EPF_FAULTS_TO_ARM
from ..trace import PREEMPT, WaitUntil
from .scenarios import Config, TeardownWorld, _mutate, back_gpa_in_fresh_2m_range, factory


class TwoTdWorld(World):
    """Two TDs on one host: `td0` built and running, `td1` only created. One actor tears td0
    down while the other runs KVM_TDX_INIT_VM for td1 (the part of the build that takes a
    KeyID and the module's KOT)."""

    cloneable = True

    def __init__(self, strategy: str):
        self.td0 = RunningTd(memory=4096, vcpus=1, initial_pages=0, name="td0",
                             cpus_per_package=2)
        self.host = self.td0.host
        self.td1 = RunningTd(memory=4096, vcpus=1, initial_pages=0, name="td1",
                             host=self.host, deferred=True)
        self.td1.build_steps = None  # a generator cannot be cloned: actors() makes it
        self.strategy = strategy
        self.td0.kt.teardown_policy = strategy
        self.module = self.host.module
        self.trace = self.host.trace
        self.trace.events.clear()
        self.done: set[str] = set()

    def actors(self):
        def build():  # KVM_TDX_INIT_VM: KeyID, TDR/TDCS pages, MNG.CREATE, KEY.CONFIG, ...
            # Once MNG.CREATE is done the KOT is not touched again: the rest of the ioctl
            # runs without preemption points (waits still wait), to keep the state space small.
            gen = tdx_td_init(self.td1.kvm, cpu=1)
            try:
                y = next(gen)
                while True:
                    if isinstance(y, WaitUntil) or self.td1.kt.tdr_pa not in self.module.tds:
                        yield y
                    y = next(gen)
            except StopIteration:
                pass
            self.done.add("build")

        return {"teardown": self.td0.teardown_steps(self.strategy), "build": build()}

    def fingerprint(self):
        return (snapshot(self.td0), snapshot(self.td1), self.td1.kt.state,
                tuple(sorted(self.done)))

    def invariants(self) -> list[str]:
        return (self.module.check_invariants() + list(self.host.allocator.errors)
                + list(self.host.debug_errors) + self.host.check_invariants())

    def conditions(self) -> dict[str, bool]:
        k0, k1 = self.td0.kt, self.td1.kt
        return {
            "kvm_bug": self.td0.kvm.vm_bugged or self.td1.kvm.vm_bugged,
            "hkid_leaked": k0.hkid_leaked or (self.td0.kvm.destroyed and k0.hkid_assigned),
            "pages_leaked": bool(k0.leaked or k1.leaked),
        }


@factory("two-tds", "TD 0 torn down while TD 1 runs KVM_TDX_INIT_VM (KeyID pool)",
         uses=("teardown_policy",), max_steps=400)
def _two_tds(cfg: Config):
    w = TwoTdWorld(cfg.teardown_policy)
    for kt in (w.td0.kt, w.td1.kt):
        kt.mutations = set(cfg.mutations)
    return w


# --- CPU offline -----------------------------------------------------------------------------

def _cpu_offline_actors(w: TdWorld) -> dict:
    v = w.kvm.vcpus[0]

    def vcpu():
        yield from w.vcpu_thread(v, ["run"], 1, "vcpu0-on-cpu1")
        yield WaitUntil(lambda: "hotplug" in w.done, "CPU 1 offline (or refused)")
        yield from w.vcpu_thread(v, ["run"], 0, "vcpu0-on-cpu0")

    def hotplug():
        yield WaitUntil(lambda: "vcpu0-on-cpu1" in w.done, "vCPU 0 ran on CPU 1")
        w.flags["offline_refused"] = bool((yield from cpu_down(w.host, 1)))
        w.done.add("hotplug")

    def close():
        yield WaitUntil(lambda: "vcpu0-on-cpu0" in w.done, "vCPU 0 done")
        yield from w.td.teardown_steps(w.kt.teardown_policy)

    return {"vcpu0": vcpu(), "hotplug": hotplug(), "close": close()}


class CpuOfflineWorld(TeardownWorld):
    def __init__(self, cfg: Config, *, packages: int, cpus_per_package: int):
        TdWorld.__init__(self, _cpu_offline_actors, vcpus=1, pages=1,
                         teardown_policy=cfg.teardown_policy, packages=packages,
                         cpus_per_package=cpus_per_package)
        self.strategy = cfg.teardown_policy

    def actors(self):
        return _cpu_offline_actors(self)


@factory("cpu-offline", "vCPU 0 runs on CPU 1, CPU 1 goes offline, vCPU 0 runs on CPU 0, "
         "teardown", uses=("teardown_policy",), max_steps=300)
def _cpu_offline(cfg: Config):
    return _mutate(CpuOfflineWorld(cfg, packages=1, cpus_per_package=2), cfg)


@factory("cpu-offline-2pkg", "as cpu-offline with one CPU per package (the offline is "
         "refused while a KeyID is allocated)", uses=("teardown_policy",), max_steps=300)
def _cpu_offline_2pkg(cfg: Config):
    return _mutate(CpuOfflineWorld(cfg, packages=2, cpus_per_package=1), cfg)


# --- two packages ----------------------------------------------------------------------------

class TwoPackageTeardownWorld(TeardownWorld):
    """`TeardownWorld` with vCPU 0 on package 0 and vCPU 1 on package 1."""

    def __init__(self, strategy: str):
        TdWorld.__init__(self, None, vcpus=2, pages=2, teardown_policy=strategy, packages=2,
                         cpus_per_package=1)
        self.strategy = strategy


@factory("teardown-2pkg", "two vCPUs on two packages, then the whole teardown",
         uses=("teardown_policy",))
def _teardown_2pkg(cfg: Config):
    return _mutate(TwoPackageTeardownWorld(cfg.teardown_policy), cfg)


# --- Dynamic PAMT: the fault path's error exit -----------------------------------------------

class DpamtAugBusyWorld(TdWorld):
    """Dynamic PAMT host, two vCPUs. vCPU 1 has 0-step mitigation armed, so its VP.ENTER holds
    the S-EPT tree exclusively for a moment ([M15] td_exit_stepping.c); meanwhile vCPU 0
    accepts a page KVM has not mapped: the EPT violation takes a PAMT reference (0 -> 1:
    PAMT.ADD with a pair from the vCPU's cache) and PAGE.AUG may find the tree busy. The
    -EBUSY exit must give the reference (and with it the pair) back before the retry: once
    both vCPUs are done, references equal the pages the module holds (``pamt-balance``)."""

    def __init__(self, cfg: Config):
        super().__init__(None, vcpus=2, pages=1, dynamic_pamt=True,
                         pamt_policy=cfg.pamt_policy, pamt_lock=cfg.pamt_lock)
        v0, v1 = self.kvm.vcpus
        tdx_topup_pamt_cache(self.host, vcpu_pamt_cache(v0))  # mmu_topup_memory_caches
        self.gpa = 1 << 21
        back_gpa_in_fresh_2m_range(self, self.gpa)
        vp = v1.arch.tdx.tdvpr_pa
        for _ in range(EPF_FAULTS_TO_ARM):
            self.module.tdh_vp_enter(vp, lp=v1.cpu)
            self.module.td_exit(vp, "EPT_VIOLATION", 0, progressed=False, lp=v1.cpu)
        self.trace.events.clear()
        self.fault_backoff = self._backoff

    def _backoff(self):
        """Fairness: VP.ENTER holds the tree only briefly, so a retry after BUSY runs once
        vCPU 1's VP.ENTER is over (otherwise the explorer would starve it)."""
        return WaitUntil(lambda: "vcpu1-entered" in self.done, "vCPU 1's VP.ENTER returned")

    def actors(self):
        v0, v1 = self.kvm.vcpus
        module = self.module

        def zero_step_vcpu():
            r = yield from tdx_vcpu_enter(v1, v1.cpu)
            self.done.add("vcpu1-entered")
            if r is not None and not r.status.is_error and not r.exit_reason:
                yield PREEMPT
                module.td_exit(v1.arch.tdx.tdvpr_pa, "HLT", lp=v1.cpu)
                v1.mode = OUTSIDE_GUEST_MODE
            self.done.add("vcpu1")

        return {"vcpu0": self.vcpu_thread(v0, [("accept", self.gpa)], v0.cpu, "vcpu0"),
                "vcpu1": zero_step_vcpu()}

    def invariants(self) -> list[str]:
        out = super().invariants()
        if {"vcpu0", "vcpu1"} <= self.done:
            out += self.host._pamt_balance(quiescent=True)
        return out

    def conditions(self) -> dict[str, bool]:
        c = super().conditions()
        c["aug_busy_seen"] = any(e.op == "tdh_mem_page_aug" and "BUSY" in str(e.status)
                                 for e in self.trace.events)
        return c


@factory("dpamt-aug-busy", "DPAMT: PAGE.AUG meets a 0-step VP.ENTER holding the S-EPT tree "
         "(-EBUSY exit, retry)", uses=("pamt_policy", "pamt_lock"), max_steps=150)
def _dpamt_aug_busy(cfg: Config):
    return _mutate(DpamtAugBusyWorld(cfg), cfg)


# --- a TD's VM destruction through the TDP MMU roots ------------------------------------------

@factory("roots-vm-destroy-td", "a TD (mirror root), 2 vCPUs run, then VM destruction "
         "(kvm_mmu_uninit_tdp_mmu zaps the mirror root)", uses=("root_policy",),
         max_steps=300, correct={"root_policy": ("v6.16",)})
def _roots_vm_destroy_td(cfg: Config):
    return vm_destroy_world(cfg.root_policy, 2, 0, td=True)
