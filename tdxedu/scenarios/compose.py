"""Compose an explorer scenario from the actors the prepared ones use, at a chosen size.

A spec is words `key=value` separated by spaces (a spec file may also use new lines; `#`
starts a comment), e.g. `vcpus=3 pages=2 packages=2 actors=run,run,run,mm,close`:

* `vcpus` (1-4), `pages` (1-4), `packages` (1-2), `dpamt` (on/off), `steps` (scheduler
  steps per run, default 200);
* `teardown` (a KVM teardown policy: v6.16, terminate-vm, v19-notifier, flush-at-vcpu-free)
  and `busy` (the BUSY policy of the zap path: kick-retry-once, retry-loop, no-retry);
* `actors`, comma separated, run concurrently:
  - `run`: a vCPU thread (KVM_RUN holds vcpu->mutex; `tdx_vcpu_load`, TDH.VP.ENTER, the
    guest halts at once);
  - `accept`: a vCPU whose guest ACCEPTs page 1, then runs (pages are then AUGed, not
    accepted; an EPT violation goes to the fault path);
  - `migrate`: a vCPU that runs on one pCPU, then on another (of the other package when
    `packages=2`): `tdx_vcpu_load` flushes it on the old one first ([K616]);
  - `zap`: a runtime zap of page 0 under mmu_lock for write;
  - `mm`: the mm release (`kvm_mmu_notifier_release`; under terminate-vm, the VMM's
    KVM_TDX_TERMINATE_VM first);
  - `close`: after every other actor, the files close: each VM reference is dropped and the
    guest_memfd last (`kvm_gmem_release` -> `kvm_destroy_vm`, which releases the HKID).
  Each vCPU actor takes the next vCPU; vCPU i runs on pCPU i + 1, the host's actors on pCPU 0.

The world is a `TdWorld`: the same conditions and invariants as the prepared TD scenarios.
Actors of other worlds (SMI/RSM and memslot deletion live in the TDP MMU roots world, PAMT
get/put in the Dynamic PAMT world) are refused with a message naming the prepared scenarios.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..kvm.tdx import BUSY_POLICIES, TEARDOWN_POLICIES, tdx_vcpu_enter, tdx_vcpu_exit
from ..kvm.teardown import (
    kvm_gmem_release,
    kvm_mmu_notifier_release,
    kvm_put_kvm,
    tdx_terminate_vm,
)
from ..trace import WaitUntil
from .registry import Scenario
from .world import TdWorld

PAGE = 4096
VCPU_ACTORS = ("run", "accept", "migrate")
HOST_ACTORS = ("zap", "mm", "close")
OTHER_WORLDS = {
    "smi": "the TDP MMU roots world (scenarios roots-smm-storm-*)",
    "rsm": "the TDP MMU roots world (scenarios roots-smm-storm-*)",
    "memslot": "the TDP MMU roots world (scenarios roots-memslot-update-*)",
    "pamt": "the Dynamic PAMT world (scenarios pamt-get-put*)",
}
LIMITS = {"vcpus": (1, 4), "pages": (1, 4), "packages": (1, 2), "steps": (1, 2000)}
EXAMPLE = "vcpus=3 pages=2 packages=2 actors=run,run,run,mm,close"


class ComposeError(ValueError):
    """A spec that names an unknown key or actor, or an impossible combination."""


@dataclass(frozen=True)
class Spec:
    vcpus: int = 1
    pages: int = 1
    packages: int = 1
    dpamt: bool = False
    teardown: str = "v6.16"
    busy: str = "kick-retry-once"
    steps: int = 200
    actors: tuple[str, ...] = field(default_factory=lambda: ("run", "mm", "close"))

    @property
    def name(self) -> str:
        return (f"composed: vcpus={self.vcpus} pages={self.pages} packages={self.packages} "
                f"dpamt={'on' if self.dpamt else 'off'} teardown={self.teardown} "
                f"busy={self.busy} actors={','.join(self.actors)}")


def parse(text: str) -> Spec:
    """A `Spec` from `key=value` words; ComposeError names the first problem."""
    kw: dict = {}
    words = [w for line in text.splitlines() for w in line.split("#", 1)[0].split()]
    if not words:
        raise ComposeError("empty spec; e.g. 'vcpus=2 pages=2 actors=run,run,mm,close'")
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not value:
            raise ComposeError(f"{w!r} is not key=value")
        if key in kw:
            raise ComposeError(f"{key} given twice")
        if key in LIMITS:
            lo, hi = LIMITS[key]
            if not value.isdigit() or not lo <= int(value) <= hi:
                raise ComposeError(f"{key} must be a whole number from {lo} to {hi}, got {value!r}")
            kw[key] = int(value)
        elif key == "dpamt":
            if value not in ("on", "off"):
                raise ComposeError(f"dpamt must be on or off, got {value!r}")
            kw[key] = value == "on"
        elif key == "teardown":
            if value not in TEARDOWN_POLICIES:
                raise ComposeError(f"unknown teardown policy {value!r}; allowed: "
                                   f"{', '.join(TEARDOWN_POLICIES)}")
            kw[key] = value
        elif key == "busy":
            if value not in BUSY_POLICIES:
                raise ComposeError(f"unknown busy policy {value!r}; allowed: "
                                   f"{', '.join(BUSY_POLICIES)}")
            kw[key] = value
        elif key == "actors":
            kw[key] = tuple(a for a in value.split(",") if a)
        else:
            raise ComposeError(f"unknown key {key!r}; keys: vcpus, pages, packages, dpamt, "
                               "teardown, busy, steps, actors")
    spec = Spec(**kw)
    check(spec)
    return spec


def check(spec: Spec) -> None:
    """Impossible combinations, each with the reason."""
    if not spec.actors:
        raise ComposeError("no actors; e.g. actors=run,mm,close")
    for a in spec.actors:
        if a in OTHER_WORLDS:
            raise ComposeError(f"actor {a!r} belongs to {OTHER_WORLDS[a]}, not to a running TD's "
                               "world; explore that scenario instead")
        if a not in VCPU_ACTORS + HOST_ACTORS:
            raise ComposeError(f"unknown actor {a!r}; actors: "
                               f"{', '.join(VCPU_ACTORS + HOST_ACTORS)}")
    n = sum(a in VCPU_ACTORS for a in spec.actors)
    if n > spec.vcpus:
        raise ComposeError(f"{n} vCPU actors but vcpus={spec.vcpus}: each vCPU runs one thread")
    for a in HOST_ACTORS:
        if spec.actors.count(a) > 1:
            raise ComposeError(f"actor {a!r} twice: a VM has one mm and one set of files")
    if "accept" in spec.actors and spec.pages < 2:
        raise ComposeError("accept needs pages >= 2 (the guest accepts page 1)")
    if "accept" in spec.actors and any(a in ("run", "migrate") for a in spec.actors):
        raise ComposeError("accept leaves every page AUGed but not accepted, so it cannot be "
                           "mixed with run or migrate (their guests would fault on page 0)")
    if spec.teardown == "terminate-vm" and "mm" not in spec.actors:
        raise ComposeError("teardown=terminate-vm is issued by the mm actor: add mm")


def scenario(spec: Spec) -> Scenario:
    """`spec` as an explorer `Scenario` (not registered: `tdxedu explore --compose` and the
    Explorer widget explore and replay it directly)."""
    return Scenario(spec.name, "actors " + ", ".join(spec.actors) + " run concurrently in a "
                    "composed TD world", lambda: build(spec), spec.steps)


def build(spec: Spec) -> TdWorld:
    """A fresh world for `spec` (a zero-argument builder is `lambda: build(spec)`)."""
    check(spec)
    accept = "accept" not in spec.actors
    cpp = -(-(spec.vcpus + 1) // spec.packages)  # pCPU 0 for the host, one per vCPU
    return TdWorld(_actors(spec), vcpus=spec.vcpus, pages=spec.pages, accept=accept,
                   busy_policy=spec.busy, teardown_policy=spec.teardown,
                   packages=spec.packages, cpus_per_package=cpp, dynamic_pamt=spec.dpamt)


class _actors:
    """The spec's actor generators; a picklable callable (a built world is cloned)."""

    def __init__(self, spec: Spec):
        self.spec = spec

    def __call__(self, w: TdWorld) -> dict:
        out: dict = {}
        vcpu_names: list[str] = []
        i = 0
        for a in self.spec.actors:
            if a in VCPU_ACTORS:
                name = f"vcpu{i}"
                out[name] = _vcpu(w, i, a, name)
                vcpu_names.append(name)
                i += 1
        for a in self.spec.actors:
            if a == "zap":
                out["zap"] = w.zap_private(0, 0, "zap")
            elif a == "mm":
                out["mm"] = _mm(w)
            elif a == "close":
                waits = vcpu_names + [n for n in ("mm", "zap") if n in self.spec.actors]
                out["close"] = _close(w, waits)
        return out


