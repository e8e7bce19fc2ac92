"""Cases behind docs/conformance.md section 1 (lifecycle, build, vCPU, teardown and metadata
leaves): at least one case per (leaf, status) the section marks as modelled, each in the
`tdx_cases.C` shape (id, stage, action(World) -> Result, expected status, builder kwargs).
tests/tdx/test_conformance_table.py runs them and checks them against the table; the id of a
case names the module file of the check it hits (module 1.5.05, `src/vmm_dispatcher/api_calls/`
unless said otherwise)."""

from __future__ import annotations

from tdx_cases import FREE_GPA, KEYID, NO_TABLE_GPA, OK, OUTSIDE, R8, RCX, RDX, C

from tdxedu.tdx import Leaf
from tdxedu.tdx import status as st
from tdxedu.tdx.metadata import FIELD_IDS, MD_FIELD_ID_NA

R9 = st.TDX_OPERAND_ID_R9
TDR = st.TDX_OPERAND_ID_TDR
KOT = st.TDX_OPERAND_ID_KOT
OP_STATE = st.TDX_OPERAND_ID_OP_STATE
BAD_RAX = st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX
F = FIELD_IDS
ALL = (1 << 64) - 1

CASES: list = []


def case(cid, stage, action, expect, **kw):
    CASES.append(C(cid, stage, action, expect, **kw))


def hold(lock, exclusive=True):
    """Another, imaginary, SEAMCALL holds `lock` (try-locks: the leaf under test fails)."""
    assert lock.try_exclusive("other") if exclusive else lock.try_shared("other")


def page_lock(w, pa):
    return w.m.pamt.entry(pa >> 12).lock


def fatal(w):
    w.m.td(w.tdr).fatal = True


def then(*steps):
    """Run `steps` (callables of w) in order and return the last result."""
    def run(w):
        out = None
        for s in steps:
            out = s(w)
        return out
    return run


def explicit_page(name, stage, call, op, right, wrong, keyid=True, **kw):
    """The four statuses of an explicit 4K page operand (helpers.c
    check_and_lock_explicit_4k_private_hpa + pamt_manager.c pamt_walk): `call(w, pa)` issues
    the leaf with `pa` in that operand; `right(w)` / `wrong(w)` give a page of the type the
    leaf wants / of another type."""
    case(f"{name} operand unaligned", stage, lambda w: call(w, right(w) + 8),
         st.TDX_OPERAND_INVALID | op, **kw)
    if keyid:  # TDH.PHYMEM.PAGE.WBINVD takes a KeyID in those bits
        case(f"{name} operand with KeyID bits", stage, lambda w: call(w, right(w) | KEYID),
             st.TDX_OPERAND_INVALID | op, **kw)
    case(f"{name} operand outside the TDMR", stage, lambda w: call(w, OUTSIDE),
         st.TDX_OPERAND_ADDR_RANGE_ERROR | op, **kw)

    def busy(w):
        pa = right(w)
        hold(page_lock(w, pa))
        return call(w, pa)

    case(f"{name} operand's PAMT entry locked", stage, busy, st.TDX_OPERAND_BUSY | op, **kw)
    case(f"{name} operand of the wrong page type", stage, lambda w: call(w, wrong(w)),
         st.TDX_PAGE_METADATA_INCORRECT | op, **kw)


def td_state(name, leaf_call, *, stages, lock=True, **kw):
    """The statuses of check_state_map_tdcs_and_lock (helpers.c) a leaf can reach. `stages`
    maps a status name to the TD stage (plus setup) that produces it."""
    for status, (stage, setup, extra) in stages.items():
        case(f"{name} TD state: {status}", stage, then(setup, leaf_call),
             getattr(st, status) | extra, **kw)


def _vp_partial(w):
    vp = w.b.page()
    assert w.m.tdh_vp_create(w.tdr, vp).status == OK
    return vp


def _nop(w):
    return None


def _blocked(w):
    w.to_blocked()


def _hold_op_state(w):
    hold(w.m.td(w.tdr).tdcs.op_state_lock)


def _five_tdcs(w):
    w.b.configure_keys(w.td)
    for _ in range(5):
        assert w.m.tdh_mng_addcx(w.tdr, w.b.page()).status == OK


# --- TDH.MNG.CREATE (tdh_mng_create.c) --------------------------------------------------------
case("tdh_mng_create.c success", "created", lambda w: w.m.tdh_mng_create(w.b.page(), 40), OK)
case("tdh_mng_create.c HKID is the global KeyID", "created",
     lambda w: w.m.tdh_mng_create(w.b.page(), w.m.global_keyid), st.TDX_OPERAND_INVALID | RDX)
