"""Random SEAMCALL sequences, valid and invalid operands, random LPs, and stepwise
interleavings of two calls. After every call: no Python exception, every status a known
`Status`, and `check_invariants()` empty (PAMT type/owner vs. the TD holding each page, child
counts, association and epoch refcounts)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from tdx_cases import OUTSIDE, build_world, new_module

from tdxedu.tdx import Leaf
from tdxedu.tdx.metadata import FIELD_IDS
from tdxedu.tdx.pamt import KEYID_SHIFT
from tdxedu.tdx.status import STATUS_CODES, Status

KNOWN = set(STATUS_CODES.values())
GPAS = [0, 0x1000, 0x2000, 0x3000, 0x20_0000, 0x4000_0000, 0x1000 + 8, 1 << 47]

# name -> argument kinds; "pa" draws from the world's addresses, good and bad
CALLS = {
    "tdh_mng_create": ("pa", "hkid"),
    "tdh_mng_key_config": ("pa",),
    "tdh_mng_addcx": ("pa", "pa"),
    "tdh_mng_init": ("pa",),
    "tdh_vp_create": ("pa", "pa"),
    "tdh_vp_addcx": ("pa", "pa"),
    "tdh_vp_init": ("pa", "u64", "u64"),
    "tdh_mem_sept_add": ("pa", "gpa", "level", "pa"),
    "tdh_mem_page_add": ("pa", "gpa", "pa"),
    "tdh_mr_extend": ("pa", "gpa"),
    "tdh_mr_finalize": ("pa",),
    "tdh_mem_page_aug": ("pa", "gpa", "level", "pa"),
    "tdh_vp_enter": ("pa",),
    "td_exit": ("pa",),
    "tdg_mem_page_accept": ("pa", "gpa", "level"),
    "tdg_mem_page_attr_rd": ("pa", "gpa"),
    "tdg_mem_page_attr_wr": ("pa", "gpa", "level", "cmd", "cmd"),
    "tdh_mem_sept_rd": ("pa", "gpa", "level"),
    "tdh_mem_page_demote": ("pa", "gpa", "level", "pa"),
    "tdh_mem_page_promote": ("pa", "gpa", "level"),
    "tdh_mem_range_block": ("pa", "gpa", "level"),
    "tdh_mem_range_unblock": ("pa", "gpa", "level"),
    "tdh_mem_track": ("pa",),
    "tdh_mem_page_remove": ("pa", "gpa", "level"),
    "tdh_mem_sept_remove": ("pa", "gpa", "level"),
    "tdh_vp_flush": ("pa",),
    "tdh_mng_vpflushdone": ("pa",),
    "tdh_phymem_cache_wb": ("cmd",),
    "tdh_mng_key_freeid": ("pa",),
    "tdh_phymem_page_reclaim": ("pa",),
    "tdh_phymem_page_wbinvd": ("pa",),
    "tdh_mng_rd": ("pa", "field"),
    "tdh_mng_wr": ("pa", "field", "u64", "u64"),
    "tdh_vp_rd": ("pa", "field"),
    "tdh_vp_wr": ("pa", "field", "u64", "u64"),
}
NAMES = sorted(CALLS)


def _addresses(w) -> list[int]:
    td = w.td
    good = [td.tdr, *td.tdcs, *td.vcpus, *td.sept_pages.values(), *td.private.values()]
    good += [pa for v in td.vcpus for pa in td.tdcx[v]]
    free = [w.b.page() for _ in range(3)]
    bad = [td.tdr + 8, OUTSIDE, td.tdr | 33 << KEYID_SHIFT, 0x7FFF_F000]
    return good + free + bad


def _args(data, w, kinds, addrs):
    out = []
    for kind in kinds:
        if kind == "pa":
            out.append(data.draw(hs.sampled_from(addrs)))
        elif kind == "gpa":
            out.append(data.draw(hs.sampled_from(GPAS)))
        elif kind == "level":
            out.append(data.draw(hs.integers(-1, 4)))
        elif kind == "hkid":
            out.append(data.draw(hs.sampled_from([w.td.hkid, 34, 35, 32, 4096])))
        elif kind == "cmd":
            out.append(data.draw(hs.integers(0, 2)))
        elif kind == "field":
            out.append(data.draw(hs.sampled_from(sorted(FIELD_IDS.values()))
                                 | hs.integers(0, (1 << 64) - 1)))
        elif kind == "u64":
            out.append(data.draw(hs.sampled_from([0, 0x80, 50_000, (1 << 64) - 1])
                                 | hs.integers(0, (1 << 64) - 1)))
    return out


def _check(m, res):
    assert isinstance(res.status, Status)
    assert int(res.status) & 0xFFFF_FFFF_0000_0000 in KNOWN, res
    bad = m.check_invariants()
    assert not bad, (res, bad)


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=hs.data(), stage=hs.sampled_from(["created", "keys_configured", "initialized",
                                               "finalized"]))
def test_random_seamcall_sequences(data, stage):
    m = new_module(cache_wb_rounds=2)
    vcpus = 2 if stage in ("initialized", "finalized") else 0
    w = build_world(m, stage, vcpus=vcpus, pages=2 if vcpus else 0)
    addrs = _addresses(w)
    for _ in range(data.draw(hs.integers(5, 30))):
        lp = data.draw(hs.integers(0, m.num_lps - 1))
        mode = data.draw(hs.sampled_from(["call", "call", "interleave", "raw"]))
        if mode == "raw":
            leaf = data.draw(hs.integers(0, 64) | hs.sampled_from([1 << 16 | 22, 1 << 24]))
            regs = [data.draw(hs.sampled_from(addrs + GPAS)) for _ in range(3)]
            _check(m, m.seamcall(leaf, *regs, lp=lp))
            continue
        name = data.draw(hs.sampled_from(NAMES))
        args = _args(data, w, CALLS[name], addrs)
        if mode == "call":
            _check(m, getattr(m, name)(*args, lp=lp))
            continue
        # two calls interleaved: A runs to its first preemption point (locks held), B runs
        # to completion on another LP, then A finishes.
        g = m.stepwise(name, *args, lp=lp)
        try:
            next(g)
            paused = True
        except StopIteration as stop:
            paused = False
            _check(m, stop.value)
        name_b = data.draw(hs.sampled_from(NAMES))
        args_b = _args(data, w, CALLS[name_b], addrs)
        lp_b = data.draw(hs.integers(0, m.num_lps - 1))
        res_b = getattr(m, name_b)(*args_b, lp=lp_b)
        assert isinstance(res_b.status, Status)
        if paused:
            try:
                while True:
                    next(g)
            except StopIteration as stop:
                _check(m, stop.value)
        else:
            _check(m, res_b)


def test_every_modelled_leaf_number_dispatches():
    """Each leaf the model routes is reachable by number and never raises on garbage."""
    m = new_module()
    for leaf in Leaf:
        res = m.seamcall(int(leaf), 0x1234, 0x5678, 0x9ABC, 0)
        assert isinstance(res.status, Status)
    assert not m.check_invariants()


def test_invariant_checker_is_not_vacuous():
    """The checker the property test relies on does report corruption."""
    m = new_module()
    w = build_world(m, "finalized")
    assert not m.check_invariants()
    m.td(w.tdr).chldcnt += 1
    assert any("chldcnt" in b for b in m.check_invariants())
    m.td(w.tdr).chldcnt -= 1
    m.pamt.entries[w.td.private[0] >> 12].owner = w.td.tdcs[0]
    assert m.check_invariants()
