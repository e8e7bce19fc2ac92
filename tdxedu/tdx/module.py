"""`TdxModule`: the Intel TDX module as KVM sees it, one method per SEAMCALL.

Methods are named and shaped like the kernel wrappers in `arch/x86/virt/vmx/tdx/tdx.c`
(`tdh_mem_page_remove(td, gpa, level)`, ...), taking physical addresses where the wrapper takes
`struct tdx_td` / `struct tdx_vp` (their TDR / TDVPR page). The logical processor is `lp=`.
A wrong operand, state or LP returns the status the real module returns; only Python misuse
(a non-int argument, an LP that does not exist) raises.
"""

from __future__ import annotations

from ..trace import Trace
from .build import BuildMixin
from .core import CoreMixin, Result, need_int
from .guest import GuestMixin
from .locks import SharexLock
from .mem import MemMixin
from .pamt import KEYID_SHIFT, PAGE_SIZE, Pamt, PageType
from .td import KotState, Lifecycle, VcpuState
from .teardown import TeardownMixin
from .vcpu import VcpuMixin

OWNED_TYPES = (PageType.PT_REG, PageType.PT_TDCX, PageType.PT_TDVPR, PageType.PT_EPT)


class TdxModule(CoreMixin, BuildMixin, MemMixin, VcpuMixin, TeardownMixin, GuestMixin):
    """The TDX module's state: PAMT, TDs, vCPUs, KOT, per-package cache write-back state.

    Defaults are assumptions for teaching, not read from a real module: 6 TDCS pages (module
    1.5.01 MIN_NUM_TDCS_PAGES), 5 TDCX pages per vCPU, private HKIDs 33..63 with the global
    TDX KeyID 32, and one TDMR of `memory` bytes starting at `base`.
    """

    def __init__(
        self,
        *,
        memory: int = 64 << 20,
        base: int = 0,
        num_packages: int = 1,
        lps_per_package: int = 4,
        tdcs_pages: int = 6,
        tdcx_per_vcpu: int = 5,
        global_keyid: int = 32,
        private_hkids: range = range(33, 64),
        cache_wb_rounds: int = 1,
        trace: Trace | None = None,
    ):
        if num_packages < 1 or lps_per_package < 1:
            raise ValueError("need at least one package with one logical processor")
        if tdcs_pages < 4:
            raise ValueError("the S-EPT root is TDCS page 3: tdcs_pages must be >= 4")
        if cache_wb_rounds < 1:
            raise ValueError("cache_wb_rounds must be >= 1")
        self.pamt = Pamt(base, memory)
        self.num_packages = num_packages
        self.lps_per_package = lps_per_package
        self.num_lps = num_packages * lps_per_package
        self.tdcs_pages = tdcs_pages
        self.tdcx_per_vcpu = tdcx_per_vcpu
        self.global_keyid = global_keyid
        self.private_hkids = private_hkids
        self.cache_wb_rounds = cache_wb_rounds
        self.trace = trace
        self.tds: dict = {}
        self.vcpus: dict = {}
        self.kot = {h: KotState.HKID_FREE for h in private_hkids}
        self.kot_lock = SharexLock("KOT")
        self.wbinvd_bitmap: dict[int, set[int]] = {}
        self.wbcache_lock = [SharexLock(f"WBCACHE[pkg{p}]") for p in range(num_packages)]
        self.wbcache_saved: list = [None] * num_packages
        self.dirty_keyids: dict[int, set[int]] = {}  # KeyID -> pfns with dirty cache lines
        self.counts: dict[str, int] = {}
        self.reclaimed = 0

    # --- helpers --------------------------------------------------------------------------
    def package_of(self, lp: int) -> int:
        return lp // self.lps_per_package

    def _lp(self, lp) -> int:
        lp = need_int("SEAMCALL", "lp", lp, "logical processor number")
        if not 0 <= lp < self.num_lps:
            raise ValueError(f"lp={lp} does not exist: this platform has LPs 0..{self.num_lps-1}")
        return lp

    def _dirty(self, pa: int, keyid: int) -> None:
        self.dirty_keyids.setdefault(keyid, set()).add(pa >> 12)

    def _clean_keyid(self, keyid: int) -> None:
        self.dirty_keyids.pop(keyid, None)

    def has_dirty_lines(self, pa: int) -> int | None:
        """The KeyID under which this page still has dirty cache lines, if any."""
        pfn = pa >> 12
        for keyid, pfns in self.dirty_keyids.items():
            if pfn in pfns:
                return keyid
        return None

    def td(self, tdr: int):
        return self.tds.get(tdr)

    def stepwise(self, name: str, *args, lp: int = 0):
        """The generator of one SEAMCALL, for a scheduler to interleave with other LPs."""
        handler = getattr(self, f"_h_{name}", None)
        if handler is None:
            raise AttributeError(f"no SEAMCALL handler named {name!r}")
        lp = self._lp(lp)
        return self._steps(name, lp, args, handler(*args, lp=lp))

    def _call(self, name: str, lp, args: tuple, what: tuple) -> Result:
        lp = self._lp(lp)
        for (argname, desc), value in zip(what, args, strict=True):
            need_int(name, argname, value, desc)
        return self._run(name, lp, args, getattr(self, f"_h_{name}")(*args, lp=lp))

    # --- TD build ------------------------------------------------------------------------
    def tdh_mng_create(self, td: int, hkid: int, *, lp: int = 0) -> Result:
        return self._call("tdh_mng_create", lp, (td, hkid), (_TDR, ("hkid", "host KeyID")))

    def tdh_mng_key_config(self, td: int, *, lp: int = 0) -> Result:
        return self._call("tdh_mng_key_config", lp, (td,), (_TDR,))

    def tdh_mng_addcx(self, td: int, tdcs_page: int, *, lp: int = 0) -> Result:
        return self._call("tdh_mng_addcx", lp, (td, tdcs_page), (_TDR, _PAGE))

    def tdh_mng_init(self, td: int, td_params: int = 0, *, lp: int = 0) -> Result:
        return self._call("tdh_mng_init", lp, (td, td_params), (_TDR, ("td_params", "PA")))

    def tdh_vp_create(self, td: int, vp: int, *, lp: int = 0) -> Result:
        return self._call("tdh_vp_create", lp, (td, vp), (_TDR, _TDVPR))

    def tdh_vp_addcx(self, vp: int, tdcx_page: int, *, lp: int = 0) -> Result:
        return self._call("tdh_vp_addcx", lp, (vp, tdcx_page), (_TDVPR, _PAGE))

    def tdh_vp_init(self, vp: int, initial_rcx: int = 0, x2apicid: int = 0, *, lp: int = 0):
        what = (_TDVPR, ("initial_rcx", "value"), ("x2apicid", "APIC id"))
        return self._call("tdh_vp_init", lp, (vp, initial_rcx, x2apicid), what)

    def tdh_mem_sept_add(self, td: int, gpa: int, level: int, page: int, *, lp: int = 0):
        return self._call("tdh_mem_sept_add", lp, (td, gpa, level, page),
                          (_TDR, _GPA, _LEVEL, _PAGE))

    def tdh_mem_page_add(self, td: int, gpa: int, page: int, source: int = 0, *, lp: int = 0):
        return self._call("tdh_mem_page_add", lp, (td, gpa, page, source),
                          (_TDR, _GPA, _PAGE, ("source", "PA of the source page")))

    def tdh_mr_extend(self, td: int, gpa: int, *, lp: int = 0) -> Result:
        return self._call("tdh_mr_extend", lp, (td, gpa), (_TDR, _GPA))

    def tdh_mr_finalize(self, td: int, *, lp: int = 0) -> Result:
        return self._call("tdh_mr_finalize", lp, (td,), (_TDR,))

    def tdh_mem_page_aug(self, td: int, gpa: int, level: int, page: int, *, lp: int = 0):
        return self._call("tdh_mem_page_aug", lp, (td, gpa, level, page),
                          (_TDR, _GPA, _LEVEL, _PAGE))

    # --- running --------------------------------------------------------------------------
    def tdh_vp_enter(self, vp: int, *, lp: int = 0) -> Result:
        """Enter the guest. Success with no `exit_reason` means the vCPU is now in the guest,
        holding its TDR and TDVPR shared until `td_exit`."""
        return self._call("tdh_vp_enter", lp, (vp,), (_TDVPR,))

    def td_exit(self, vp: int, reason: str = "HLT", gpa: int = 0, progressed: bool = True,
                *, lp: int = 0) -> Result:
        """The guest exits: the second half of TDH.VP.ENTER. An EPT_VIOLATION with
        `progressed=False` (same guest RIP) counts towards 0-step mitigation."""
        if not isinstance(reason, str):
            raise TypeError(f"td_exit: reason must be a str, got {type(reason).__name__}")
        lp = self._lp(lp)
        need_int("td_exit", "vp", vp, "TDVPR PA")
        need_int("td_exit", "gpa", gpa, "GPA")
        return self._run("td_exit", lp, (vp, reason), self._h_td_exit(vp, reason, gpa,
                                                                      bool(progressed), lp))

    def tdg_mem_page_accept(self, vp: int, gpa: int, level: int = 0, *, lp: int = 0):
        """Guest TDCALL from the vCPU running on `lp`."""
        return self._call("tdg_mem_page_accept", lp, (vp, gpa, level), (_TDVPR, _GPA, _LEVEL))

    # --- runtime removal ------------------------------------------------------------------
    def tdh_mem_range_block(self, td: int, gpa: int, level: int = 0, *, lp: int = 0):
        return self._call("tdh_mem_range_block", lp, (td, gpa, level), (_TDR, _GPA, _LEVEL))

    def tdh_mem_range_unblock(self, td: int, gpa: int, level: int = 0, *, lp: int = 0):
        return self._call("tdh_mem_range_unblock", lp, (td, gpa, level), (_TDR, _GPA, _LEVEL))

    def tdh_mem_track(self, td: int, *, lp: int = 0) -> Result:
        return self._call("tdh_mem_track", lp, (td,), (_TDR,))

    def tdh_mem_page_remove(self, td: int, gpa: int, level: int = 0, *, lp: int = 0):
        return self._call("tdh_mem_page_remove", lp, (td, gpa, level), (_TDR, _GPA, _LEVEL))

    def tdh_mem_sept_remove(self, td: int, gpa: int, level: int, *, lp: int = 0):
        return self._call("tdh_mem_sept_remove", lp, (td, gpa, level), (_TDR, _GPA, _LEVEL))

    # --- teardown -------------------------------------------------------------------------
    def tdh_vp_flush(self, vp: int, *, lp: int = 0) -> Result:
        return self._call("tdh_vp_flush", lp, (vp,), (_TDVPR,))

    def tdh_mng_vpflushdone(self, td: int, *, lp: int = 0) -> Result:
        return self._call("tdh_mng_vpflushdone", lp, (td,), (_TDR,))

    def tdh_phymem_cache_wb(self, resume: int = 0, *, lp: int = 0) -> Result:
        return self._call("tdh_phymem_cache_wb", lp, (int(resume) if isinstance(resume, bool)
                                                      else resume,), (("resume", "0 or 1"),))

    def tdh_mng_key_freeid(self, td: int, *, lp: int = 0) -> Result:
        return self._call("tdh_mng_key_freeid", lp, (td,), (_TDR,))

    def tdh_phymem_page_reclaim(self, page: int, *, lp: int = 0) -> Result:
        """Outputs: rcx = page type, rdx = owner (TDR PA), r8 = page size (0 = 4K)."""
        return self._call("tdh_phymem_page_reclaim", lp, (page,), (_PAGE,))

    def tdh_phymem_page_wbinvd(self, pa_with_keyid: int, *, lp: int = 0) -> Result:
        return self._call("tdh_phymem_page_wbinvd", lp, (pa_with_keyid,),
                          (("pa_with_keyid", "PA with the KeyID in its upper bits"),))

    def tdh_phymem_page_wbinvd_hkid(self, hkid: int, page: int, *, lp: int = 0) -> Result:
        """Kernel wrapper: WBINVD a page under a TD's private HKID (teardown.md §1.2 step 4)."""
        need_int("tdh_phymem_page_wbinvd_hkid", "hkid", hkid, "host KeyID")
        need_int("tdh_phymem_page_wbinvd_hkid", "page", page, "page PA")
        return self.tdh_phymem_page_wbinvd(page | hkid << KEYID_SHIFT, lp=lp)

    def tdh_phymem_page_wbinvd_tdr(self, td: int, *, lp: int = 0) -> Result:
        """Kernel wrapper: WBINVD the TDR under the global TDX KeyID (teardown.md §1.2)."""
        need_int("tdh_phymem_page_wbinvd_tdr", "td", td, "TDR PA")
        return self.tdh_phymem_page_wbinvd(td | self.global_keyid << KEYID_SHIFT, lp=lp)

    # --- consistency ----------------------------------------------------------------------
    def check_invariants(self) -> list[str]:
        """Module-internal consistency, for tests and the invariant checker."""
        bad: list[str] = []
        owned: dict[int, int] = {}
        for e in self.pamt.entries.values():
            if e.pt in OWNED_TYPES:
                td = self.tds.get(e.owner)
                if td is None:
                    bad.append(f"page {e.pfn << 12:#x} ({e.pt.name}) owned by a TD that is gone")
                owned[e.owner] = owned.get(e.owner, 0) + 1
            elif e.pt == PageType.PT_TDR and e.owner not in self.tds:
                bad.append(f"TDR page {e.pfn << 12:#x} without a TD")
        for pa, td in self.tds.items():
            if owned.get(pa, 0) != td.chldcnt:
                bad.append(f"TD {pa:#x}: chldcnt {td.chldcnt} but owns {owned.get(pa, 0)} pages")
            if td.tdcs is not None:
                assoc = sum(1 for v in td.vcpus.values() if v.assoc_lpid != -1)
                if assoc != td.tdcs.num_assoc_vcpus:
                    bad.append(f"TD {pa:#x}: num_assoc_vcpus {td.tdcs.num_assoc_vcpus} != {assoc}")
                for leaf in td.tdcs.sept.leaves():
                    e = self.pamt.entries.get(leaf.hpa >> 12)
                    if td.lifecycle != Lifecycle.TD_TEARDOWN and (
                        e is None or e.pt != PageType.PT_REG or e.owner != pa
                    ):
                        bad.append(f"S-EPT leaf {leaf.gpa:#x} maps a page the TD does not own")
                running = sum(1 for v in td.vcpus.values() if v.state == VcpuState.VCPU_ACTIVE)
                if sum(td.tdcs.refcount) != running:
                    bad.append(f"TD {pa:#x}: epoch refcounts {td.tdcs.refcount} != {running} "
                               "vCPUs in guest")
            kot = self.kot.get(td.hkid)
            if td.lifecycle == Lifecycle.TD_TEARDOWN and kot == KotState.HKID_ASSIGNED:
                bad.append(f"TD {pa:#x} in TD_TEARDOWN but its HKID is still assigned")
        return bad


_TDR = ("td", "TDR page PA")
_TDVPR = ("vp", "TDVPR page PA")
_PAGE = ("page", "4K-aligned host physical address")
_GPA = ("gpa", "guest physical address")
_LEVEL = ("level", "S-EPT level: 0=4K, 1=2M, 2=1G, 3=512G")

__all__ = ["TdxModule", "Result", "PAGE_SIZE"]