explicit_page("tdh_mng_create.c TDR", "created", lambda w, pa: w.m.tdh_mng_create(pa, 40), RCX,
              lambda w: w.b.page(), lambda w: w.tdr)
case("tdh_mng_create.c KOT busy", "created",
     then(lambda w: hold(w.m.kot_lock), lambda w: w.m.tdh_mng_create(w.b.page(), 40)),
     st.TDX_OPERAND_BUSY | KOT)
case("tdh_mng_create.c HKID in use", "created",
     lambda w: w.m.tdh_mng_create(w.b.page(), w.td.hkid), st.TDX_HKID_NOT_FREE)

# --- TDH.MNG.KEY.CONFIG (tdh_mng_key_config.c) ------------------------------------------------
explicit_page("tdh_mng_key_config.c TDR", "created",
              lambda w, pa: w.m.tdh_mng_key_config(pa), RCX, lambda w: w.tdr,
              lambda w: w.b.page())
case("tdh_mng_key_config.c FATAL", "created",
     then(fatal, lambda w: w.m.tdh_mng_key_config(w.tdr)), st.TDX_TD_FATAL)
case("tdh_mng_key_config.c lifecycle", "keys_configured",
     lambda w: w.m.tdh_mng_key_config(w.tdr), st.TDX_LIFECYCLE_STATE_INCORRECT)
case("tdh_mng_key_config.c package done", "created",
     then(lambda w: w.m.tdh_mng_key_config(w.tdr, lp=0),
          lambda w: w.m.tdh_mng_key_config(w.tdr, lp=1)), st.TDX_KEY_CONFIGURED)

# --- TDH.MNG.ADDCX (tdh_mng_add_cx.c) ---------------------------------------------------------
explicit_page("tdh_mng_add_cx.c TDR", "keys_configured",
              lambda w, pa: w.m.tdh_mng_addcx(pa, w.b.page()), RDX, lambda w: w.tdr,
              lambda w: w.td.tdcs[0])
case("tdh_mng_add_cx.c FATAL", "keys_configured",
     then(fatal, lambda w: w.m.tdh_mng_addcx(w.tdr, w.b.page())), st.TDX_TD_FATAL)
case("tdh_mng_add_cx.c keys not configured", "created",
     lambda w: w.m.tdh_mng_addcx(w.tdr, w.b.page()), st.TDX_TD_KEYS_NOT_CONFIGURED)
case("tdh_mng_add_cx.c 10th page", "keys_configured",
     lambda w: [w.m.tdh_mng_addcx(w.tdr, w.b.page()) for _ in range(4)][-1],
     st.TDX_TDCX_NUM_INCORRECT)
# (the wrong page is a TDCS page: the TDR itself is locked by the leaf already -> BUSY)
explicit_page("tdh_mng_add_cx.c new page", "keys_configured",
              lambda w, pa: w.m.tdh_mng_addcx(w.tdr, pa), RCX, lambda w: w.b.page(),
              lambda w: w.td.tdcs[0])
case("tdh_mng_add_cx.c 7th page after MNG.INIT", "initialized",
     lambda w: w.m.tdh_mng_addcx(w.tdr, w.b.page()), st.TDX_OP_STATE_INCORRECT, vcpus=0, pages=0)

# --- TDH.MNG.INIT (tdh_mng_init.c) ------------------------------------------------------------
explicit_page("tdh_mng_init.c TDR", "keys_configured", lambda w, pa: w.m.tdh_mng_init(pa), RCX,
              lambda w: w.tdr, lambda w: w.td.tdcs[0])
td_state("tdh_mng_init.c", lambda w: w.m.tdh_mng_init(w.tdr), stages={
    "TDX_TD_FATAL": ("keys_configured", fatal, 0),
    "TDX_TD_KEYS_NOT_CONFIGURED": ("created", _nop, 0),
    "TDX_TDCS_NOT_ALLOCATED": ("created", _five_tdcs, 0),
    "TDX_OP_STATE_INCORRECT": ("initialized", _nop, 0),
}, vcpus=0, pages=0)
case("tdh_mng_init.c TD_PARAMS private KeyID", "keys_configured",
     lambda w: w.m.tdh_mng_init(w.tdr, 0x8000 | KEYID), st.TDX_OPERAND_INVALID | RDX)

# --- TDH.VP.CREATE (tdh_vp_create.c) ----------------------------------------------------------
explicit_page("tdh_vp_create.c TDR", "initialized",
              lambda w, pa: w.m.tdh_vp_create(pa, w.b.page()), RDX, lambda w: w.tdr,
              lambda w: w.td.tdcs[0], vcpus=0, pages=0)
