"""Shared pieces of the tests/tdx suite: the test platform, `World`, table helpers.

(A plain module rather than conftest so test files can import it; tests/ has no package.)
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tdxedu.tdx import TdxModule
from tdxedu.tdx import status as st
from tdxedu.tdx.pamt import KEYID_SHIFT
from tdxedu.tdx.testing import BuiltTd, TdBuilder

RCX, RDX, R8 = st.TDX_OPERAND_ID_RCX, st.TDX_OPERAND_ID_RDX, st.TDX_OPERAND_ID_R8
OK = st.TDX_SUCCESS
OUTSIDE = 0x4000_0000  # 1 GiB: beyond the 64 MiB TDMR of the test platform
KEYID = 33 << KEYID_SHIFT
FREE_GPA = 0x1000  # a FREE 4K entry in the table that maps GPA 0
NO_TABLE_GPA = 0x20_0000  # 2 MiB: its level-1 entry is FREE, so a 4K walk fails

NUM_PACKAGES = 2
LPS_PER_PACKAGE = 2


def new_module(**kw) -> TdxModule:
    kw.setdefault("memory", 64 << 20)
    kw.setdefault("num_packages", NUM_PACKAGES)
    kw.setdefault("lps_per_package", LPS_PER_PACKAGE)
    return TdxModule(**kw)


@dataclass
class World:
    m: TdxModule
    b: TdBuilder
    td: BuiltTd

    @property
    def tdr(self) -> int:
        return self.td.tdr

    @property
    def vp(self) -> int:
        return self.td.vcpus[0]

    @property
    def vp_lp(self) -> int:
        return self.td.vcpu_lp[self.td.vcpus[0]]

    def other_lp(self, lp: int) -> int:
        return (lp + 1) % self.m.num_lps

    def enter(self, vp: int | None = None):
        vp = self.vp if vp is None else vp
        res = self.m.tdh_vp_enter(vp, lp=self.td.vcpu_lp[vp])
        assert res.status == 0 and res.exit_reason is None, res
        return res

    def exit(self, vp: int | None = None, **kw):
        vp = self.vp if vp is None else vp
        return self.m.td_exit(vp, lp=self.td.vcpu_lp[vp], **kw)

    def block_track(self, gpa: int, lp: int = 0):
        assert self.m.tdh_mem_range_block(self.tdr, gpa, 0, lp=lp).status == 0
        assert self.m.tdh_mem_track(self.tdr, lp=lp).status == 0

    def flush_all(self):
        for vp, lp in self.td.vcpu_lp.items():
            assert self.m.tdh_vp_flush(vp, lp=lp).status == 0

    def cache_wb_all(self):
        for pkg in range(self.m.num_packages):
            assert self.m.tdh_phymem_cache_wb(0, lp=pkg * self.m.lps_per_package).status == 0

    def to_blocked(self):
        """VP.FLUSH every vCPU, then VPFLUSHDONE: lifecycle TD_BLOCKED."""
        self.flush_all()
        assert self.m.tdh_mng_vpflushdone(self.tdr).status == 0

    def to_teardown(self):
        """... then CACHE.WB on every package and KEY.FREEID: lifecycle TD_TEARDOWN."""
        self.to_blocked()
        self.cache_wb_all()
        assert self.m.tdh_mng_key_freeid(self.tdr).status == 0




def C(source, stage, action, expect, **kw):
    """One table row: its id is its source tag and a description."""
    return pytest.param(stage, kw, action, expect, id=source)


def run_case(td_at, stage, kw, action, expect):
    w = td_at(stage, **kw)
    res = action(w)
    assert res.status == expect, f"{res} != {expect}"
    assert not w.m.check_invariants()


def finish(g):
    """Run a stepwise SEAMCALL generator to its end; its Result."""
    try:
        while True:
            next(g)
    except StopIteration as stop:
        return stop.value


def build_world(module, stage="finalized", **kw) -> World:
    b = TdBuilder(module)
    return World(module, b, b.build(stage, **kw))