def _vcpu(w: TdWorld, i: int, kind: str, name: str):
    """KVM_RUN (`kvm_vcpu_ioctl` holds vcpu->mutex) on pCPU i + 1; `migrate` then moves to
    the last pCPU (on the other package when there are two) and runs again."""
    v = w.kvm.vcpus[i]
    cpu = i + 1
    yield from v.mutex.lock(name)
    if kind == "accept":
        yield from w.vcpu_thread(v, [("accept", PAGE), "run"], cpu, name)
    else:
        yield from _enter_once(w, v, cpu)
        if kind == "migrate" and not w.kvm.vm_dead:
            other = w.host.nr_cpus - 1 if w.host.nr_cpus - 1 != cpu else 0
            yield from _enter_once(w, v, other)  # tdx_vcpu_load flushes it on `cpu` first
    v.mutex.unlock(name)
    w.done.add(name)


def _enter_once(w: TdWorld, v, cpu: int):
    """One entry: load on `cpu`, TDH.VP.ENTER, the guest halts at once (a TD exit)."""
    w.flags.setdefault("vp_enter_failed", False)
    w.flags.setdefault("entered_after_vm_dead", False)
    r = yield from tdx_vcpu_enter(v, cpu)
    if r is not None and r.status.is_error:
        w.flags["vp_enter_failed"] = True
    elif r is not None and not r.exit_reason:
        if w.kvm.vm_dead:
            w.flags["entered_after_vm_dead"] = True
        yield from tdx_vcpu_exit(v, "HLT")


def _mm(w: TdWorld):
    kvm = w.kvm
    if w.kt.teardown_policy == "terminate-vm":
        # KVM_TDX_TERMINATE_VM: -EBUSY while a vCPU is in KVM_RUN, so the VMM retries.
        while (yield from tdx_terminate_vm(kvm, 0, "mm")) == -16:
            yield WaitUntil(lambda: not any(v.mutex.locked() for v in kvm.vcpus), "vCPU mutexes")
    yield from kvm_mmu_notifier_release(kvm, 0, "mm")
    w.done.add("mm")


def _close(w: TdWorld, waits: list[str]):
    want = set(waits)
    yield WaitUntil(lambda: want <= w.done, "every other actor")
    kvm = w.kvm
    while kvm.users_count > 1:  # the VM file (and any other reference), then the gmem file
        yield from kvm_put_kvm(kvm, 0, "close")
    yield from kvm_gmem_release(kvm, 0, "close")  # the last reference: kvm_destroy_vm
    w.done.add("close")