td_state("tdh_vp_create.c", lambda w: w.m.tdh_vp_create(w.tdr, w.b.page()), stages={
    "TDX_TD_FATAL": ("initialized", fatal, 0),
    "TDX_TD_KEYS_NOT_CONFIGURED": ("created", _nop, 0),
    "TDX_TDCS_NOT_ALLOCATED": ("created", _five_tdcs, 0),
    "TDX_OPERAND_BUSY": ("initialized", _hold_op_state, OP_STATE),
    "TDX_OP_STATE_INCORRECT": ("keys_configured", _nop, 0),
}, vcpus=0, pages=0)
explicit_page("tdh_vp_create.c TDVPR", "initialized",
              lambda w, pa: w.m.tdh_vp_create(w.tdr, pa), RCX, lambda w: w.b.page(),
              lambda w: w.td.tdcs[0], vcpus=0, pages=0)

# --- TDH.VP.ADDCX (tdh_vp_addcx.c) ------------------------------------------------------------
explicit_page("tdh_vp_addcx.c TDVPR", "initialized",
              lambda w, pa: w.m.tdh_vp_addcx(pa, w.b.page()), RDX, _vp_partial,
              lambda w: w.tdr, vcpus=0, pages=0)


def _partial_then(step, call):
    def run(w):
        vp = _vp_partial(w)
        step(w)
        return call(w, vp)
    return run


_addcx = lambda w, vp: w.m.tdh_vp_addcx(vp, w.b.page())  # noqa: E731
case("tdh_vp_addcx.c TDR busy", "initialized",
     _partial_then(lambda w: hold(page_lock(w, w.tdr)), _addcx), st.TDX_OPERAND_BUSY | TDR,
     vcpus=0, pages=0)
case("tdh_vp_addcx.c FATAL", "initialized", _partial_then(fatal, _addcx), st.TDX_TD_FATAL,
     vcpus=0, pages=0)
case("tdh_vp_addcx.c keys not configured", "initialized", _partial_then(_blocked, _addcx),
     st.TDX_TD_KEYS_NOT_CONFIGURED, vcpus=0, pages=0)
case("tdh_vp_addcx.c OP_STATE busy", "initialized", _partial_then(_hold_op_state, _addcx),
     st.TDX_OPERAND_BUSY | OP_STATE, vcpus=0, pages=0)
case("tdh_vp_addcx.c after MR.FINALIZE", "initialized",
     then(lambda w: w.b.add_vcpu(w.td),
          _partial_then(lambda w: w.m.tdh_mr_finalize(w.tdr), _addcx)),
     st.TDX_OP_STATE_INCORRECT, vcpus=0, pages=0)
case("tdh_vp_addcx.c vCPU initialised", "initialized",
     lambda w: w.m.tdh_vp_addcx(w.vp, w.b.page()), st.TDX_VCPU_STATE_INCORRECT, pages=0)
case("tdh_vp_addcx.c 15th TDVPS page", "initialized",
     lambda w: (lambda vp: [w.m.tdh_vp_addcx(vp, w.b.page()) for _ in range(15)][-1])(
         _vp_partial(w)), st.TDX_TDCX_NUM_INCORRECT, vcpus=0, pages=0)
explicit_page("tdh_vp_addcx.c new page", "initialized",
              lambda w, pa: w.m.tdh_vp_addcx(_vp_partial(w), pa), RCX, lambda w: w.b.page(),
              lambda w: w.td.tdcs[0], vcpus=0, pages=0)

# --- TDH.VP.INIT (1.5.05 tdh_vp_init.c) -------------------------------------------------------
_init = lambda w, vp: w.m.tdh_vp_init(vp, 0, 9, lp=1)  # noqa: E731
case("tdh_vp_init.c version 2", "initialized",
     lambda w: w.m.seamcall(2 << 16 | Leaf.TDH_VP_INIT, w.b.add_vcpu(w.td, init=False)),
     BAD_RAX, vcpus=1, pages=0)
explicit_page("tdh_vp_init.c TDVPR", "initialized", lambda w, pa: w.m.tdh_vp_init(pa, 0, 9),
              RCX, lambda w: w.b.add_vcpu(w.td, init=False), lambda w: w.tdr, pages=0)
case("tdh_vp_init.c TDR busy (version 1: exclusive)", "initialized",
     _partial_then(lambda w: hold(page_lock(w, w.tdr), exclusive=False), _init),
     st.TDX_OPERAND_BUSY | TDR, pages=0)
case("tdh_vp_init.c FATAL", "initialized", _partial_then(fatal, _init), st.TDX_TD_FATAL,
     pages=0)
