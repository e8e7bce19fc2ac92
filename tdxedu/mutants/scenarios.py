"""Scenario factories for the known-bad variant catalogue.

A factory builds a fresh `World` from a `Config`: the policies in force (BUSY handling,
teardown order, TDP MMU root version, Dynamic PAMT allocation and `pamt_lock`) plus a set of
`mutations` (the names checked at the "mutant ..." hook lines in `tdxedu/kvm`). With the
default `Config()` every factory runs upstream behaviour, so `tdxedu check-mutants` can run a
mutant and the correct policies through exactly the same scenario.

Most factories reuse the scenario builders (`tdxedu.scenarios.td_races`, `roots`, `pamt`);
the new ones are small:

* ``zap-running``: a vCPU keeps running while KVM zaps a page it has accepted (TRACK + IPI).
* ``teardown`` / ``teardown-dpamt``: a whole TD life's end (`RunningTd._teardown`: vCPU fds,
  mm release, VM fd, guest_memfd close -> kvm_destroy_vm) as one actor; conditions read the
  leftovers (host pages, PAMT references and pairs).
* ``migration``: one vCPU runs on pCPU 0, then on pCPU 1 ([K616]).
* ``dpamt-fault``: on a Dynamic PAMT host a vCPU accepts a page KVM has not mapped yet; the
  EPT violation maps it under `mmu_lock` (PAMT pair from the vCPU's cache, [V6-09]); then the
  TD is torn down.

The registered names (`mutant-<factory>`, for `tdxedu explore`) run the default `Config()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..kvm.kvm import KVM_REQ_OUTSIDE_GUEST_MODE, OUTSIDE_GUEST_MODE
from ..kvm.mmu_role import RootPolicy
from ..kvm.pamt import tdx_topup_pamt_cache, vcpu_pamt_cache
from ..kvm.tdx import tdx_vcpu_enter
from ..scenarios.pamt import PamtWorld
from ..scenarios.registry import scenario
from ..scenarios.roots import (
    last_put_race_world,
    lockless_walk_world,
    memslot_update_world,
    smm_storm_world,
    vm_destroy_world,
)
from ..scenarios.td_races import busy_accept, busy_zero_step, hkid_release
from ..scenarios.world import TdWorld
from ..sim.engine import World
from ..tdx.td import EPF_FAULTS_TO_ARM
from ..trace import WaitUntil

PAGE = 4096


@dataclass(frozen=True)
class Config:
    """The policies a factory builds with, and the mutations switched on."""

    busy_policy: str = "kick-retry-once"
    teardown_policy: str = "v6.16"
    root_policy: str | RootPolicy = "v6.16"
    pamt_policy: str = "vcpu-cache"
    pamt_lock: bool = True
    mutations: frozenset = frozenset()

    def label(self, fields: tuple[str, ...]) -> str:
        parts = []
        for f in fields:
            v = getattr(self, f)
            parts.append(f"{f}={getattr(v, 'name', v)}")
        if self.mutations:
            parts.append("mutations=" + ",".join(sorted(self.mutations)))
        return " ".join(parts) or "defaults"


#: The policies that model real, merged kernel behaviour (or a proposal that was correct):
#: check-mutants runs every factory under each of these and expects no alarm.
CORRECT: dict[str, tuple] = {
    "busy_policy": ("kick-retry-once",),
    "teardown_policy": ("v6.16", "terminate-vm", "flush-at-vcpu-free"),
    "root_policy": ("v6.3", "v6.4", "v6.6", "v6.16"),
    "pamt_policy": ("vcpu-cache",),
    "pamt_lock": (True,),
}


@dataclass(frozen=True)
class Factory:
    name: str
    description: str
    build: Callable[[Config], World]
    uses: tuple[str, ...] = ()  # Config fields the factory reads (besides mutations)
    max_steps: int = 200
    correct: dict = field(default_factory=dict)  # per-factory override of CORRECT values
    # Conditions that are the kernel's reaction in this world (e.g. an injected SEAMCALL
    # failure: KVM_BUG_ON and the page leaked on purpose): not alarms here, but each must hold
    # in every run, else check-mutants reports ``reaction_mismatch``.
    reaction: tuple[str, ...] = ()

    def correct_configs(self) -> list[Config]:
        """Every combination of correct values of the fields this factory reads."""
        configs = [Config()]
        for f in self.uses:
            values = self.correct.get(f, CORRECT[f])
            configs = [replace(c, **{f: v}) for c in configs for v in values]
        return configs


FACTORIES: dict[str, Factory] = {}


def factory(name: str, description: str, *, uses: tuple[str, ...] = (), max_steps: int = 200,
            correct: dict | None = None, reaction: tuple[str, ...] = ()):
    def deco(build: Callable[[Config], World]):
        FACTORIES[name] = Factory(name, description, build, uses, max_steps, correct or {},
                                  tuple(reaction))
        scenario(f"mutant-{name}", f"{description} (correct policies)", max_steps)(
            lambda b=build: b(Config()))
        return build

    return deco


def _mutate(w, cfg: Config):
    """Switch the config's mutations on in a freshly built world (cloned with it)."""
    kt = getattr(w, "kt", None)
    if kt is not None:
        kt.mutations = set(cfg.mutations)
    return w


