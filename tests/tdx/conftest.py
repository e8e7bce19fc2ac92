"""Fixtures for the TDX module model: a 2-package platform and a TD builder.

`td_at(stage, vcpus=, pages=)` builds a TD with real SEAMCALLs (tdxedu.tdx.testing.TdBuilder)
and returns a `World` bundling the module, the builder and the built TD's addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tdxedu.tdx import TdxModule
from tdxedu.tdx.testing import BuiltTd, TdBuilder

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


@pytest.fixture
def module() -> TdxModule:
    return new_module()


@pytest.fixture
def td_at(module):
    def make(stage: str = "finalized", *, vcpus: int = 1, pages: int = 1, **kw) -> World:
        b = TdBuilder(module)
        td = b.build(stage, vcpus=vcpus, pages=pages, **kw)
        return World(module, b, td)

    return make