case("tdh_vp_init.c keys not configured", "initialized", _partial_then(_blocked, _init),
     st.TDX_TD_KEYS_NOT_CONFIGURED, pages=0)
case("tdh_vp_init.c OP_STATE busy", "initialized", _partial_then(_hold_op_state, _init),
     st.TDX_OPERAND_BUSY | OP_STATE, pages=0)
case("tdh_vp_init.c after MR.FINALIZE", "initialized",
     _partial_then(lambda w: w.m.tdh_mr_finalize(w.tdr), _init), st.TDX_OP_STATE_INCORRECT,
     pages=0)
case("tdh_vp_init.c map_tdvps: no TDCX", "initialized", _partial_then(_nop, _init),
     st.TDX_TDCX_NUM_INCORRECT, pages=0)
case("tdh_vp_init.c twice", "initialized", lambda w: w.m.tdh_vp_init(w.vp, 0, 9, lp=w.vp_lp),
     st.TDX_VCPU_STATE_INCORRECT, pages=0)
case("tdh_vp_init.c x2APIC id above 32 bits", "initialized",
     lambda w: w.m.tdh_vp_init(w.b.add_vcpu(w.td, init=False), 0, 1 << 32),
     st.TDX_OPERAND_INVALID | R8, pages=0)
case("tdh_vp_init.c x2APIC id taken", "initialized",
     lambda w: w.m.tdh_vp_init(w.b.add_vcpu(w.td, init=False), 0, 0),
     st.TDX_X2APIC_ID_NOT_UNIQUE, pages=0)
case("tdh_vp_init.c x2APIC id 3 taken", "initialized",
     lambda w: w.m.tdh_vp_init(w.b.add_vcpu(w.td, init=False), 0, 3),
     st.TDX_X2APIC_ID_NOT_UNIQUE | 3, vcpus=4, pages=0)

# --- TDH.MEM.PAGE.ADD (tdh_mem_page_add.c) ----------------------------------------------------
explicit_page("tdh_mem_page_add.c TDR", "initialized",
              lambda w, pa: w.m.tdh_mem_page_add(pa, FREE_GPA, w.b.page()), RDX,
              lambda w: w.tdr, lambda w: w.td.tdcs[0])
td_state("tdh_mem_page_add.c", lambda w: w.m.tdh_mem_page_add(w.tdr, FREE_GPA, w.b.page()),
         stages={
             "TDX_TD_FATAL": ("initialized", fatal, 0),
             "TDX_TD_KEYS_NOT_CONFIGURED": ("created", _nop, 0),
             "TDX_TDCS_NOT_ALLOCATED": ("created", _five_tdcs, 0),
             "TDX_OP_STATE_INCORRECT": ("finalized", _nop, 0),
         })
case("tdh_mem_page_add.c level 1 in RCX", "initialized",
     lambda w: w.m.seamcall(Leaf.TDH_MEM_PAGE_ADD, FREE_GPA | 1, w.tdr, w.b.page()),
     st.TDX_OPERAND_INVALID | RCX)
case("tdh_mem_page_add.c walk fails", "initialized",
     lambda w: w.m.tdh_mem_page_add(w.tdr, NO_TABLE_GPA, w.b.page()),
     st.TDX_EPT_WALK_FAILED | RCX)
case("tdh_mem_page_add.c entry not FREE", "initialized",
     lambda w: w.m.tdh_mem_page_add(w.tdr, 0, w.b.page()), st.TDX_EPT_ENTRY_STATE_INCORRECT | RCX)
case("tdh_mem_page_add.c private source", "initialized",
     lambda w: w.m.tdh_mem_page_add(w.tdr, FREE_GPA, w.b.page(), 0x5000 | KEYID),
     st.TDX_OPERAND_INVALID | R9)
explicit_page("tdh_mem_page_add.c new page", "initialized",
              lambda w, pa: w.m.tdh_mem_page_add(w.tdr, FREE_GPA, pa), R8,
              lambda w: w.b.page(), lambda w: w.td.tdcs[0])

# --- TDH.MR.EXTEND / TDH.MR.FINALIZE (tdh_mr_extend.c, tdh_mr_finalize.c) ---------------------
explicit_page("tdh_mr_extend.c TDR", "initialized", lambda w, pa: w.m.tdh_mr_extend(pa, 0), RDX,
              lambda w: w.tdr, lambda w: w.td.tdcs[0])