# --- zap path --------------------------------------------------------------------------------

@factory("zap-accept", "KVM zaps page 1 while the guest ACCEPTs it (entry-lock contention)",
         uses=("busy_policy",), max_steps=120)
def _zap_accept(cfg: Config):
    return _mutate(busy_accept(cfg.busy_policy), cfg)


@factory("zap-zero-step", "KVM zaps page 0 while a 0-step VP.ENTER holds the S-EPT tree",
         uses=("busy_policy",), max_steps=60)  # correct runs finish in < 40 steps
def _zap_zero_step(cfg: Config):
    return _mutate(busy_zero_step(cfg.busy_policy), cfg)


def _zap_running_actors(w: TdWorld) -> dict:
    v = w.kvm.vcpus[0]
    return {"vcpu0": w.vcpu_thread(v, ["run", "run"], v.cpu, "vcpu0"),
            "zap": w.zap_private(0, 1, "zap")}


@factory("zap-running", "KVM zaps page 0 (BLOCK, TRACK + IPI, REMOVE) while vCPU 0 runs",
         uses=("busy_policy",), max_steps=120)
def _zap_running(cfg: Config):
    return _mutate(TdWorld(_zap_running_actors, vcpus=1, pages=2,
                           busy_policy=cfg.busy_policy), cfg)


def _zap_running_2_actors(w: TdWorld) -> dict:
    v0, v1 = w.kvm.vcpus
    return {"vcpu0": w.vcpu_thread(v0, ["run", "run"], v0.cpu, "vcpu0"),
            "vcpu1": w.vcpu_thread(v1, ["run", "run"], v1.cpu, "vcpu1"),
            "zap": w.zap_private(0, 1, "zap")}


@factory("zap-running-2", "KVM zaps page 0 on pCPU 1 while vCPU 0 (pCPU 0) and vCPU 1 "
         "(pCPU 1) run", uses=("busy_policy",), max_steps=160)
def _zap_running_2(cfg: Config):
    """Two vCPUs on two pCPUs: a TLB-tracking mistake that only misses a vCPU running on
    *another* CPU needs both ([K616] tdx_track kicks every vCPU)."""
    return _mutate(TdWorld(_zap_running_2_actors, vcpus=2, pages=2,
                           busy_policy=cfg.busy_policy), cfg)


def _zap_zero_step_2_actors(w: TdWorld) -> dict:
    v0, v1 = w.kvm.vcpus
    kt, module = w.kt, w.module

    def enter_once(v, name):
        """One KVM_RUN round, no re-entry loop: honour wait_for_sept_zap, VP.ENTER (its 0-step
        check holds the S-EPT tree), stay in the guest until kicked, TD exit."""
        if kt.wait_for_sept_zap:
            yield WaitUntil(lambda: not kt.wait_for_sept_zap, "wait_for_sept_zap")
        r = yield from tdx_vcpu_enter(v, v.cpu)
        if r is not None and not r.status.is_error and not r.exit_reason:
            yield WaitUntil(lambda: v.kicked or "zap" in w.done, "an IPI or the zap's end")
            module.td_exit(v.arch.tdx.tdvpr_pa, "EXTERNAL_INTERRUPT", lp=v.cpu)
            v.mode, v.kicked = OUTSIDE_GUEST_MODE, False
        w.done.add(name)

    def late_vcpu():
        # vCPU 1 reaches VP.ENTER while KVM kicks everyone after a BUSY: the window
        # `wait_for_sept_zap` closes ([Y4] [K616]).
        yield WaitUntil(lambda: KVM_REQ_OUTSIDE_GUEST_MODE in v0.requests or "zap" in w.done,
                        "a kick in progress")
        yield from enter_once(v1, "vcpu1")

    return {"vcpu0": enter_once(v0, "vcpu0"), "vcpu1": late_vcpu(),
            "zap": w.zap_private(0, 2, "zap")}


@factory("zap-zero-step-2", "KVM zaps page 0 while two 0-step vCPUs enter (tree held in "
         "VP.ENTER)", uses=("busy_policy",), max_steps=150)
