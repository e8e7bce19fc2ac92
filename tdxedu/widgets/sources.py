"""Step sources: what a `Stepper` drives. One protocol, several model drivers.

A step source is any object with::

    title: str                 what is being stepped (shown above the buttons)
    reset() -> None            start again from the same initial state
    step() -> StepInfo         advance one step (raises `Finished` when `done`)
    done: bool                 nothing left to step
    trace: Trace               every event so far (the timeline panel reads it)
    module, tdr, kvm           model state for the panels (None when not applicable)
    panels: tuple[str, ...]    the panels that make sense for it ("timeline", "sept", ...)
    summary() -> str           a text summary (shown when done; used by golden cells)

Sources here: `TdLifeSource` (a TD built and torn down by KVM's real code path under a
teardown strategy, one SEAMCALL per step), `ExplorerSource` (a registered explorer scenario
run by script, seed or witness choices, one actor step per step; the TDP MMU roots scenarios
are these too: `roots_source`), `SeamcallScriptSource` (SEAMCALLs in an order you choose) and
`RemovalSource` (BLOCK / TRACK / kick / REMOVE on a running TD, in an order you choose).

Each step records the kernel call chain that issued its SEAMCALL, read from the suspended
generators (`gi_yieldfrom`), so the widget can say "tdh_mem_range_block, issued by
kvm_gmem_release -> tdx_sept_remove_private_spte" with the source file and the docstring of
the innermost kernel function ("why?").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..kvm.tdx import TEARDOWN_POLICIES
from ..lessons.td import RunningTd, parse_size
from ..sim import registry
from ..sim.engine import Execution
from ..tdx import TdxModule
from ..tdx.pamt import PA_MASK, PAGE_SIZE, PageType
from ..tdx.testing import TdBuilder
from ..trace import Event, Trace, _show, run_to_completion
from ..viz import status_outcome
from ..viz.timeline import event_kind

MODULE_SOURCE = "tdx-module"
MAX_STEP_PAGES = 1024  # stepping is for small TDs: 4 MiB of guest memory at most
# Plumbing, not kernel functions, is left out of the call chain: these names and any name
# starting with an underscore (the model's private helpers).
_PLUMBING = frozenset({"seamcall", "sc", "stepwise"})


class Finished(Exception):
    """Step past the end: the widget turns this into a message."""


# --- what a step did ----------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """One kernel function in a call chain, with its source file and first docstring line."""

    name: str
    source: str
    why: str


@dataclass
class StepInfo:
    n: int
    events: list[Event]
    chain: list[Frame] = field(default_factory=list)
    actor: str | None = None
    note: str = ""

    @property
    def main(self) -> Event | None:
        """The step's SEAMCALL (or its first event when it issued none)."""
        for e in self.events:
            if e.source == MODULE_SOURCE:
                return e
        return self.events[0] if self.events else None

    @property
    def kernel_function(self) -> str:
        return self.chain[-1].name if self.chain else ""

    def describe(self) -> str:
        """The step in words (plain text, one line)."""
        e = self.main
        who = f"[{self.actor}] " if self.actor else ""
        if e is None:
            return f"{who}{self.note or 'no event: the actor ran to its next preemption point'}"
        where = f" on cpu{e.cpu}" if e.cpu is not None else ""
        st = f" -> {e.status}" if e.status else ""
        text = f"{who}{e.op}({', '.join(_show(a) for a in e.args)}){where}{st}"
        if e.source == MODULE_SOURCE and e.op in LEAF_WORDS:
            text += f": {LEAF_WORDS[e.op]}"
        extra = len(self.events) - 1
        if extra > 0:
            text += f" (+{extra} more event{'s' if extra > 1 else ''})"
        return text