td_state("tdh_mr_extend.c", lambda w: w.m.tdh_mr_extend(w.tdr, 0), stages={
    "TDX_TD_FATAL": ("initialized", fatal, 0),
    "TDX_TD_KEYS_NOT_CONFIGURED": ("created", _nop, 0),
    "TDX_TDCS_NOT_ALLOCATED": ("created", _five_tdcs, 0),
    "TDX_OP_STATE_INCORRECT": ("finalized", _nop, 0),
})
case("tdh_mr_extend.c not 256-aligned", "initialized", lambda w: w.m.tdh_mr_extend(w.tdr, 0x10),
     st.TDX_OPERAND_INVALID | RCX)
case("tdh_mr_extend.c no present leaf", "initialized",
     lambda w: w.m.tdh_mr_extend(w.tdr, FREE_GPA), st.TDX_EPT_ENTRY_NOT_PRESENT | RCX)
case("tdh_mr_extend.c success", "initialized", lambda w: w.m.tdh_mr_extend(w.tdr, 0x100), OK)
explicit_page("tdh_mr_finalize.c TDR", "initialized", lambda w, pa: w.m.tdh_mr_finalize(pa), RCX,
              lambda w: w.tdr, lambda w: w.td.tdcs[0])
td_state("tdh_mr_finalize.c", lambda w: w.m.tdh_mr_finalize(w.tdr), stages={
    "TDX_TD_FATAL": ("initialized", fatal, 0),
    "TDX_TD_KEYS_NOT_CONFIGURED": ("created", _nop, 0),
    "TDX_TDCS_NOT_ALLOCATED": ("created", _five_tdcs, 0),
    "TDX_OP_STATE_INCORRECT": ("finalized", _nop, 0),
})
case("tdh_mr_finalize.c no vCPU", "initialized", lambda w: w.m.tdh_mr_finalize(w.tdr),
     st.TDX_NO_VCPUS, vcpus=0)

# --- TDH.VP.FLUSH (tdh_vp_flush.c) ------------------------------------------------------------
explicit_page("tdh_vp_flush.c TDVPR", "finalized", lambda w, pa: w.m.tdh_vp_flush(pa, lp=w.vp_lp),
              RCX, lambda w: w.vp, lambda w: w.tdr)
case("tdh_vp_flush.c TDR busy", "finalized",
     then(lambda w: hold(page_lock(w, w.tdr)), lambda w: w.m.tdh_vp_flush(w.vp, lp=w.vp_lp)),
     st.TDX_OPERAND_BUSY | TDR)
case("tdh_vp_flush.c keys not configured", "initialized",
     lambda w: (lambda vp: (w.to_blocked(), w.m.tdh_vp_flush(vp))[1])(
         w.b.add_vcpu(w.td, init=False)), st.TDX_TD_KEYS_NOT_CONFIGURED, pages=0)
case("tdh_vp_flush.c map_tdvps", "initialized", lambda w: w.m.tdh_vp_flush(_vp_partial(w)),
     st.TDX_TDCX_NUM_INCORRECT, pages=0)
case("tdh_vp_flush.c other LP", "finalized",
     lambda w: w.m.tdh_vp_flush(w.vp, lp=w.other_lp(w.vp_lp)), st.TDX_VCPU_NOT_ASSOCIATED)

# --- TDH.MNG.VPFLUSHDONE (tdh_mng_vpflushdone.c) ----------------------------------------------
explicit_page("tdh_mng_vpflushdone.c TDR", "finalized",
              lambda w, pa: w.m.tdh_mng_vpflushdone(pa), RCX, lambda w: w.tdr,
              lambda w: w.td.tdcs[0])
case("tdh_mng_vpflushdone.c KOT busy", "finalized",
     then(lambda w: hold(w.m.kot_lock), lambda w: w.m.tdh_mng_vpflushdone(w.tdr)),
     st.TDX_OPERAND_BUSY | KOT)
case("tdh_mng_vpflushdone.c twice", "finalized",
     then(_blocked, lambda w: w.m.tdh_mng_vpflushdone(w.tdr)), st.TDX_LIFECYCLE_STATE_INCORRECT)
case("tdh_mng_vpflushdone.c vCPU still associated", "finalized",
     lambda w: w.m.tdh_mng_vpflushdone(w.tdr), st.TDX_FLUSHVP_NOT_DONE)

# --- TDH.PHYMEM.CACHE.WB (tdh_phymem_cache_wb.c) ----------------------------------------------
case("tdh_phymem_cache_wb.c bad command", "finalized", lambda w: w.m.tdh_phymem_cache_wb(2),
     st.TDX_OPERAND_INVALID | RCX)
