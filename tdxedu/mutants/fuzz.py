"""Fuzzers for the module and KVM layers, shared by tests/fuzz (bounded, driven by
hypothesis) and bench/fuzz.py (long runs). Every function takes a `random.Random`-like `rng`
(hypothesis' `randoms()` in tests, so failures shrink) and returns counts; a problem is
recorded in `FuzzStats.problems`, never swallowed.

* `fuzz_seamcalls`: register-level SEAMCALLs (`TdxModule.seamcall`), most of them aimed at
  live state (`_aimed_call`: a live TDR/TDVPR/GPA in the register the leaf reads, a leaf that
  fits the entry's or TD's state) so about a quarter complete with TDX_SUCCESS, the rest with
  random leaves and registers; wrapper-shaped calls; guest TD exits; on a module with a built
  TD (static PAMT) or a Dynamic-PAMT module; after each call the status must be a `Status`
  and `check_invariants()` empty.
* `fuzz_guest`: a running TD driven from both sides: vCPUs entering and leaving (0-step
  lists armed at random), guest TDCALLs (ACCEPT, ATTR.RD, ATTR.WR) from the vCPU's LP, and
  the host's memory SEAMCALLs, often with one call paused at its preemption point (its locks
  held) while another runs; 2 MB pages included.
* `fuzz_interleaving`: `run_seeded` over a registered scenario; no run may end in
  ``exception``, and the correct-policy scenarios never in ``invariant_violated`` or a
  deadlock, nor with a condition of the one alarm list (`tdxedu.scenarios.alarms`) that is not
  the kernel's own reaction to an injected failure.
* `fuzz_kvm_flow`: a `RunningTd` driven through random KVM flows (fault in, runtime zap,
  vCPU entry/exit, migration between pCPUs, guest accepts) and torn down with a random
  correct strategy: the report must be clean and the module consistent throughout.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

from ..kvm.hotplug import cpu_down
from ..kvm.kvm import OUTSIDE_GUEST_MODE
from ..kvm.pamt import tdx_topup_pamt_cache, vcpu_pamt_cache
from ..kvm.tdx import (
    tdx_map_private_gfn,
    tdx_sept_remove_private_spte,
    tdx_vcpu_enter,
    tdx_vcpu_exit,
    tdx_vcpu_load,
)
from ..scenarios.alarms import ALARMS
from ..scenarios.registry import load_all
from ..scenarios.td import RunningTd
from ..sim.engine import run_seeded
from ..tdx import Leaf, TdxModule
from ..tdx.metadata import FIELD_IDS, TD_FIELDS, VP_FIELDS
from ..tdx.pamt import KEYID_SHIFT, PAGE_SIZE, PT_NDA
from ..tdx.sept import ANY_BLOCKED, NON_LEAF, SeptState, level_size
from ..tdx.status import TDX_SUCCESS as TDX_SUCCESS_STATUS
from ..tdx.status import Status
from ..tdx.td import Lifecycle, OpState, VcpuState
from ..tdx.testing import BuildError, TdBuilder
from ..trace import run_to_completion

CORRECT_TEARDOWNS = ("v6.16", "terminate-vm", "flush-at-vcpu-free")
#: share of register-level SEAMCALLs whose operands are aimed at live state (`_aimed_call`);
#: the rest get random registers, to keep every error path busy
AIMED_SHARE = 0.7


@dataclass
class FuzzStats:
    seamcalls: int = 0
    td_exits: int = 0
    interleavings: int = 0
    kvm_flows: int = 0
    kvm_ops: int = 0
    reg_calls: int = 0  # register-level SEAMCALLs (`TdxModule.seamcall`)
    reg_deep: int = 0  # ... that completed with TDX_SUCCESS (a handler's success path)
    reg_deep_writes: int = 0  # ... of those, leaves that change state (not MNG/VP/SEPT.RD)
    outcomes: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)  # status class -> count
    problems: list[str] = field(default_factory=list)

    def merge(self, other: FuzzStats) -> None:
        self.seamcalls += other.seamcalls
        self.td_exits += other.td_exits
        self.interleavings += other.interleavings
        self.kvm_flows += other.kvm_flows
        self.kvm_ops += other.kvm_ops
        self.reg_calls += other.reg_calls
        self.reg_deep += other.reg_deep
        self.reg_deep_writes += other.reg_deep_writes
        for d, o in ((self.outcomes, other.outcomes), (self.statuses, other.statuses)):
            for k, v in o.items():
                d[k] = d.get(k, 0) + v
        self.problems += other.problems


# --- module layer ----------------------------------------------------------------------------

_LEAVES = [int(x) for x in Leaf] + [1 << 16 | 22, 1 << 16 | 3, 2 << 16 | 3, 1 << 24, 63]


def _module_world(rng, dynamic_pamt: bool):
    """A module with something in it: a TD built to a random stage (static PAMT), or a DPAMT
    module with one PAMT pair installed by hand (TdBuilder hands out 4K pages without pairs)."""
    m = TdxModule(memory=8 << 20, num_packages=2, lps_per_package=2,
                  cache_wb_rounds=rng.choice((1, 2)), dynamic_pamt=dynamic_pamt)
    b = TdBuilder(m)
    pool: list[int] = []
    if dynamic_pamt:
        pages = [b.page() for _ in range(6)]
        m.tdh_phymem_pamt_add(2 << 20, pages[0], pages[1])
        pool += pages + [2 << 20, 4 << 20, 6 << 20]
    else:
        stage = rng.choice(("created", "keys_configured", "initialized", "finalized"))
        vcpus = rng.choice((1, 2)) if stage in ("initialized", "finalized") else 0
        td = b.build(stage, vcpus=vcpus, pages=rng.choice((0, 1, 2)) if vcpus else 0)
        pool += [td.tdr, *td.tdcs, *td.vcpus, *td.sept_pages.values(), *td.private.values()]
        pool += [pa for v in td.vcpus for pa in td.tdcx[v]]
    pool += [b.page() for _ in range(4)]
    spare = [b.page() for _ in range(32)]  # free pages for the aimed calls to hand over
    return m, pool, spare


def _operand(rng, pool: list[int]) -> int:
    r = rng.random()
    if r < 0.45:
        return rng.choice(pool)
    if r < 0.65:  # GPA | level, the page_info layout
        return rng.choice((0, 0x1000, 0x2000, 0x20_0000, 0x4000_0000)) | rng.randrange(0, 5)
    if r < 0.75:
        return rng.choice(pool) | rng.choice((33, 32, 34)) << KEYID_SHIFT
    if r < 0.85:
        return rng.randrange(0, 4)
    if r < 0.95:
        return rng.randrange(0, 1 << 64)
    return rng.choice(pool) + rng.choice((8, 0x800, -PAGE_SIZE)) & ((1 << 64) - 1)


# Kernel-wrapper shaped calls (`TdxModule.tdh_*`): operands land in the right registers, so
# far more calls get past the operand checks than with raw registers.
_NAMED = {
    "tdh_mng_key_config": "p", "tdh_mng_addcx": "pp", "tdh_mng_init": "p",
    "tdh_vp_create": "pp", "tdh_vp_addcx": "pp", "tdh_vp_init": "p",
    "tdh_mem_sept_add": "pglp", "tdh_mem_page_add": "pgp", "tdh_mr_extend": "pg",
    "tdh_mr_finalize": "p", "tdh_mem_page_aug": "pglp", "tdh_vp_enter": "p",
    "tdg_mem_page_accept": "pgl", "tdh_mem_range_block": "pgl",
    "tdh_mem_range_unblock": "pgl", "tdh_mem_track": "p", "tdh_mem_page_remove": "pgl",
    "tdh_mem_sept_remove": "pgl", "tdh_vp_flush": "p", "tdh_mng_vpflushdone": "p",
    "tdh_phymem_cache_wb": "c", "tdh_mng_key_freeid": "p", "tdh_phymem_page_reclaim": "p",
    "tdh_phymem_page_wbinvd": "p", "tdh_phymem_pamt_add": "ppp",
    "tdh_phymem_pamt_remove": "p", "tdh_mem_page_demote": "pglppp",
    "tdh_mem_page_promote": "pgl", "tdh_mem_sept_rd": "pgl", "tdg_mem_page_attr_rd": "pg",
    "tdg_mem_page_attr_wr": "pglcc",
    "tdh_mng_rd": "pf", "tdh_mng_wr": "pfvv", "tdh_vp_rd": "pf", "tdh_vp_wr": "pfvv",
}
_NAMES = sorted(_NAMED)
_FIELDS = sorted(FIELD_IDS.values())


def _named_args(rng, kinds: str, pool: list[int]) -> list[int]:
    out = []
    for k in kinds:
        if k == "p":
            out.append(rng.choice(pool) if rng.random() < 0.9 else _operand(rng, pool))
        elif k == "g":
            out.append(rng.choice((0, 0x1000, 0x2000, 0x3000, 0x20_0000, 0x1000 + 8)))
        elif k == "l":
            out.append(rng.choice((0, 0, 0, 1, 2, 3, -1)))
        elif k == "f":  # a metadata field id: a modelled one, perhaps with bits flipped
            fid = rng.choice(_FIELDS)
            out.append(fid if rng.random() < 0.7 else fid ^ 1 << rng.randrange(64))
        elif k == "v":
            out.append(rng.choice((0, 0x80, 0xFFFF, 50_000, (1 << 64) - 1,
                                   rng.randrange(0, 1 << 64))))
        else:
            out.append(rng.randrange(0, 3))
    return out


# --- register-level calls aimed at live state ------------------------------------------------

_L = Leaf
#: leaves that only read, or (KEY.RECLAIMID) do nothing: their success is not a deep one
_SHALLOW = frozenset({int(_L.TDH_MNG_KEY_RECLAIMID)})
_READS = frozenset({int(_L.TDH_MNG_RD), int(_L.TDH_VP_RD), int(_L.TDH_MEM_SEPT_RD)})
_ON_VCPU_LP = frozenset({int(_L.TDH_VP_ENTER), int(_L.TDH_VP_FLUSH), int(_L.TDH_VP_RD),
                         int(_L.TDH_VP_WR)})


def _live(m):
    """What a caller who tracks the module's state would pass: live TDRs, TDVPRs, and the
    S-EPT entries of each TD by state."""
    tdrs = sorted(m.tds)
    vps = sorted(m.vcpus)
    entries = []
    for tdr in tdrs:
        tdcs = m.tds[tdr].tdcs
        if tdcs is not None:
            entries += [(tdr, e) for e in tdcs.sept.entries.values()]
    return tdrs, vps, entries


def _free_page(rng, m, pool):
    """A page the module does not own (from the world's spare pages, then the pool)."""
    for pages in (pool[-32:], pool):
        free = [pa for pa in pages if m.pamt.page_type(pa) == PT_NDA]
        if free:
            return rng.choice(free)
    return rng.choice(pool)


def _next_build_step(rng, m, td, pool):
    """The leaf that moves a TD on in its build (module 1.5 order: KEY.CONFIG per package,
    MNG.ADDCX, MNG.INIT, VP.CREATE, PAGE.ADD, MR.FINALIZE), or None once it runs."""
    tdr = td.pa
    if td.lifecycle == Lifecycle.TD_HKID_ASSIGNED:
        return int(_L.TDH_MNG_KEY_CONFIG), [tdr, 0, 0, 0]
    if td.lifecycle != Lifecycle.TD_KEYS_CONFIGURED:
        return int(_L.TDH_PHYMEM_PAGE_RECLAIM), [rng.choice(pool), 0, 0, 0]
    tdcs = td.tdcs
    if tdcs is None:
        return int(_L.TDH_MNG_ADDCX), [_free_page(rng, m, pool), tdr, 0, 0]
    if tdcs.op_state == OpState.UNINITIALIZED:
        return int(_L.TDH_MNG_INIT), [tdr, _free_page(rng, m, pool), 0, 0]
    if tdcs.op_state == OpState.INITIALIZED and rng.random() < 0.5:
        inited = any(v.td is td and v.state != VcpuState.VCPU_UNINITIALIZED
                     for v in m.vcpus.values())
        leaf = rng.choice((_L.TDH_VP_CREATE, _L.TDH_MEM_PAGE_ADD) + (
            (_L.TDH_MR_FINALIZE,) if inited else ()))
        if leaf == _L.TDH_VP_CREATE:
            return int(leaf), [_free_page(rng, m, pool), tdr, 0, 0]
        if leaf == _L.TDH_MEM_PAGE_ADD:
            gpa = rng.choice((0, 0x1000, 0x2000, 0x3000))
            return int(leaf), [gpa, tdr, _free_page(rng, m, pool), _free_page(rng, m, pool)]
        return int(leaf), [tdr, 0, 0, 0]
    return None


def _aimed_call(rng, m, pool) -> tuple[int, list[int]]:
    """A register-level SEAMCALL whose operands come from the module's live state, in the
    registers the leaf reads (RCX/RDX/R8/R9 as `TdxModule.seamcall` dispatches them, module
    1.5 `tdx_vmm_dispatcher.c`), and whose leaf fits the state of the entry or TD it names:
    a mapped page gets BLOCK, a blocked one TRACK / REMOVE / UNBLOCK, a free GPA AUG or
    SEPT.ADD; TDs and vCPUs get their metadata reads and writes, VP.ENTER / VP.FLUSH."""
    tdrs, vps, entries = _live(m)
    r = rng.random()
    if entries and r < 0.6:
        tdr, e = rng.choice(entries)
        pi = e.gpa | e.level
        st_ = e.state
        if st_ in NON_LEAF and e.level != 1:
            if st_ == SeptState.NL_BLOCKED:
                leaf = rng.choice((_L.TDH_MEM_SEPT_REMOVE, _L.TDH_MEM_RANGE_UNBLOCK,
                                   _L.TDH_MEM_TRACK))
            else:
                leaf = rng.choice((_L.TDH_MEM_SEPT_RD, _L.TDH_MEM_RANGE_BLOCK,
                                   _L.TDH_MEM_SEPT_ADD))
                if leaf == _L.TDH_MEM_SEPT_ADD and e.level > 1:  # a table below it
                    child = e.level - 1
                    gpa = e.gpa + rng.randrange(0, 4) * level_size(child)
                    return int(leaf), [gpa | child, tdr, _free_page(rng, m, pool), 0]
        elif st_ in ANY_BLOCKED:
            leaf = rng.choice((_L.TDH_MEM_TRACK, _L.TDH_MEM_PAGE_REMOVE,
                               _L.TDH_MEM_PAGE_REMOVE, _L.TDH_MEM_RANGE_UNBLOCK))
        elif e.level == 1 or st_ in (SeptState.FREE, SeptState.REMOVED):
            # AUG a 4K GPA under a 4K table (NL_MAPPED at level 1), or one a removal freed
            base = e.gpa if e.level == 1 else e.gpa & ~(level_size(1) - 1)
            gpa = base + rng.randrange(0, 8) * 0x1000
            return int(_L.TDH_MEM_PAGE_AUG), [gpa, tdr, _free_page(rng, m, pool), 0]
        else:  # mapped or pending
            leaf = rng.choice((_L.TDH_MEM_RANGE_BLOCK, _L.TDH_MEM_SEPT_RD,
                               _L.TDH_MEM_RANGE_BLOCK))
        if leaf == _L.TDH_MEM_TRACK:
            return int(leaf), [tdr, 0, 0, 0]
        return int(leaf), [pi, tdr, 0, 0]
    if tdrs and r < 0.8:
        tdr = rng.choice(tdrs)
        td = m.tds[tdr]
        step = _next_build_step(rng, m, td, pool)
        if step is not None:
            return step
        leaf = rng.choice((_L.TDH_MNG_RD, _L.TDH_MNG_WR, _L.TDH_MNG_WR, _L.TDH_MEM_TRACK))
        f = rng.choice(TD_FIELDS)
        if leaf == _L.TDH_MNG_RD:
            return int(leaf), [tdr, f.field_id, 0, 0]
        if leaf == _L.TDH_MNG_WR:  # HP_LOCK_TIMEOUT is the writable one: a value in range
            return int(leaf), [tdr, FIELD_IDS["HP_LOCK_TIMEOUT"],
                               rng.choice((10_000, 100_000, 50_000, 0)), (1 << 64) - 1]
        return int(leaf), [tdr, 0, 0, 0]
    if vps:
        ready = [vp for vp in vps if m.vcpus[vp].state != VcpuState.VCPU_UNINITIALIZED]
        vp = rng.choice(ready if ready and rng.random() < 0.8 else vps)
        v = m.vcpus[vp]
        if len(v.tdcx_pa) < m.tdcx_per_vcpu:
            return int(_L.TDH_VP_ADDCX), [_free_page(rng, m, pool), vp, 0, 0]
        if v.state == VcpuState.VCPU_UNINITIALIZED:  # version 1: x2APIC id in R8
            used = {u.vcpu_index for u in m.vcpus.values() if u.td is v.td}
            x2apic = next(i for i in range(len(used) + 1) if i not in used)
            return int(_L.TDH_VP_INIT) | 1 << 16, [vp, 0, x2apic, 0]
        leaf = rng.choice((_L.TDH_VP_RD, _L.TDH_VP_WR, _L.TDH_VP_WR, _L.TDH_VP_FLUSH,
                           _L.TDH_VP_ENTER))
        f = rng.choice(VP_FIELDS)
        if leaf == _L.TDH_VP_RD:
            return int(leaf), [vp, f.field_id, 0, 0]
        if leaf == _L.TDH_VP_WR:
            return int(leaf), [vp, f.field_id, rng.choice((0, 0x80, 0xF0)), f.prod_wr]
        return int(leaf), [vp, 0, 0, 0]
    return int(_L.TDH_PHYMEM_PAGE_RECLAIM), [rng.choice(pool), 0, 0, 0]


def fuzz_seamcalls(rng, n: int, *, dynamic_pamt: bool | None = None,
                   check_every: int = 1) -> FuzzStats:
    """`n` SEAMCALLs (and guest TD exits) on one fresh module."""
    s = FuzzStats()
    dp = rng.random() < 0.3 if dynamic_pamt is None else dynamic_pamt
    m, pool, spare = _module_world(rng, dp)
    pool += spare  # last: `_free_page` looks there first
    for i in range(n):
        lp = rng.randrange(m.num_lps)
        try:
            if rng.random() < 0.08 and m.vcpus:
                vp = rng.choice(sorted(m.vcpus))
                res = m.td_exit(vp, rng.choice(("HLT", "EPT_VIOLATION")), rng.choice((0, 0x1000)),
                                rng.random() < 0.5, lp=lp)
                s.td_exits += 1
            elif rng.random() < 0.6:
                name = rng.choice(_NAMES)
                res = getattr(m, name)(*_named_args(rng, _NAMED[name], pool), lp=lp)
                s.seamcalls += 1
            else:
                if rng.random() < AIMED_SHARE:
                    leaf, regs = _aimed_call(rng, m, pool)
                    if rng.random() < 0.1:  # one register spoiled
                        regs[rng.randrange(4)] = _operand(rng, pool)
                    if leaf in _ON_VCPU_LP and regs[0] in m.vcpus:
                        assoc = m.vcpus[regs[0]].assoc_lpid
                        lp = assoc if assoc >= 0 and rng.random() < 0.8 else lp
                    elif leaf == _L.TDH_MNG_KEY_CONFIG:  # the package not configured yet
                        lp = rng.randrange(m.num_packages) * m.lps_per_package
                else:
                    leaf = rng.choice(_LEAVES)
                    regs = [_operand(rng, pool) for _ in range(4)]
                res = m.seamcall(leaf, *regs, lp=lp)
                s.seamcalls += 1
                s.reg_calls += 1
                if res.status == TDX_SUCCESS_STATUS and leaf & 0xFFFF not in _SHALLOW:
                    s.reg_deep += 1
                    s.reg_deep_writes += leaf & 0xFFFF not in _READS
        except Exception:
            s.problems.append("exception: " + traceback.format_exc(limit=4))
            return s
        if not isinstance(res.status, Status):
            s.problems.append(f"non-Status result {res!r}")
        cls = f"{int(res.status) >> 32:#x}"
        s.statuses[cls] = s.statuses.get(cls, 0) + 1
        if check_every and (i % check_every == 0 or i == n - 1):
            bad = m.check_invariants()
            if bad:
                s.problems.append(f"invariant after {res!r}: {bad[0]}")
                return s
    return s


# --- guest and host together ----------------------------------------------------------------

_GUEST_GPAS = (0, 0x1000, 0x2000, 0x3000, 0x20_0000, 0x20_1000, 0x40_0000, 0x4000_0000,
               0x1000 + 8, 1 << 47)
_HOST_MEM = ("tdh_mem_range_block", "tdh_mem_range_unblock", "tdh_mem_page_remove",
             "tdh_mem_sept_remove", "tdh_mem_sept_rd", "tdh_mem_page_promote")


def _page_2m(b) -> int:
    try:
        return b.page_2m()
    except BuildError:  # no free 2 MB range left: a 4K page (the AUG then fails, as it should)
        return b.page()


def _guest_world(rng):
    m = TdxModule(memory=16 << 20, num_packages=2, lps_per_package=2)
    b = TdBuilder(m)
    td = b.build("finalized", vcpus=2, pages=2)
    b.aug(td, 0x2000)
    if rng.random() < 0.5:  # a 2 MB page at GPA 2 MB
        m.tdh_mem_page_aug(td.tdr, 0x20_0000, 1, _page_2m(b))
    return m, b, td


def _guest_op(rng, m, b, td):
    """One random operation; returns the SEAMCALL generator when it runs stepwise."""
    vp = rng.choice(td.vcpus)
    home = td.vcpu_lp[vp]
    lp = home if rng.random() < 0.85 else rng.randrange(m.num_lps)
    gpa, level = rng.choice(_GUEST_GPAS), rng.choice((0, 0, 0, 1, 1, 2, 3, -1))
    r = rng.random()
    if r < 0.15:
        return "tdh_vp_enter", (vp,), lp
    if r < 0.3:
        reason = rng.choice(("HLT", "EPT_VIOLATION", "EPT_VIOLATION", "EXTERNAL_INTERRUPT"))
        return "td_exit", (vp, reason, gpa & ~0xFFF, rng.random() < 0.3), lp
    if r < 0.55:
        inside = [v for v in td.vcpus if m.vcpus[v].in_guest]
        if inside and rng.random() < 0.9:  # mostly from a vCPU that is in the guest
            vp = rng.choice(inside)
            lp = m.vcpus[vp].assoc_lpid
        name = rng.choice(("tdg_mem_page_accept", "tdg_mem_page_attr_rd",
                           "tdg_mem_page_attr_wr"))
        args = {"tdg_mem_page_accept": (vp, gpa, level), "tdg_mem_page_attr_rd": (vp, gpa),
                "tdg_mem_page_attr_wr": (vp, gpa, level, rng.choice((0, 0, 1)),
                                         rng.choice((0, 0, 1)))}[name]
        return name, args, lp
    if r < 0.62:
        return "tdh_mem_track", (td.tdr,), lp
    if r < 0.7:
        page = _page_2m(b) if level == 1 and rng.random() < 0.5 else b.page()
        return "tdh_mem_page_aug", (td.tdr, gpa, level, page), lp
    if r < 0.75:
        return "tdh_mem_sept_add", (td.tdr, gpa, level, b.page()), lp
    if r < 0.8:
        return "tdh_mem_page_demote", (td.tdr, gpa, level, b.page()), lp
    return rng.choice(_HOST_MEM), (td.tdr, gpa, level), lp


def _issue(m, name, args, lp, stepwise: bool):
    if name == "td_exit":
        return m.td_exit(*args, lp=lp), None
    if stepwise:
        g = m.stepwise(name, *args, lp=lp)
        try:
            next(g)
        except StopIteration as stop:
            return stop.value, None
        return None, g
    return getattr(m, name)(*args, lp=lp), None


def fuzz_guest(rng, n: int) -> FuzzStats:
    """`n` operations on a running TD from the guest and the host side (see the module
    docstring); after each: a `Status`, no exception, `check_invariants()` empty."""
    s = FuzzStats()
    m, b, td = _guest_world(rng)
    paused = None  # (name, generator, LP) of a call stopped at its preemption point
    for _ in range(n):
        try:
            if rng.random() < 0.05:  # arm a 0-step list on a vCPU that is not in the guest
                vp = rng.choice(td.vcpus)
                v = m.vcpus[vp]
                if not v.in_guest:
                    v.epf_count, v.epf_gpas = 6, [rng.choice(_GUEST_GPAS) & ~0xFFF]
            name, args, lp = _guest_op(rng, m, b, td)
            if paused is not None and lp == paused[2]:
                continue  # an LP runs one SEAMCALL at a time
            res, g = _issue(m, name, args, lp, paused is None and rng.random() < 0.4)
            s.seamcalls += 1
            if g is not None:
                paused = (name, g, lp)
                continue
            if paused is not None and rng.random() < 0.6:
                try:
                    next(paused[1])
                    raise AssertionError(f"{paused[0]}: more than one preemption point")
                except StopIteration as stop:
                    s.interleavings += 1
                    res2 = stop.value
                    if not isinstance(res2.status, Status):
                        s.problems.append(f"non-Status result {res2!r}")
                paused = None
        except Exception:
            s.problems.append("exception: " + traceback.format_exc(limit=6))
            return s
        if not isinstance(res.status, Status):
            s.problems.append(f"non-Status result {res!r}")
            return s
        cls = f"{int(res.status) >> 32:#x}"
        s.statuses[cls] = s.statuses.get(cls, 0) + 1
        if paused is None:
            bad = m.check_invariants()
            if bad:
                s.problems.append(f"invariant after {name}{args} -> {res!r}: {bad[0]}")
                return s
    return s


# --- scenario interleavings ------------------------------------------------------------------

def correct_scenarios() -> list[str]:
    """Registered scenarios that run correct policies (no known-bad variant in the name)."""
    bad = ("no-retry", "retry-loop", "v19-notifier", "no-pamt-lock", "module-hint", "broken-")
    return sorted(n for n in load_all() if not any(b in n for b in bad))


def fuzz_interleaving(name: str, seed: int) -> FuzzStats:
    """One seeded random interleaving of a registered scenario."""
    s = FuzzStats()
    sc = load_all()[name]
    r = run_seeded(sc.build, seed, max_steps=sc.max_steps)
    s.interleavings = 1
    s.outcomes[r.outcome] = 1
    if r.outcome == "exception":
        s.problems.append(f"{name} seed {seed}: exception {r.error}")
    elif name in correct_scenarios():
        if r.outcome in ("invariant_violated", "deadlock"):
            s.problems.append(f"{name} seed {seed}: {r.outcome} "
                              f"{r.violations[0] if r.violations else ''}")
        # the one alarm list: a correct policy raises none (but the kernel's own reaction to
        # an injected failure, a check-mutants factory's `reaction`)
        expected = _reaction(name)
        alarms = [c for c in ALARMS if r.conditions.get(c) and c not in expected]
        if alarms:
            s.problems.append(f"{name} seed {seed}: alarm {', '.join(alarms)}")
    return s


def _reaction(name: str) -> tuple[str, ...]:
    from .scenarios import FACTORIES

    f = FACTORIES.get(name.removeprefix("mutant-")) if name.startswith("mutant-") else None
    return f.reaction if f is not None else ()


# --- KVM layer -------------------------------------------------------------------------------

KVM_OPS = ("map", "zap", "run", "migrate", "accept", "offline")


def fuzz_kvm_flow(rng, ops: int = 12) -> FuzzStats:
    """Build a small TD (static or Dynamic PAMT), apply `ops` random KVM operations, tear it
    down with a random correct strategy; check the module after each op and the report."""
    s = FuzzStats(kvm_flows=1)
    pages = rng.randrange(1, 5)
    dp = rng.random() < 0.4
    td = RunningTd(memory=pages * PAGE_SIZE, vcpus=rng.randrange(1, 3),
                   initial_pages=rng.randrange(0, pages + 1), accept=rng.random() < 0.7,
                   dynamic_pamt=dp, trace=False, cpus_per_package=rng.choice((2, 3)),
                   packages=rng.choice((1, 2)))
    kvm, m = td.kvm, td.host.module
    online = td.host.cpu_online
    gpas = [i * PAGE_SIZE for i in range(pages + 2)]  # two GPAs beyond the initial memory
    strategy = rng.choice(CORRECT_TEARDOWNS)
    try:
        for _ in range(ops):
            op = rng.choice(KVM_OPS)
            v = rng.choice(kvm.vcpus)
            gpa = rng.choice(gpas)
            s.kvm_ops += 1
            if op == "map":
                if dp:
                    tdx_topup_pamt_cache(td.host, vcpu_pamt_cache(v))
                if v.cpu < 0:  # a fault runs in the vCPU's context: loaded on some CPU
                    run_to_completion(tdx_vcpu_load(v, online.index(True)))
                run_to_completion(_locked(kvm, tdx_map_private_gfn(kvm, gpa, v.cpu, v), False))
            elif op == "zap":
                run_to_completion(_locked(kvm, tdx_sept_remove_private_spte(kvm, gpa, 0), True))
            elif op == "offline":  # CPU hotplug (refused for a package's last CPU)
                run_to_completion(cpu_down(td.host, rng.randrange(td.host.nr_cpus)))
            elif op in ("run", "accept"):
                cpu = v.cpu if v.cpu >= 0 and online[v.cpu] else online.index(True)
                r = run_to_completion(tdx_vcpu_enter(v, cpu))
                if r is not None and not r.status.is_error and not r.exit_reason:
                    if op == "accept":
                        m.tdg_mem_page_accept(v.arch.tdx.tdvpr_pa, gpa, 0, lp=cpu)
                    run_to_completion(tdx_vcpu_exit(v, "HLT"))
                elif r is not None:
                    v.mode = OUTSIDE_GUEST_MODE
            elif op == "migrate":
                cpu = rng.choice([c for c in range(td.host.nr_cpus) if online[c]])
                r = run_to_completion(tdx_vcpu_enter(v, cpu))
                if r is not None and not r.status.is_error and not r.exit_reason:
                    run_to_completion(tdx_vcpu_exit(v, "HLT"))
                elif r is not None:
                    v.mode = OUTSIDE_GUEST_MODE
            bad = (m.check_invariants() + list(td.host.allocator.errors)
                   + td.host.check_invariants())
            if bad or kvm.bugs:
                s.problems.append(f"after {op}({gpa:#x}, {v.name}): {(bad or kvm.bugs)[0]}")
                return s
        rep = td.teardown(strategy)
    except Exception:
        s.problems.append("exception: " + traceback.format_exc(limit=5))
        return s
    if not rep.ok or rep.hkid_state != "free":
        s.problems.append(f"teardown {strategy} (dpamt={dp}) not clean: {rep.summary()}")
    bad = m.check_invariants() + td.host.check_invariants()
    if bad:
        s.problems.append(f"after teardown {strategy}: {bad[0]}")
    return s


def _locked(kvm, gen, write: bool):
    who = "fuzz"
    if write:
        yield from kvm.mmu_lock.write_lock(who)
    else:
        yield from kvm.mmu_lock.read_lock(who)
    try:
        return (yield from gen)
    finally:
        if write:
            kvm.mmu_lock.write_unlock(who)
        else:
            kvm.mmu_lock.read_unlock(who)


__all__ = ["FuzzStats", "fuzz_seamcalls", "fuzz_guest", "fuzz_interleaving", "fuzz_kvm_flow",
           "correct_scenarios", "KVM_OPS", "CORRECT_TEARDOWNS"]