LEAF_WORDS = {
    "tdh_mng_create": "create the TD: its TDR page and its private key id (HKID)",
    "tdh_mng_key_config": "program the TD's key on this CPU package",
    "tdh_mng_addcx": "give the module a TDCS page",
    "tdh_mng_init": "initialise the TD (OP_STATE -> INITIALIZED)",
    "tdh_vp_create": "create a vCPU (its TDVPR page)",
    "tdh_vp_addcx": "give the vCPU a TDCX page",
    "tdh_vp_init": "initialise the vCPU and associate it with this CPU",
    "tdh_mem_sept_add": "add a Secure-EPT table page",
    "tdh_mem_page_add": "add an initial (measured) private page",
    "tdh_mr_extend": "measure 256 bytes of the page into MRTD",
    "tdh_mr_finalize": "seal the measurement: OP_STATE -> RUNNABLE",
    "tdh_mem_page_aug": "map a private page at runtime (PENDING until the guest accepts)",
    "tdg_mem_page_accept": "the guest accepts a PENDING page (TDCALL)",
    "tdh_vp_enter": "enter the guest",
    "td_exit": "the guest exits to the host",
    "tdh_mem_range_block": "block the S-EPT entry: no new TLB entries for the page",
    "tdh_mem_track": "start a new TD epoch (TLB tracking)",
    "tdh_mem_page_remove": "remove the page from the S-EPT and give it back",
    "tdh_mem_range_unblock": "unblock the S-EPT entry",
    "tdh_phymem_page_wbinvd": "write back and invalidate the page's cache lines (HKID)",
    "tdh_vp_flush": "flush the vCPU's state off this CPU (dissociate)",
    "tdh_mng_vpflushdone": "check every vCPU is flushed: TD_BLOCKED",
    "tdh_phymem_cache_wb": "write back caches for the TD's key on this package",
    "tdh_mng_key_freeid": "free the HKID: TD_TEARDOWN",
    "tdh_phymem_page_reclaim": "reclaim a TD page (PAMT -> PT_NDA)",
}


def _frame_of(gen) -> Frame | None:
    code = gen.gi_code
    frame = gen.gi_frame
    if frame is None:
        return None
    func = frame.f_globals.get(code.co_name)
    owner = frame.f_locals.get("self")
    if func is None and owner is not None:
        func = getattr(type(owner), code.co_name, None)
    doc = (getattr(func, "__doc__", None) or "").strip()
    why = " ".join(doc.split("\n\n", 1)[0].split())
    src = (frame.f_globals.get("SRC") or frame.f_globals.get("SRC_TDP")
           or frame.f_globals.get("__name__", ""))
    return Frame(code.co_name, src, why)


def call_chain(gen) -> list[Frame]:
    """Kernel functions (outermost first) in which a suspended generator stack waits."""
    out: list[Frame] = []
    while gen is not None and hasattr(gen, "gi_code"):
        name = gen.gi_code.co_name
        if name not in _PLUMBING and not name.startswith("_") and name != "<genexpr>":
            f = _frame_of(gen)
            if f is not None:
                out.append(f)
        gen = gen.gi_yieldfrom
    return out


def touched(e: Event | None) -> dict:
    """What a SEAMCALL touched, for highlighting: {"sept": (level, gpa), "page": pa}."""
    out: dict = {}
    if e is None or e.source != MODULE_SOURCE:
        return out
    a = e.args
    if e.op in ("tdh_mem_range_block", "tdh_mem_page_remove",
                "tdh_mem_range_unblock") and len(a) >= 2:
        out["sept"] = (a[2] if len(a) > 2 else 0, a[1])
    elif e.op in ("tdh_mem_page_aug", "tdh_mem_sept_add") and len(a) == 4:
        out["sept"], out["page"] = (a[2], a[1]), a[3]
    elif e.op == "tdh_mem_page_add" and len(a) >= 3:
        out["sept"], out["page"] = (0, a[1]), a[2]
    elif e.op in ("tdh_phymem_page_reclaim", "tdh_phymem_page_wbinvd") and a:
        out["page"] = a[0] & PA_MASK
    elif e.op in ("tdh_mng_addcx", "tdh_vp_addcx") and len(a) == 2:
        out["page"] = a[1]
    elif e.op in ("tdh_mng_create", "tdh_vp_create") and a:
        out["page"] = a[-1] if e.op == "tdh_vp_create" else a[0]
    return out