case("tdh_phymem_cache_wb.c package mutex", "finalized",
     then(lambda w: hold(w.m.wbcache_lock[0]), lambda w: w.m.tdh_phymem_cache_wb(0)),
     st.TDX_OPERAND_BUSY | st.TDX_OPERAND_ID_WBCACHE)
case("tdh_phymem_cache_wb.c KOT busy", "finalized",
     then(lambda w: hold(w.m.kot_lock), lambda w: w.m.tdh_phymem_cache_wb(0)),
     st.TDX_OPERAND_BUSY | KOT)
case("tdh_phymem_cache_wb.c nothing flushed", "finalized", lambda w: w.m.tdh_phymem_cache_wb(0),
     st.TDX_NO_HKID_READY_TO_WBCACHE)
case("tdh_phymem_cache_wb.c resume without start", "finalized",
     lambda w: w.m.tdh_phymem_cache_wb(1), st.TDX_WBCACHE_RESUME_ERROR)


def _interrupted(w):
    w.to_blocked()
    w.m.cache_wb_rounds = 2
    return w.m.tdh_phymem_cache_wb(0)


case("tdh_phymem_cache_wb.c interrupted", "finalized", _interrupted, st.TDX_INTERRUPTED_RESUMABLE)

# --- TDH.MNG.KEY.FREEID / KEY.RECLAIMID ------------------------------------------------------
explicit_page("tdh_mng_key_freeid.c TDR", "finalized", lambda w, pa: w.m.tdh_mng_key_freeid(pa),
              RCX, lambda w: w.tdr, lambda w: w.td.tdcs[0])
case("tdh_mng_key_freeid.c before VPFLUSHDONE", "finalized",
     lambda w: w.m.tdh_mng_key_freeid(w.tdr), st.TDX_LIFECYCLE_STATE_INCORRECT)
case("tdh_mng_key_freeid.c KOT busy", "finalized",
     then(_blocked, lambda w: hold(w.m.kot_lock), lambda w: w.m.tdh_mng_key_freeid(w.tdr)),
     st.TDX_OPERAND_BUSY | KOT)
case("tdh_mng_key_freeid.c caches not written back", "finalized",
     then(_blocked, lambda w: w.m.tdh_mng_key_freeid(w.tdr)), st.TDX_WBCACHE_NOT_COMPLETE)
case("tdh_mng_key_reclaimid.c no-op", "created",
     lambda w: w.m.seamcall(Leaf.TDH_MNG_KEY_RECLAIMID, w.tdr), OK)

# --- TDH.PHYMEM.PAGE.RECLAIM (tdh_phymem_page_reclaim.c) --------------------------------------
case("tdh_phymem_page_reclaim.c unaligned", "finalized",
     lambda w: w.m.tdh_phymem_page_reclaim(w.tdr + 8), st.TDX_OPERAND_INVALID | RCX)
case("tdh_phymem_page_reclaim.c outside TDMR", "finalized",
     lambda w: w.m.tdh_phymem_page_reclaim(OUTSIDE), st.TDX_OPERAND_ADDR_RANGE_ERROR | RCX)
case("tdh_phymem_page_reclaim.c page locked", "finalized",
     then(lambda w: hold(page_lock(w, w.td.private[0]), exclusive=False),
          lambda w: w.m.tdh_phymem_page_reclaim(w.td.private[0])), st.TDX_OPERAND_BUSY | RCX)
case("tdh_phymem_page_reclaim.c free page", "finalized",
     lambda w: w.m.tdh_phymem_page_reclaim(w.b.page()), st.TDX_PAGE_METADATA_INCORRECT | RCX)
case("tdh_phymem_page_reclaim.c TDR busy", "finalized",
     then(lambda w: w.to_teardown(), lambda w: hold(page_lock(w, w.tdr)),
          lambda w: w.m.tdh_phymem_page_reclaim(w.td.tdcs[0])), st.TDX_OPERAND_BUSY | TDR)
case("tdh_phymem_page_reclaim.c not in teardown", "finalized",
     lambda w: w.m.tdh_phymem_page_reclaim(w.td.private[0]), st.TDX_LIFECYCLE_STATE_INCORRECT)
case("tdh_phymem_page_reclaim.c TDR with children", "finalized",
     then(lambda w: w.to_teardown(), lambda w: w.m.tdh_phymem_page_reclaim(w.tdr)),
     st.TDX_TD_ASSOCIATED_PAGES_EXIST)


def _inside_2m(w):
    """A 2 MB page AUGed into the TD; RECLAIM in teardown names a 4K page inside it."""
    w.b.map_tables(w.td, 4 << 20, down_to=2)
    assert w.m.tdh_mem_page_aug(w.tdr, 4 << 20, 1, 8 << 20).status == OK
    w.to_teardown()
    return w.m.tdh_phymem_page_reclaim((8 << 20) + 0x1000)