def _zap_zero_step_2(cfg: Config):
    """Both vCPUs have 0-step mitigation armed (seven EPT faults at one RIP on page 1), so each
    VP.ENTER takes the S-EPT tree exclusively. The kick waits only for vCPUs in guest mode; a
    vCPU that was outside may enter next unless `wait_for_sept_zap` keeps it out."""
    w = TdWorld(_zap_zero_step_2_actors, vcpus=2, pages=2, busy_policy=cfg.busy_policy,
                cpus_per_package=3)
    for v in w.kvm.vcpus:
        vp = v.arch.tdx.tdvpr_pa
        for _ in range(EPF_FAULTS_TO_ARM):
            w.module.tdh_vp_enter(vp, lp=v.cpu)
            w.module.td_exit(vp, "EPT_VIOLATION", PAGE, progressed=False, lp=v.cpu)
    w.trace.events.clear()
    return _mutate(w, cfg)


# --- HKID release and teardown ---------------------------------------------------------------

@factory("hkid-release", "mm release races a vCPU loaded again, then every file closes",
         uses=("teardown_policy",))
def _hkid_release(cfg: Config):
    return _mutate(hkid_release(cfg.teardown_policy), cfg)


class TeardownWorld(TdWorld):
    """A built TD torn down by one actor following `RunningTd.teardown_steps(strategy)`.
    `td_options` go to `TdWorld` / `RunningTd` (packages, cpus_per_package, ...)."""

    def __init__(self, strategy: str, *, vcpus: int = 1, pages: int = 2,
                 dynamic_pamt: bool = False, pamt_policy: str = "vcpu-cache",
                 pamt_lock: bool = True, **td_options):
        super().__init__(None, vcpus=vcpus, pages=pages, teardown_policy=strategy,
                         dynamic_pamt=dynamic_pamt, pamt_policy=pamt_policy,
                         pamt_lock=pamt_lock, **td_options)
        self.strategy = strategy

    def actors(self):
        return {"teardown": self.td.teardown_steps(self.strategy)}

    def conditions(self) -> dict[str, bool]:
        c = super().conditions()
        pamt = self.host.pamt
        ended = self.kvm.destroyed
        c["host_pages_leaked"] = ended and self.host.allocator.in_use > 0
        c["pamt_refs_left"] = ended and pamt is not None and bool(pamt.pamt_refcounts)
        c["pamt_pairs_left"] = ended and pamt is not None and pamt.pairs_installed() > 0
        # nothing is lost silently: a page still allocated when the VM is gone was given up
        # on purpose (KVM's `leaked` list, a PAMT pair it could not remove; pairs still
        # installed are `pamt_pairs_left`) or is a silent leak
        given_up = {pa for pa, _ in self.kt.leaked} | set(pamt.leaked_pages if pamt else ())
        silent = {pa for pa, what in self.host.allocator.allocated.items()
                  if what != "DPAMT"} - given_up
        c["seamcall_leaked"] = ended and bool(silent)
        return c


@factory("teardown", "a TD's whole teardown (fds, mm release, guest_memfd, kvm_destroy_vm)",
         uses=("teardown_policy",))
def _teardown(cfg: Config):
    return _mutate(TeardownWorld(cfg.teardown_policy), cfg)


@factory("teardown-dpamt", "a TD's whole teardown on a Dynamic PAMT host",
         uses=("teardown_policy", "pamt_policy", "pamt_lock"))
def _teardown_dpamt(cfg: Config):
    return _mutate(TeardownWorld(cfg.teardown_policy, dynamic_pamt=True,
                                 pamt_policy=cfg.pamt_policy, pamt_lock=cfg.pamt_lock), cfg)


# --- vCPU migration --------------------------------------------------------------------------

def _migration_actors(w: TdWorld) -> dict:
    v = w.kvm.vcpus[0]

    def migrating():
        yield from w.vcpu_thread(v, ["run"], 0, "vcpu0-on-cpu0")
        yield from w.vcpu_thread(v, ["run"], 1, "vcpu0-on-cpu1")

    return {"vcpu0": migrating()}


@factory("migration", "vCPU 0 runs on pCPU 0, then on pCPU 1 (tdx_vcpu_load)")
def _migration(cfg: Config):
    return _mutate(TdWorld(_migration_actors, vcpus=1, pages=1), cfg)


# --- Dynamic PAMT on the fault path ----------------------------------------------------------

def back_gpa_in_fresh_2m_range(w: TeardownWorld | TdWorld, gpa: int) -> int:
    """Let guest_memfd back `gpa` with a page from a 2 MB range no TDX page uses yet, so
    mapping it takes that range's first PAMT reference (0 -> 1: PAMT.ADD and a pair)
    (tdx_pamt_get) [V6-CL]. Pages skipped on the way go back to the allocator."""
    alloc, pamt = w.host.allocator, w.host.pamt
    skipped, pa = [], alloc.alloc_page("guest_memfd")
    while pamt.refcount(pa >> 12) or w.module.pamt.range_pt(pa):
        skipped.append(pa)
        pa = alloc.alloc_page("guest_memfd")
    for p in skipped:
        alloc.free_page(p)
    w.kt.gmem[gpa] = pa
    return pa