# --- a TD's life through KVM's code ---------------------------------------------------------
class TdLifeSource:
    """A TD built with KVM's ioctls and torn down under `strategy`, one SEAMCALL per step.

    `phases` = ("build", "teardown") steps both; ("teardown",) builds first and steps only
    the teardown (`RunningTd.teardown`'s order, teardown.md §1.2)."""

    def __init__(self, memory="64K", vcpus: int = 2, strategy: str = "v6.16", *,
                 phases: tuple[str, ...] = ("build", "teardown"), packages: int = 1):
        if strategy not in TEARDOWN_POLICIES:
            raise ValueError(f"unknown teardown strategy {strategy!r}; "
                             f"choose one of {', '.join(TEARDOWN_POLICIES)}")
        size = parse_size(memory)
        if size // PAGE_SIZE > MAX_STEP_PAGES:
            raise ValueError(f"memory {memory!r} is {size // PAGE_SIZE} pages: step through at "
                             f"most {MAX_STEP_PAGES} (4M); use RunningTd for big TDs")
        if isinstance(vcpus, bool) or not isinstance(vcpus, int) or not 1 <= vcpus <= 8:
            raise ValueError(f"vcpus must be an int from 1 to 8, got {vcpus!r}")
        if not set(phases) <= {"build", "teardown"} or not phases:
            raise ValueError(f"phases must be drawn from ('build', 'teardown'), got {phases!r}")
        self.memory, self.vcpus, self.strategy = memory, vcpus, strategy
        self.phases, self.packages = tuple(phases), packages
        what = " and ".join(p for p in ("build", "teardown") if p in phases)
        self.title = (f"{what} of a {memory} TD with {vcpus} vCPU{'s' * (vcpus > 1)}, "
                      f"teardown strategy {strategy}")
        self.panels = ("timeline", "lifecycle", "sept", "pamt")
        self.reset()

    td_options: dict = {}  # extra RunningTd options (a Dynamic PAMT host, a policy, ...)

    def reset(self) -> None:
        self.td = RunningTd(self.memory, self.vcpus, packages=self.packages, deferred=True,
                            **self.td_options)
        if "build" not in self.phases:
            run_to_completion(self.td.build_steps)
        self.start = len(self.td.trace)
        self.phase = self.phases[0]
        self._gen = self._whole()
        self.done = False
        self.n = 0
        self._counts0: dict[str, int] = {}
        self._tdr = self.td.kt.tdr_pa or None

    def _whole(self):
        if "build" in self.phases:
            yield from self.td.build_steps
            self._tdr = self.td.kt.tdr_pa
        if "teardown" in self.phases:
            self.phase = "teardown"
            self._counts0 = dict(self.td.host.module.counts)
            yield from self.td.teardown_steps(self.strategy)

    # panel state
    @property
    def trace(self) -> Trace:
        return self.td.trace

    @property
    def module(self) -> TdxModule:
        return self.td.host.module

    @property
    def tdr(self) -> int | None:
        return self._tdr or self.td.kt.tdr_pa or None

    kvm = property(lambda self: self.td.kvm)

    def step(self) -> StepInfo:
        if self.done:
            raise Finished("the run is over: press Reset (or change a setting) to start again")
        trace = self.td.trace
        first = len(trace)
        chain = call_chain(self._gen)
        while True:
            mark = len(trace)
            before = call_chain(self._gen)
            try:
                next(self._gen)
            except StopIteration:
                self.done = True
                break
            if any(e.source == MODULE_SOURCE for e in trace.events[mark:]):
                chain = before
                break
        self.n += 1
        return StepInfo(self.n, trace.events[first:], chain, note="" if not self.done else
                        "finished")

    def summary(self) -> str:
        kt, m = self.td.kt, self.td.host.module
        lines = [f"{self.title}: {self.n} steps, phase {self.phase}"
                 + (", finished" if self.done else "")]
        if self.phase == "teardown":
            counts = {k: v - self._counts0.get(k, 0) for k, v in m.counts.items()
                      if v - self._counts0.get(k, 0)}
            lines.append(f"  HKID {'free' if not kt.hkid_assigned else 'still assigned'}; "
                         f"{len(kt.leaked)} pages leaked; KVM_BUG_ON: {len(self.td.kvm.bugs)}")
            lines += [f"  {leaf:<28} {n}" for leaf, n in sorted(counts.items())]
        return "\n".join(lines)


def teardown_source(memory="64K", vcpus: int = 2, strategy: str = "v6.16") -> TdLifeSource:
    return TdLifeSource(memory, vcpus, strategy, phases=("teardown",))