case("tdh_phymem_page_reclaim.c 4K inside a 2 MB page", "finalized", _inside_2m,
     st.TDX_OPERAND_INVALID | RCX)

# --- TDH.PHYMEM.PAGE.WBINVD (tdh_phymem_page_wbinvd.c) ----------------------------------------
explicit_page("tdh_phymem_page_wbinvd.c page", "finalized",
              lambda w, pa: w.m.tdh_phymem_page_wbinvd(pa), RCX, lambda w: w.b.page(),
              lambda w: w.tdr, keyid=False)

# --- TDH.MNG.RD / TDH.MNG.WR (tdh_mng_rd_wr.c) ------------------------------------------------
explicit_page("tdh_mng_rd_wr.c RD TDR", "finalized",
              lambda w, pa: w.m.tdh_mng_rd(pa, F["OP_STATE"]), RCX, lambda w: w.tdr,
              lambda w: w.td.tdcs[0])
td_state("tdh_mng_rd_wr.c RD", lambda w: w.m.tdh_mng_rd(w.tdr, F["OP_STATE"]), stages={
    "TDX_TD_FATAL": ("finalized", fatal, 0),
    "TDX_TD_KEYS_NOT_CONFIGURED": ("created", _nop, 0),
    "TDX_TDCS_NOT_ALLOCATED": ("created", _five_tdcs, 0),
    "TDX_OPERAND_BUSY": ("finalized", _hold_op_state, OP_STATE),
    "TDX_OP_STATE_INCORRECT": ("keys_configured", _nop, 0),
})
case("tdh_mng_rd_wr.c RD version 2", "finalized",
     lambda w: w.m.seamcall(2 << 16 | Leaf.TDH_MNG_RD, w.tdr, F["OP_STATE"]), BAD_RAX)
case("tdh_mng_rd_wr.c RD first field", "finalized",
     lambda w: w.m.seamcall(1 << 16 | Leaf.TDH_MNG_RD, w.tdr, MD_FIELD_ID_NA),
     st.TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT)
case("metadata_generic.c RD unknown field", "finalized",
     lambda w: w.m.tdh_mng_rd(w.tdr, 0x9010000200000099), st.TDX_METADATA_FIELD_ID_INCORRECT)
case("metadata_generic.c RD not a single element", "finalized",
     lambda w: w.m.tdh_mng_rd(w.tdr, F["OP_STATE"] | 1 << 38), st.TDX_METADATA_FIELD_ID_INCORRECT)
case("metadata_td.c RD TD_CTLS (production)", "finalized",
     lambda w: w.m.tdh_mng_rd(w.tdr, F["TD_CTLS"]), st.TDX_METADATA_FIELD_NOT_READABLE)
explicit_page("tdh_mng_rd_wr.c WR TDR", "finalized",
              lambda w, pa: w.m.tdh_mng_wr(pa, F["HP_LOCK_TIMEOUT"], 50_000, ALL), RCX,
              lambda w: w.tdr, lambda w: w.td.tdcs[0])
td_state("tdh_mng_rd_wr.c WR", lambda w: w.m.tdh_mng_wr(w.tdr, F["HP_LOCK_TIMEOUT"], 50_000, ALL),
         stages={
             "TDX_TD_FATAL": ("finalized", fatal, 0),
             "TDX_TD_KEYS_NOT_CONFIGURED": ("created", _nop, 0),
             "TDX_TDCS_NOT_ALLOCATED": ("created", _five_tdcs, 0),
             "TDX_OPERAND_BUSY": ("finalized", _hold_op_state, OP_STATE),
             "TDX_OP_STATE_INCORRECT": ("keys_configured", _nop, 0),
         })
case("metadata_generic.c WR unknown field", "finalized",
     lambda w: w.m.tdh_mng_wr(w.tdr, 0x9110000300000099, 0, ALL),
     st.TDX_METADATA_FIELD_ID_INCORRECT)
case("metadata_td.c WR read-only field", "finalized",
     lambda w: w.m.tdh_mng_wr(w.tdr, F["OP_STATE"], 0, ALL), st.TDX_METADATA_FIELD_NOT_WRITABLE)
case("metadata_td.c WR HP_LOCK_TIMEOUT partial mask", "finalized",
     lambda w: w.m.tdh_mng_wr(w.tdr, F["HP_LOCK_TIMEOUT"], 50_000, 0xFFFF_FFFF),
     st.TDX_METADATA_WR_MASK_NOT_VALID)