class DpamtFaultWorld(TeardownWorld):
    """vCPU 0 accepts a page beyond the initial memory (EPT violation -> PAGE.AUG under
    mmu_lock held for read, its PAMT pair from the vCPU's cache), then the TD is torn down."""

    def __init__(self, cfg: Config):
        super().__init__(cfg.teardown_policy, pages=1, dynamic_pamt=True,
                         pamt_policy=cfg.pamt_policy, pamt_lock=cfg.pamt_lock)
        v = self.kvm.vcpus[0]
        tdx_topup_pamt_cache(self.host, vcpu_pamt_cache(v))  # mmu_topup_memory_caches
        self.gpa = 1 << 21
        back_gpa_in_fresh_2m_range(self, self.gpa)

    def actors(self):
        v = self.kvm.vcpus[0]

        def closer():
            yield WaitUntil(lambda: "vcpu0" in self.done, "vCPU 0 done")
            yield from self.td.teardown_steps(self.strategy)

        return {"vcpu0": self.vcpu_thread(v, [("accept", self.gpa)], v.cpu, "vcpu0"),
                "close": closer()}


@factory("dpamt-fault", "DPAMT: a guest ACCEPT faults a page in under mmu_lock, then teardown",
         uses=("pamt_policy", "pamt_lock"))
def _dpamt_fault(cfg: Config):
    return _mutate(DpamtFaultWorld(cfg), cfg)


@factory("pamt-get-put", "two CPUs get/put PAMT references on one 2 MB range",
         uses=("pamt_policy", "pamt_lock"), max_steps=80)
def _pamt_get_put(cfg: Config):
    return PamtWorld(policy=cfg.pamt_policy, pamt_lock=cfg.pamt_lock)


# --- TDP MMU roots ---------------------------------------------------------------------------

@factory("roots-smm-storm", "1 vCPU, one SMI/RSM round trip (the 2023 storm's unit)",
         uses=("root_policy",), max_steps=300)
def _roots_smm_storm(cfg: Config):
    return smm_storm_world(cfg.root_policy, 1, 1)


@factory("roots-memslot-update", "2 vCPUs run while a memslot is deleted (fast zap)",
         uses=("root_policy",), max_steps=300)
def _roots_memslot_update(cfg: Config):
    return memslot_update_world(cfg.root_policy, 2, 1)


@factory("roots-memslot-update-td", "a TD (mirror root), 2 vCPUs, a memslot deleted",
         uses=("root_policy",), max_steps=300, correct={"root_policy": ("v6.16",)})
def _roots_memslot_update_td(cfg: Config):
    return memslot_update_world(cfg.root_policy, 2, 1, td=True)


@factory("roots-vm-destroy", "2 vCPUs (one with an SMI/RSM round trip), then VM destruction",
         uses=("root_policy",), max_steps=300)
def _roots_vm_destroy(cfg: Config):
    return vm_destroy_world(cfg.root_policy, 2, 1)


@factory("roots-vm-destroy-td", "a TD (mirror root), 2 vCPUs run, then VM destruction",
         uses=("root_policy",), max_steps=300, correct={"root_policy": ("v6.16",)})
def _roots_vm_destroy_td(cfg: Config):
    return vm_destroy_world(cfg.root_policy, 2, 0, td=True)


@factory("roots-lockless-walk", "a lockless walker (RCU only) while a memslot is deleted and "
         "vCPU 0 drops its invalid root", uses=("root_policy",), max_steps=300)
def _roots_lockless_walk(cfg: Config):
    return lockless_walk_world(cfg.root_policy)


@factory("roots-last-put-race", "a reader's last put vs invalidate-all-roots",
         uses=("root_policy",), max_steps=300)
def _roots_last_put_race(cfg: Config):
    return last_put_race_world(cfg.root_policy, 2)


def _load_topic_modules() -> None:
    """Import every ``scenarios_<topic>.py`` module of this package: each registers more
    factories with `factory` (one file per topic, so helpers never edit the same file)."""
    import importlib
    import pkgutil

    from . import __path__ as pkg_path

    for m in sorted(pkgutil.iter_modules(pkg_path), key=lambda m: m.name):
        if m.name.startswith("scenarios_"):
            importlib.import_module(f"{__package__}.{m.name}")


_load_topic_modules()

__all__ = ["Config", "CORRECT", "FACTORIES", "Factory", "TeardownWorld", "DpamtFaultWorld"]