# --- explorer scenarios (TDX worlds and TDP MMU roots worlds) -------------------------------
class ExplorerSource:
    """A registered scenario (`tdxedu.sim.registry`) run by the scheduler; one Step runs actor
    steps until one of them records an event (or the run ends).

    Who runs next: `choices` (a witness from `explore`) or `script` (actor names) first, then
    a `random.Random(seed)` choice among runnable actors when `seed` is given, else the first
    runnable actor (as `run_script` does)."""

    MAX_SILENT = 64

    def __init__(self, scenario: str, *, seed: int | None = None, script=None, choices=None):
        self.scenario = registry.get(scenario)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if isinstance(script, str):
            script = [s.strip() for s in script.replace(",", " ").split() if s.strip()]
        self.script = list(script or [])
        self.choices = list(choices or [])
        self.seed = seed
        how = ("witness" if self.choices else f"seed {seed}" if seed is not None else
               "script" if self.script else "first runnable")
        self.title = f"{self.scenario.name} ({how}): {self.scenario.description}"
        self.reset()
        self.panels = (("timeline", "roots") if self.kvm is not None
                       and hasattr(self.kvm.arch, "tdp_mmu_roots") and self.module is None
                       else ("timeline", "sept", "lifecycle"))

    def reset(self) -> None:
        self.world = self.scenario.build()
        self.ex = Execution(self.world, self.scenario.max_steps)
        self._plan = list(self.choices) + list(self.script)
        self._rng = random.Random(self.seed)
        self.n = 0
        self.done = self.ex.terminal()

    trace = property(lambda self: self.world.trace)
    module = property(lambda self: getattr(self.world, "module", None))
    kvm = property(lambda self: getattr(self.world, "kvm", None))

    @property
    def tdr(self) -> int | None:
        kt = getattr(self.world, "kt", None)
        return getattr(kt, "tdr_pa", None) or None

    def next_actor(self) -> str:
        ready = self.ex.runnable()
        if self._plan:
            name = self._plan[0]
            if name not in ready:
                raise ValueError(f"step {self.n + 1}: the script picks {name!r}, which cannot "
                                 f"run now; runnable: {', '.join(ready)}")
            return self._plan.pop(0)
        if self.seed is not None:
            return self._rng.choice(ready)
        return ready[0]

    def step(self) -> StepInfo:
        if self.done:
            raise Finished("this run is over: press Reset (or pick another run) to start again")
        first = len(self.trace)
        actors: list[str] = []
        chain: list[Frame] = []
        # One Step = scheduler steps until something observable happens (an event) or the run
        # ends; the actors that ran are listed.
        for _ in range(self.MAX_SILENT):
            name = self.next_actor()
            before = call_chain(self.ex.gens[name])
            mark = len(self.trace)
            self.ex.step(name)
            if not actors or actors[-1] != name:
                actors.append(name)
            self.done = self.ex.terminal()
            if _observable(self.trace.events[mark:]):
                chain = before
                break
            if self.done:
                break
        name = ", ".join(actors)
        self.n += 1
        note = ""
        if self.ex.outcome == "exception":
            last = (self.ex.error or "").strip().splitlines()[-1:]
            note = f"the model raised: {last[0] if last else '?'}"
        elif self.ex.outcome == "invariant_violated":
            note = "invariant violated: " + "; ".join(self.ex.violations)
        return StepInfo(self.n, self.trace.events[first:], chain, actor=name, note=note)

    def summary(self) -> str:
        lines = [f"{self.scenario.name}: {self.n} steps"
                 + (f", outcome {self.ex.outcome}" if self.done else ", running")]
        if self.done:
            r = self.ex.result()
            held = sorted(c for c, v in r.conditions.items() if v)
            lines.append("  conditions true: " + (", ".join(held) or "none"))
            lines += [f"  violation: {v}" for v in r.violations]
        return "\n".join(lines)


def _observable(events) -> bool:
    """A Step stops at a new event; lock operations alone do not end a Step (they are drawn
    on the timeline but are rarely what a learner steps to)."""
    return any(event_kind(e) != "lock" for e in events)


def roots_source(scenario: str = "memslot-update", policy: str = "v6.6", *,
                 seed: int | None = 0) -> ExplorerSource:
    """A TDP MMU roots scenario (`tdxedu.lessons.root_scenarios`) by its kind and policy."""
    return ExplorerSource(f"roots-{scenario}-{policy}", seed=seed)


# --- SEAMCALLs in an order you choose (lesson 01) -------------------------------------------
KVM_BUILD_ORDER = ("tdh_mng_create", "tdh_mng_key_config", "tdh_mng_addcx", "tdh_mng_init",
                   "tdh_vp_create", "tdh_vp_addcx", "tdh_vp_init", "tdh_mem_sept_add",
                   "tdh_mem_page_add", "tdh_mr_extend", "tdh_mr_finalize", "tdh_vp_enter")