case("metadata_td.c WR HP_LOCK_TIMEOUT too short", "finalized",
     lambda w: w.m.tdh_mng_wr(w.tdr, F["HP_LOCK_TIMEOUT"], 10, ALL),
     st.TDX_METADATA_FIELD_VALUE_NOT_VALID)

# --- TDH.VP.RD / TDH.VP.WR (tdh_vp_rd_wr.c) ---------------------------------------------------
def vp_rdwr_cases(name, call):
    """TDH.VP.RD or TDH.VP.WR (`call(w, vp, lp)`), up to the field id checks."""
    on_vp = lambda w: call(w, w.vp, w.vp_lp)  # noqa: E731
    explicit_page(f"tdh_vp_rd_wr.c {name} TDVPR", "finalized",
                  lambda w, pa: call(w, pa, w.vp_lp), RCX, lambda w: w.vp, lambda w: w.tdr)
    case(f"tdh_vp_rd_wr.c {name} TDR busy", "finalized",
         then(lambda w: hold(page_lock(w, w.tdr)), on_vp), st.TDX_OPERAND_BUSY | TDR)
    case(f"tdh_vp_rd_wr.c {name} FATAL", "finalized", then(fatal, on_vp), st.TDX_TD_FATAL)
    case(f"tdh_vp_rd_wr.c {name} keys not configured", "finalized", then(_blocked, on_vp),
         st.TDX_TD_KEYS_NOT_CONFIGURED)
    case(f"tdh_vp_rd_wr.c {name} OP_STATE busy", "finalized", then(_hold_op_state, on_vp),
         st.TDX_OPERAND_BUSY | OP_STATE)
    case(f"tdh_vp_rd_wr.c {name} map_tdvps", "initialized",
         lambda w: call(w, _vp_partial(w), 0), st.TDX_TDCX_NUM_INCORRECT, pages=0)
    case(f"tdh_vp_rd_wr.c {name} vCPU in guest", "finalized", then(lambda w: w.enter(), on_vp),
         st.TDX_VCPU_STATE_INCORRECT)
    case(f"tdh_vp_rd_wr.c {name} other LP", "finalized",
         lambda w: call(w, w.vp, w.other_lp(w.vp_lp)), st.TDX_VCPU_ASSOCIATED)


_PIN = F["PIN_BASED_VM_EXEC_CONTROL"]
vp_rdwr_cases("RD", lambda w, vp, lp: w.m.tdh_vp_rd(vp, _PIN, lp=lp))
vp_rdwr_cases("WR", lambda w, vp, lp: w.m.tdh_vp_wr(vp, _PIN, 0x80, 0x80, lp=lp))
case("metadata_generic.c VP.RD unknown field", "finalized",
     lambda w: w.m.tdh_vp_rd(w.vp, 0x0024000300009999, lp=w.vp_lp),
     st.TDX_METADATA_FIELD_ID_INCORRECT)
case("metadata_generic.c VP.WR unknown field", "finalized",
     lambda w: w.m.tdh_vp_wr(w.vp, 0x0024000300009999, 0, ALL, lp=w.vp_lp),
     st.TDX_METADATA_FIELD_ID_INCORRECT)
case("tdh_vp_rd_wr.c RD version 2", "finalized",
     lambda w: w.m.seamcall(2 << 16 | Leaf.TDH_VP_RD, w.vp, F["VCPU_INDEX"], lp=w.vp_lp), BAD_RAX)
case("tdh_vp_rd_wr.c RD first field", "finalized",
     lambda w: w.m.seamcall(1 << 16 | Leaf.TDH_VP_RD, w.vp, MD_FIELD_ID_NA, lp=w.vp_lp),
     st.TDX_METADATA_FIRST_FIELD_ID_IN_CONTEXT)
case("metadata_vp.c RD VCPU_STATE (production)", "finalized",
     lambda w: w.m.tdh_vp_rd(w.vp, F["VCPU_STATE"], lp=w.vp_lp),
     st.TDX_METADATA_FIELD_NOT_READABLE)
case("metadata_vp.c WR a read-only bit", "finalized",
     lambda w: w.m.tdh_vp_wr(w.vp, F["PIN_BASED_VM_EXEC_CONTROL"], 1, 1, lp=w.vp_lp),
     st.TDX_METADATA_FIELD_NOT_WRITABLE)
case("metadata_vp.c WR posted-interrupt descriptor low bits", "finalized",
     lambda w: w.m.tdh_vp_wr(w.vp, F["POSTED_INTR_DESC_ADDR"], 0x1001, ALL, lp=w.vp_lp),
     st.TDX_METADATA_FIELD_VALUE_NOT_VALID)