TEARDOWN_ORDER = ("td_exit", "tdh_vp_flush", "tdh_mng_vpflushdone", "tdh_phymem_cache_wb",
                  "tdh_mng_key_freeid", "tdh_phymem_page_reclaim")
SCRIPT_CALLS = KVM_BUILD_ORDER + TEARDOWN_ORDER
SRC_WRAPPERS = "arch/x86/virt/vmx/tdx/tdx.c"


def _parse_ops(ops, allowed, what: str) -> list[str]:
    if isinstance(ops, str):
        ops = [s.strip() for s in ops.replace(",", " ").split() if s.strip()]
    ops = list(ops)
    if not ops:
        raise ValueError(f"give at least one {what}")
    bad = [o for o in ops if o not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {bad[0]!r}; choose from: {', '.join(allowed)}")
    return ops


class SeamcallScriptSource:
    """One TD, SEAMCALLs issued in the order you give, one per step, on a fresh module.

    Operands are filled in the way KVM would (pages from a bump allocator, GPA 0, vCPU on
    LP 0); `tdh_mng_addcx` / `tdh_vp_addcx` add every TDCS / TDCX page the module needs and
    `tdh_mem_sept_add` every missing table above GPA 0 (KVM's loops), `tdh_mr_extend` one
    256-byte chunk. `tdh_phymem_page_reclaim` reclaims the next page in reverse order of
    allocation (guest page, tables, TDCX, TDVPR, TDCS, and the TDR last)."""

    def __init__(self, calls=KVM_BUILD_ORDER):
        self.calls = _parse_ops(calls, SCRIPT_CALLS, "SEAMCALL")
        self.title = "SEAMCALLs in your order: " + ", ".join(self.calls)
        self.panels = ("timeline", "lifecycle", "pamt")
        self.reset()

    def reset(self) -> None:
        self.trace = Trace()
        self.trace.actor = "kvm"
        self.module = TdxModule(memory=4 << 20, lps_per_package=2, trace=self.trace)
        self.b = TdBuilder(self.module)
        self.tdr: int | None = None
        self.hkid = 33
        self.vp: int | None = None
        self.tdcs: list[int] = []
        self.tdcx: list[int] = []
        self.tables: dict[int, int] = {}
        self.page: int | None = None
        self.kvm = None
        self.n = 0
        self.done = False

    def _reclaim_next(self):
        order = ([self.page] if self.page else []) + [self.tables[k] for k in sorted(
            self.tables)] + self.tdcx + ([self.vp] if self.vp else []) + self.tdcs + (
            [self.tdr] if self.tdr else [])
        for pa in order:
            if self.module.pamt.page_type(pa) != PageType.PT_NDA:
                return pa
        return self.tdr or self.b.page()

    def _issue(self, name: str) -> None:
        m, b = self.module, self.b
        tdr = self.tdr if self.tdr is not None else b.page()
        if name == "tdh_mng_create":
            self.tdr = tdr
            m.tdh_mng_create(tdr, self.hkid)
        elif name == "tdh_mng_key_config":
            m.tdh_mng_key_config(tdr)
        elif name == "tdh_mng_addcx":
            for _ in range(m.tdcs_pages - len(self.tdcs)):
                pa = b.page()
                if m.tdh_mng_addcx(tdr, pa).ok:
                    self.tdcs.append(pa)
                else:
                    break
        elif name == "tdh_mng_init":
            m.tdh_mng_init(tdr, 0)
        elif name == "tdh_vp_create":
            vp = self.vp or b.page()
            if m.tdh_vp_create(tdr, vp).ok:
                self.vp = vp
        elif name == "tdh_vp_addcx":
            for _ in range(m.tdcx_per_vcpu - len(self.tdcx)):
                pa = b.page()
                if m.tdh_vp_addcx(self.vp or b.page(), pa).ok:
                    self.tdcx.append(pa)
                else:
                    break
        elif name == "tdh_vp_init":
            m.tdh_vp_init(self.vp or b.page(), 0, 0, lp=0)
        elif name == "tdh_mem_sept_add":
            for level in (3, 2, 1):
                if level in self.tables:
                    continue
                pa = b.page()
                if not m.tdh_mem_sept_add(tdr, 0, level, pa).ok:
                    break
                self.tables[level] = pa
        elif name == "tdh_mem_page_add":
            pa = self.page or b.page()
            if m.tdh_mem_page_add(tdr, 0, pa, 0).ok:
                self.page = pa
        elif name == "tdh_mr_extend":
            m.tdh_mr_extend(tdr, 0)
        elif name == "tdh_mr_finalize":
            m.tdh_mr_finalize(tdr)
        elif name == "tdh_vp_enter":
            m.tdh_vp_enter(self.vp or b.page(), lp=0)
        elif name == "td_exit":
            m.td_exit(self.vp or b.page(), "HLT", lp=0)
        elif name == "tdh_vp_flush":
            m.tdh_vp_flush(self.vp or b.page(), lp=0)
        elif name == "tdh_mng_vpflushdone":
            m.tdh_mng_vpflushdone(tdr)
        elif name == "tdh_phymem_cache_wb":
            m.tdh_phymem_cache_wb(0)
        elif name == "tdh_mng_key_freeid":
            m.tdh_mng_key_freeid(tdr)
        elif name == "tdh_phymem_page_reclaim":
            m.tdh_phymem_page_reclaim(self._reclaim_next())

    def step(self) -> StepInfo:
        if self.done:
            raise Finished("every call in your list has been issued: press Reset")
        name = self.calls[self.n]
        first = len(self.trace)
        self._issue(name)
        self.n += 1
        self.done = self.n >= len(self.calls)
        return StepInfo(self.n, self.trace.events[first:],
                        [Frame(name, SRC_WRAPPERS, "the kernel's SEAMCALL wrapper")])

    def errors(self) -> list[Event]:
        return [e for e in self.trace if e.source == MODULE_SOURCE and e.status
                and _is_error(e.status)]

    def summary(self) -> str:
        from ..viz.lifecycle import td_states

        lc, op, gone = td_states(self.module, self.tdr)
        state = "TDR reclaimed" if gone else "no TD" if lc is None else lc.name
        lines = [f"{self.n}/{len(self.calls)} calls; TD {state}"
                 + (f", OP_STATE {op.name}" if op is not None else "")]
        for e in self.trace:
            if e.source == MODULE_SOURCE:
                lines.append(f"  {e.op:<24} {e.status}")
        return "\n".join(lines)


def _is_error(status: str) -> bool:
    return status_outcome(status) in ("busy", "error")


# --- removing one private page by hand (lesson 02) ------------------------------------------
REMOVAL_OPS = ("block", "track", "kick", "reenter", "remove", "wbinvd", "unblock")
KVM_REMOVAL = ("block", "track", "kick", "remove", "wbinvd")
REMOVAL_WHY = {
    "block": ("tdh_mem_range_block", "tdx_sept_remove_private_spte",
              "BLOCK: the S-EPT entry stops producing new translations; BEPOCH = TD_EPOCH"),
    "track": ("tdh_mem_track", "tdx_track",
              "TRACK: TD_EPOCH++; vCPUs still in the guest from the old epoch are counted"),
    "kick": ("kvm_make_all_cpus_request", "tdx_track",
             "kick: KVM_REQ_OUTSIDE_GUEST_MODE IPIs every vCPU out of the guest and waits"),
    "reenter": ("tdh_vp_enter", "vcpu_enter_guest",
                "vCPUs re-enter: in the new epoch, flushing their TLB first"),
    "remove": ("tdh_mem_page_remove", "tdx_sept_remove_private_spte",
               "REMOVE: only a blocked entry whose block epoch has been tracked"),
    "wbinvd": ("tdh_phymem_page_wbinvd", "tdx_sept_remove_private_spte",
               "WBINVD the page under the TD's HKID before the host reuses it"),
    "unblock": ("tdh_mem_range_unblock", "tdx_sept_remove_private_spte",
                "UNBLOCK: undo a BLOCK (needs TLB tracking too)"),
}
SRC_KVM = "arch/x86/kvm/vmx/tdx.c"


class RemovalSource:
    """A running TD (`vcpus` vCPUs in the guest, `pages` private pages, HKID assigned); one
    step per operation of `ops` on the page at GPA `gpa`, issued from the host LP.
    The real sequence is 6.16 `tdx_sept_remove_private_spte` (contention.md §5)."""

    def __init__(self, ops=KVM_REMOVAL, *, vcpus: int = 2, gpa: int = 0x1000):
        self.ops = _parse_ops(ops, REMOVAL_OPS, "operation")
        if isinstance(vcpus, bool) or not isinstance(vcpus, int) or not 0 <= vcpus <= 3:
            raise ValueError(f"vcpus must be an int from 0 to 3, got {vcpus!r}")
        if gpa not in (0, 0x1000):
            raise ValueError("gpa must be 0x0 or 0x1000 (the TD has two private pages)")
        self.vcpus, self.gpa = vcpus, gpa
        self.title = (f"remove the page at GPA {gpa:#x} from a TD with {vcpus} vCPU"
                      f"{'s' * (vcpus != 1)} in the guest: " + ", ".join(self.ops))
        self.panels = ("sept", "timeline")
        self.kvm = None
        self.reset()

    def reset(self) -> None:
        self.trace = Trace(enabled=False)
        self.module = TdxModule(memory=4 << 20, lps_per_package=4, trace=self.trace)
        b = TdBuilder(self.module)
        self.built = b.build("finalized", vcpus=self.vcpus, pages=2)
        self.tdr = self.built.tdr
        self.host_lp = self.module.num_lps - 1
        for vp in self.built.vcpus:
            self.module.tdh_vp_enter(vp, lp=self.built.vcpu_lp[vp])
        self.trace.enabled = True
        self.trace.actor = "kvm"
        self.n = 0
        self.done = False

    def in_guest(self) -> list[int]:
        return [vp for vp in self.built.vcpus if self.module.vcpus[vp].in_guest]

    def do(self, op: str) -> None:
        """Issue one operation now (exercises call this: `lab.do("block")`)."""
        self._issue(_parse_ops([op], REMOVAL_OPS, "operation")[0])

    def _issue(self, op: str) -> None:
        m, tdr, gpa, lp = self.module, self.tdr, self.gpa, self.host_lp
        if op == "block":
            m.tdh_mem_range_block(tdr, gpa, 0, lp=lp)
        elif op == "track":
            m.tdh_mem_track(tdr, lp=lp)
        elif op == "kick":
            running = self.in_guest()
            self.trace.emit("kvm_make_all_cpus_request", "KVM_REQ_OUTSIDE_GUEST_MODE",
                            f"ipi={len(running)}", source="virt/kvm/kvm_main.c")
            for vp in running:
                m.td_exit(vp, "EXTERNAL_INTERRUPT", lp=self.built.vcpu_lp[vp])
        elif op == "reenter":
            for vp in self.built.vcpus:
                if not m.vcpus[vp].in_guest:
                    m.tdh_vp_enter(vp, lp=self.built.vcpu_lp[vp])
        elif op == "remove":
            m.tdh_mem_page_remove(tdr, gpa, 0, lp=lp)
        elif op == "wbinvd":
            m.tdh_phymem_page_wbinvd_hkid(self.built.hkid, self.built.private[gpa], lp=lp)
        elif op == "unblock":
            m.tdh_mem_range_unblock(tdr, gpa, 0, lp=lp)

    def step(self) -> StepInfo:
        if self.done:
            raise Finished("every operation in your list has been issued: press Reset")
        op = self.ops[self.n]
        first = len(self.trace)
        self._issue(op)
        self.n += 1
        self.done = self.n >= len(self.ops)
        leaf, fn, why = REMOVAL_WHY[op]
        return StepInfo(self.n, self.trace.events[first:], [Frame(fn, SRC_KVM, why)],
                        note=why)

    def page_state(self) -> str:
        e = self.module.tds[self.tdr].tdcs.sept.entries.get((0, self.gpa))
        return "FREE" if e is None else e.state.name

    def summary(self) -> str:
        c = self.module.tds[self.tdr].tdcs
        lines = [f"after {self.n}/{len(self.ops)} operations: page {self.gpa:#x} is "
                 f"{self.page_state()}; TD_EPOCH={c.td_epoch} REFCOUNT={c.refcount}; "
                 f"vCPUs in guest: {len(self.in_guest())}"]
        for e in self.trace:
            if e.source == MODULE_SOURCE and e.op != "td_exit":
                lines.append(f"  {e.op:<24} {e.status}")
        return "\n".join(lines)


__all__ = ["Finished", "Frame", "StepInfo", "call_chain", "touched", "TdLifeSource",
           "teardown_source", "ExplorerSource", "roots_source", "SeamcallScriptSource",
           "RemovalSource", "KVM_BUILD_ORDER", "TEARDOWN_ORDER", "SCRIPT_CALLS",
           "REMOVAL_OPS", "KVM_REMOVAL", "LEAF_WORDS"]
