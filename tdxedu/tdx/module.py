"""`TdxModule`: the Intel TDX module as KVM sees it, one method per SEAMCALL.

Methods are named and shaped like the kernel wrappers in `arch/x86/virt/vmx/tdx/tdx.c`
(`tdh_mem_page_remove(td, gpa, level)`, ...), taking physical addresses where the wrapper takes
`struct tdx_td` / `struct tdx_vp` (their TDR / TDVPR page). The logical processor is `lp=`.
A wrong operand, state or LP returns the status the real module returns; only Python misuse
(a non-int argument, an LP that does not exist) raises.
"""

from __future__ import annotations

from ..trace import Trace
from . import status as st
from .build import BuildMixin
from .core import CoreMixin, Result, need_int
from .dpamt import DpamtMixin, pamt_page_info
from .guest import GuestMixin
from .leaves import TDX_VERSION_SHIFT, Leaf
from .locks import SharexLock
from .mem import MemMixin
from .metadata import MetadataMixin
from .pamt import KEYID_SHIFT, PAGE_SIZE, PageType, Pamt
from .td import (
    MAX_NUM_TDCS_PAGES,
    MAX_TDCX_PER_VCPU,
    MIN_NUM_TDCS_PAGES,
    MIN_TDCX_PER_VCPU,
    KotState,
    Lifecycle,
    VcpuState,
)
from .teardown import TeardownMixin
from .vcpu import VcpuMixin
from .versions import DEFAULT_MODULE_VERSION, check_version

OWNED_TYPES = (PageType.PT_REG, PageType.PT_TDCX, PageType.PT_TDVPR, PageType.PT_EPT)


class TdxModule(DpamtMixin, CoreMixin, BuildMixin, MemMixin, VcpuMixin, TeardownMixin, GuestMixin,
                MetadataMixin):
    """The TDX module's state: PAMT, TDs, vCPUs, KOT, per-package cache write-back state.

    Defaults are assumptions for teaching, not read from a real module: private HKIDs 33..63
    with the global TDX KeyID 32, and one TDMR of `memory` bytes starting at `base`.
    `tdcs_pages` / `tdcx_per_vcpu` are what the module reports to the host (TDCS_BASE_SIZE,
    TDVPS_BASE_SIZE less the TDVPR: 6 and 5 in module 1.5), i.e. how many pages KVM and
    `TdBuilder` add; the module itself accepts 6..9 TDCS and 5..14 TDCX pages (`tdx.td`).
    `module_version` is the TDX module release whose statuses the model returns where releases
    differ (`tdxedu.tdx.versions`: "1.5.05", the default, or "1.5.01").
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
        dynamic_pamt: bool = False,
        module_version: str = DEFAULT_MODULE_VERSION,
        trace: Trace | None = None,
    ):
        if num_packages < 1 or lps_per_package < 1:
            raise ValueError("need at least one package with one logical processor")
        if not MIN_NUM_TDCS_PAGES <= tdcs_pages <= MAX_NUM_TDCS_PAGES:
            raise ValueError(f"tdcs_pages must be {MIN_NUM_TDCS_PAGES}..{MAX_NUM_TDCS_PAGES} "
                             "(the module's MIN/MAX_NUM_TDCS_PAGES)")
        if not MIN_TDCX_PER_VCPU <= tdcx_per_vcpu <= MAX_TDCX_PER_VCPU:
            raise ValueError(f"tdcx_per_vcpu must be {MIN_TDCX_PER_VCPU}..{MAX_TDCX_PER_VCPU} "
                             "(the module's MIN/MAX_TDVPS_PAGES less the TDVPR)")
        if cache_wb_rounds < 1:
            raise ValueError("cache_wb_rounds must be >= 1")
        self.pamt = Pamt(base, memory)
        self.dynamic_pamt = bool(dynamic_pamt)
        self.module_version = check_version(module_version)
        # RANGE.UNBLOCK's TLB_TRACKING_NOT_DONE operand (`tdxedu.tdx.versions`).
        self._unblock_tracking_op = (st.TDX_OPERAND_ID_SEPT if module_version == "1.5.01"
                                     else st.TDX_OPERAND_ID_RCX)
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
        # pfn -> KeyID whose integrity-protected TD data the page's memory still holds (set
        # when a TD gets the page or its dirty lines are written back; only a full-line
        # MOVDIR64B store by the host resets it: `host_movdir64b`)
        self.td_data: dict[int, int] = {}
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
        """The page now holds TD data written under `keyid`, some of it still in dirty
        cache lines."""
        self.dirty_keyids.setdefault(keyid, set()).add(pa >> 12)
        self.td_data[pa >> 12] = keyid

    def _clean_keyid(self, keyid: int) -> None:
        """Every dirty line under `keyid` written back: the data lands in memory."""
        for pfn in self.dirty_keyids.pop(keyid, ()):
            self.td_data[pfn] = keyid

    def _write_back_page(self, pa: int, keyid: int) -> None:
        lines = self.dirty_keyids.get(keyid)
        if lines is not None and pa >> 12 in lines:
            lines.discard(pa >> 12)
            self.td_data[pa >> 12] = keyid

    def host_movdir64b(self, pa: int) -> None:
        """The host zeroes a page with MOVDIR64B (full 64-byte stores under its own KeyID):
        the memory no longer holds TD data, so ordinary (partial) host writes cannot hit the
        integrity poison ([AH-clear]: only CPUs with X86_BUG_TDX_PW_MCE need this). Lines
        still dirty in a cache under a private KeyID are not touched: written back later,
        they put TD data in memory again (`_write_back_page`, `_clean_keyid`)."""
        self.td_data.pop(pa >> 12, None)

    def holds_td_data(self, pa: int) -> int | None:
        """The KeyID of the TD data the page's memory still holds, if any."""
        return self.td_data.get(pa >> 12)

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
        """Check the Python types (a plain int passes at once; anything else gets
        `need_int`'s TypeError or is accepted as an int subclass), then run the handler."""
        if type(lp) is not int or not 0 <= lp < self.num_lps:
            lp = self._lp(lp)  # raises with a clear message
        for value in args:
            if type(value) is not int:
                for (argname, desc), v in zip(what, args, strict=True):
                    need_int(name, argname, v, desc)
                break
        return self._run(name, lp, args, getattr(self, _HANDLER[name])(*args, lp=lp))

    # --- TD build ------------------------------------------------------------------------
    def tdh_mng_create(self, td: int, hkid: int, *, lp: int = 0) -> Result:
        return self._call("tdh_mng_create", lp, (td, hkid), (_TDR, ("hkid", "host KeyID")))

    def tdh_mng_key_config(self, td: int, *, lp: int = 0) -> Result:
        return self._call("tdh_mng_key_config", lp, (td,), (_TDR,))

    def tdh_mng_addcx(self, td: int, tdcs_page: int, *, lp: int = 0) -> Result:
        return self._call("tdh_mng_addcx", lp, (td, tdcs_page), (_TDR, _PAGE))

    def tdh_mng_init(self, td: int, td_params: int = 0, *, attributes: int = 0,
                     lp: int = 0) -> Result:
        """`attributes` stands for TD_PARAMS.ATTRIBUTES in the page at `td_params` (bit 0 =
        DEBUG); the model does not read the page itself."""
        return self._call("tdh_mng_init", lp, (td, td_params, attributes),
                          (_TDR, ("td_params", "PA"), ("attributes", "TD ATTRIBUTES")))

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
                                                                      bool(progressed), lp=lp))

    def tdg_mem_page_accept(self, vp: int, gpa: int, level: int = 0, *, lp: int = 0):
        """Guest TDCALL from the vCPU running on `lp`."""
        return self._call("tdg_mem_page_accept", lp, (vp, gpa, level), (_TDVPR, _GPA, _LEVEL))

    def tdg_mem_page_attr_rd(self, vp: int, gpa: int, *, lp: int = 0):
        """Guest TDCALL: the mapping level, PENDING bit and attributes of `gpa`."""
        return self._call("tdg_mem_page_attr_rd", lp, (vp, gpa), (_TDVPR, _GPA))

    def tdg_mem_page_attr_wr(self, vp: int, gpa: int, level: int = 0, attrs: int = 0,
                             flags: int = 0, *, lp: int = 0):
        """Guest TDCALL: write the L2 attributes of a page (RDX attributes, R8 flags)."""
        return self._call("tdg_mem_page_attr_wr", lp, (vp, gpa, level, attrs, flags),
                          (_TDVPR, _GPA, _LEVEL, ("attrs", "GPA attributes"),
                           ("flags", "attribute flags")))
    # --- metadata (tdx.metadata) -----------------------------------------------------------
    def tdh_mng_rd(self, td: int, field_id: int, *, lp: int = 0) -> Result:
        """Read one TD metadata field: R8 = its value (kernel `tdh_mng_rd`, version 0)."""
        return self._call("tdh_mng_rd", lp, (td, field_id), (_TDR, _FIELD))

    def tdh_mng_wr(self, td: int, field_id: int, data: int, mask: int, *, lp: int = 0):
        """Write the `mask` bits of one TD metadata field: R8 = its old value."""
        return self._call("tdh_mng_wr", lp, (td, field_id, data, mask),
                          (_TDR, _FIELD, ("data", "value"), ("mask", "write mask")))

    def tdh_vp_rd(self, vp: int, field_id: int, *, lp: int = 0) -> Result:
        """Read one vCPU metadata field on the LP the vCPU is (or will be) associated with
        (kernel `tdh_vp_rd`): R8 = its value."""
        return self._call("tdh_vp_rd", lp, (vp, field_id), (_TDVPR, _FIELD))

    def tdh_vp_wr(self, vp: int, field_id: int, data: int, mask: int, *, lp: int = 0):
        """Write the `mask` bits of one vCPU field (kernel `tdh_vp_wr`): R8 = its old value."""
        return self._call("tdh_vp_wr", lp, (vp, field_id, data, mask),
                          (_TDVPR, _FIELD, ("data", "value"), ("mask", "write mask")))

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

    def tdh_mem_sept_rd(self, td: int, gpa: int, level: int = 0, *, lp: int = 0):
        """Read the S-EPT entry of `gpa` at `level`: RCX = the entry, RDX = level | state."""
        return self._call("tdh_mem_sept_rd", lp, (td, gpa, level), (_TDR, _GPA, _LEVEL))

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
        """Kernel wrapper: WBINVD a page under a TD's private HKID ([K616])."""
        if type(hkid) is not int or type(page) is not int:
            need_int("tdh_phymem_page_wbinvd_hkid", "hkid", hkid, "host KeyID")
            need_int("tdh_phymem_page_wbinvd_hkid", "page", page, "page PA")
        return self.tdh_phymem_page_wbinvd(page | hkid << KEYID_SHIFT, lp=lp)

    def tdh_phymem_page_wbinvd_tdr(self, td: int, *, lp: int = 0) -> Result:
        """Kernel wrapper: WBINVD the TDR under the global TDX KeyID ([K616]
        `tdx_reclaim_td_control_pages`)."""
        need_int("tdh_phymem_page_wbinvd_tdr", "td", td, "TDR PA")
        return self.tdh_phymem_page_wbinvd(td | self.global_keyid << KEYID_SHIFT, lp=lp)

    # --- Dynamic PAMT and page-size changes (tdx.dpamt) -----------------------------------
    def tdh_phymem_pamt_add(self, hpa_2m: int, pamt_page0: int, pamt_page1: int, *,
                            lp: int = 0) -> Result:
        """TDH.PHYMEM.PAMT.ADD: cover the 2 MB range at `hpa_2m` with PAMT_4K held in two
        host pages (they need not be contiguous). The kernel wrapper puts `hpa | TDX_PS_2M`
        in RCX ([V6-03])."""
        return self._call("tdh_phymem_pamt_add", lp, (hpa_2m, pamt_page0, pamt_page1),
                          (("hpa_2m", "2 MB-aligned HPA"), ("pamt_page0", "page PA"),
                           ("pamt_page1", "page PA")))

    def tdh_phymem_pamt_remove(self, hpa_2m: int, *, lp: int = 0) -> Result:
        """TDH.PHYMEM.PAMT.REMOVE: outputs RDX / R8 = the two PAMT pages handed back."""
        return self._call("tdh_phymem_pamt_remove", lp, (hpa_2m,),
                          (("hpa_2m", "2 MB-aligned HPA"),))

    def tdh_mem_page_demote(self, td: int, gpa: int, level: int, page: int,
                            pamt_page0: int = 0, pamt_page1: int = 0, *, lp: int = 0):
        """Split a 2 MB leaf into 512 4K leaves; `page` becomes the new S-EPT page; with
        Dynamic PAMT the pair covers the range's new PAMT_4K entries ([V2-CL])."""
        return self._call("tdh_mem_page_demote", lp,
                          (td, gpa, level, page, pamt_page0, pamt_page1),
                          (_TDR, _GPA, _LEVEL, _PAGE, ("pamt_page0", "page PA"),
                           ("pamt_page1", "page PA")))

    def tdh_mem_page_promote(self, td: int, gpa: int, level: int, *, lp: int = 0):
        """Merge 512 4K leaves into a 2 MB leaf. Outputs RCX = the freed S-EPT page, RDX / R8
        = the returned PAMT pair (Dynamic PAMT)."""
        return self._call("tdh_mem_page_promote", lp, (td, gpa, level), (_TDR, _GPA, _LEVEL))

    # --- register-level entry -------------------------------------------------------------
    def seamcall(self, leaf: int, rcx: int = 0, rdx: int = 0, r8: int = 0, r9: int = 0, *,
                 lp: int = 0) -> Result:
        """SEAMCALL as the CPU sees it: RAX = leaf | version << 16, operands in RCX/RDX/R8/R9.

        Dispatch follows module 1.5 `src/vmm_dispatcher/tdx_vmm_dispatcher.c`:
        * RAX bits above 23 set -> TDX_OPERAND_INVALID | OPERAND_ID_RAX (0);
        * version > 0 on a leaf that has no versions (only SEPT.ADD, SEPT.REMOVE, MNG.RD,
          VP.RD, PAGE.PROMOTE and, from 1.5.05, VP.INIT do; the kernel issues VP.INIT as
          version 1) -> TDX_OPERAND_INVALID | OPERAND_ID_RAX; a versioned leaf rejects
          version > 1 in its handler with the same status;
        * a leaf number the switch does not know -> TDX_OPERAND_INVALID | OPERAND_ID_RAX.
        A memory leaf's RCX is `page_info_api_input_t`: level in bits 2:0, GPA in 51:12, bits
        11:3 and 63:52 reserved (must be zero, checked by `verify_page_info_input` inside the
        handler, so at the handler's point in the order: OPERAND_INVALID | RCX).
        TDH.MNG.KEY.RECLAIMID is a no-op that returns TDX_SUCCESS ([M15] `tdh_mng_key_reclaimid.c`).
        Leaves this model does not implement (TDH.MEM.RD/WR, TDH.SYS.*, migration, ...) return
        TDX_OPERAND_INVALID | OPERAND_ID_RAX too; so do TDH.PHYMEM.PAMT.ADD/REMOVE (58/59) from
        their own handlers when Dynamic PAMT is off (module 2.0 `tdh_phymem_pamt_add.c`).
        PAMT.ADD: RCX = HPA | level, RDX / R8 = the two pages; PAMT.REMOVE: RCX, and the pages
        come back in RDX / R8. See `SEAMCALL_MODELLED` for the leaves that run a handler.
        """
        for name, value in (("leaf", leaf), ("rcx", rcx), ("rdx", rdx), ("r8", r8), ("r9", r9)):
            need_int("seamcall", name, value, "64-bit register value")
            if not 0 <= value < 1 << 64:
                raise ValueError(f"seamcall: {name}={value:#x} does not fit in a 64-bit register")
        lp = self._lp(lp)
        number, version = leaf & 0xFFFF, (leaf >> TDX_VERSION_SHIFT) & 0xFF
        bad_rax = st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX
        if leaf >> 24:
            return self._unsupported(leaf, lp, bad_rax)
        if version and number not in _VERSIONED:
            return self._unsupported(leaf, lp, bad_rax)
        if version > 1:
            return self._unsupported(leaf, lp, bad_rax)
        if number == Leaf.TDH_MNG_KEY_RECLAIMID:
            res = Result("TDH.MNG.KEY.RECLAIMID", st.TDX_SUCCESS)
            self._emit("tdh_mng_key_reclaimid", lp, (rcx,), res)
            return res
        if number == Leaf.TDH_VP_INIT:  # version 0: TDR shared, no x2APIC id
            return self._run("tdh_vp_init", lp, (rcx, rdx, r8),
                             self._h_tdh_vp_init(rcx, rdx, r8, version, lp=lp))
        if number in (Leaf.TDH_MNG_RD, Leaf.TDH_VP_RD):  # version 1: next field id in RDX
            name = "tdh_mng_rd" if number == Leaf.TDH_MNG_RD else "tdh_vp_rd"
            return self._run(name, lp, (rcx, rdx),
                             getattr(self, _HANDLER[name])(rcx, rdx, version, lp=lp))
        route = _ROUTES.get(number)
        if route is None:
            return self._unsupported(leaf, lp, bad_rax)
        return route(self, rcx, rdx, r8, r9, lp)

    def _unsupported(self, leaf: int, lp: int, status) -> Result:
        try:
            name = Leaf(leaf & 0xFFFF).spelled
        except ValueError:
            name = f"SEAMCALL[{leaf:#x}]"
        res = Result(name, status)
        self._emit("seamcall", lp, (leaf,), res)
        return res

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
            elif e.pt == PageType.PT_TDR and (e.pfn << 12) not in self.tds:
                bad.append(f"TDR page {e.pfn << 12:#x} without a TD")
        for r in self.pamt.ranges.values():  # 2 MB leaves count 512 (tdx.dpamt)
            if r.pt == PageType.PT_REG:
                owned[r.owner] = owned.get(r.owner, 0) + 512
        bad += self._dpamt_invariants()
        for pa, td in self.tds.items():
            if owned.get(pa, 0) != td.chldcnt:
                bad.append(f"TD {pa:#x}: chldcnt {td.chldcnt} but owns {owned.get(pa, 0)} pages")
            if td.tdcs is not None:
                assoc = sum(1 for v in td.vcpus.values() if v.assoc_lpid != -1)
                if assoc != td.tdcs.num_assoc_vcpus:
                    bad.append(f"TD {pa:#x}: num_assoc_vcpus {td.tdcs.num_assoc_vcpus} != {assoc}")
                for leaf in td.tdcs.sept.leaves():
                    e = (self.pamt.entries.get(leaf.hpa >> 12) if leaf.level == 0
                         else self.pamt.ranges.get(leaf.hpa >> 21))
                    if td.lifecycle != Lifecycle.TD_TEARDOWN and (
                        e is None or e.pt != PageType.PT_REG or e.owner != pa
                    ):
                        bad.append(f"S-EPT leaf {leaf.gpa:#x} maps a page the TD does not own")
                # Counted: in the guest, or inside VP.ENTER past its epoch step (0-step check).
                counted = sum(1 for v in td.vcpus.values() if v.counted)
                if sum(td.tdcs.refcount) != counted or any(
                        v.state == VcpuState.VCPU_ACTIVE and not v.counted
                        for v in td.vcpus.values()):
                    bad.append(f"TD {pa:#x}: epoch refcounts {td.tdcs.refcount} != {counted} "
                               "vCPUs in guest or entering")
            kot = self.kot.get(td.hkid)
            # (a KeyID freed by this TD may already be assigned to a newer TD on the host)
            if td.lifecycle == Lifecycle.TD_TEARDOWN and kot == KotState.HKID_ASSIGNED and not any(
                    o.hkid == td.hkid and o.lifecycle != Lifecycle.TD_TEARDOWN
                    for o in self.tds.values()):
                bad.append(f"TD {pa:#x} in TD_TEARDOWN but its HKID is still assigned")
        return bad


_PAGE_INFO_RESERVED = (0xFF8) | (~((1 << 52) - 1) & ((1 << 64) - 1))


def _page_info(rcx: int) -> tuple[int, int]:
    """Decode `page_info_api_input_t` (GPA | level). Reserved bits set -> an invalid level, so
    the handler rejects it with OPERAND_INVALID | RCX at the point `verify_page_info_input`
    runs in the module (after the TDR and TD-state checks)."""
    if rcx & _PAGE_INFO_RESERVED:
        return rcx & 0x000F_FFFF_FFFF_F000, 8
    return rcx & 0x000F_FFFF_FFFF_F000, rcx & 7


# Leaf number -> how its registers map onto the kernel-shaped method (module 1.5
# `tdx_vmm_dispatcher.c` for the register assignment of each leaf).
_ROUTES = {
    Leaf.TDH_VP_ENTER: lambda m, rcx, rdx, r8, r9, lp: m.tdh_vp_enter(rcx, lp=lp),
    Leaf.TDH_MNG_ADDCX: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mng_addcx(rdx, rcx, lp=lp),
    Leaf.TDH_MEM_PAGE_ADD: lambda m, rcx, rdx, r8, r9, lp: _page_add(m, rcx, rdx, r8, r9, lp),
    Leaf.TDH_MEM_SEPT_ADD: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mem_sept_add(
        rdx, *_page_info(rcx), r8, lp=lp),
    Leaf.TDH_VP_ADDCX: lambda m, rcx, rdx, r8, r9, lp: m.tdh_vp_addcx(rdx, rcx, lp=lp),
    Leaf.TDH_MEM_PAGE_AUG: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mem_page_aug(
        rdx, *_page_info(rcx), r8, lp=lp),
    Leaf.TDH_MEM_RANGE_BLOCK: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mem_range_block(
        rdx, *_page_info(rcx), lp=lp),
    Leaf.TDH_MNG_KEY_CONFIG: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mng_key_config(rcx, lp=lp),
    Leaf.TDH_MNG_CREATE: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mng_create(rcx, rdx, lp=lp),
    Leaf.TDH_VP_CREATE: lambda m, rcx, rdx, r8, r9, lp: m.tdh_vp_create(rdx, rcx, lp=lp),
    Leaf.TDH_MR_EXTEND: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mr_extend(rdx, rcx, lp=lp),
    Leaf.TDH_MR_FINALIZE: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mr_finalize(rcx, lp=lp),
    Leaf.TDH_VP_FLUSH: lambda m, rcx, rdx, r8, r9, lp: m.tdh_vp_flush(rcx, lp=lp),
    Leaf.TDH_MNG_VPFLUSHDONE: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mng_vpflushdone(rcx, lp=lp),
    Leaf.TDH_MNG_KEY_FREEID: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mng_key_freeid(rcx, lp=lp),
    Leaf.TDH_MNG_INIT: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mng_init(rcx, rdx, lp=lp),
    Leaf.TDH_VP_INIT: None,  # `seamcall` passes the version itself
    Leaf.TDH_MNG_RD: None,
    Leaf.TDH_VP_RD: None,
    Leaf.TDH_MNG_WR: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mng_wr(rcx, rdx, r8, r9, lp=lp),
    Leaf.TDH_VP_WR: lambda m, rcx, rdx, r8, r9, lp: m.tdh_vp_wr(rcx, rdx, r8, r9, lp=lp),
    Leaf.TDH_PHYMEM_PAGE_RECLAIM: lambda m, rcx, rdx, r8, r9, lp: m.tdh_phymem_page_reclaim(
        rcx, lp=lp),
    Leaf.TDH_MEM_PAGE_REMOVE: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mem_page_remove(
        rdx, *_page_info(rcx), lp=lp),
    Leaf.TDH_MEM_SEPT_REMOVE: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mem_sept_remove(
        rdx, *_page_info(rcx), lp=lp),
    Leaf.TDH_MEM_TRACK: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mem_track(rcx, lp=lp),
    Leaf.TDH_MEM_RANGE_UNBLOCK: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mem_range_unblock(
        rdx, *_page_info(rcx), lp=lp),
    Leaf.TDH_PHYMEM_CACHE_WB: lambda m, rcx, rdx, r8, r9, lp: m.tdh_phymem_cache_wb(rcx, lp=lp),
    Leaf.TDH_PHYMEM_PAGE_WBINVD: lambda m, rcx, rdx, r8, r9, lp: m.tdh_phymem_page_wbinvd(
        rcx, lp=lp),
    Leaf.TDH_MEM_PAGE_DEMOTE: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mem_page_demote(
        rdx, *_page_info(rcx), r8, lp=lp),
    Leaf.TDH_MEM_PAGE_PROMOTE: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mem_page_promote(
        rdx, *_page_info(rcx), lp=lp),
    Leaf.TDH_MEM_SEPT_RD: lambda m, rcx, rdx, r8, r9, lp: m.tdh_mem_sept_rd(
        rdx, *_page_info(rcx), lp=lp),
    Leaf.TDH_PHYMEM_PAMT_ADD: lambda m, rcx, rdx, r8, r9, lp: _pamt_leaf(
        m, "tdh_phymem_pamt_add", rcx, (rdx, r8), lp),
    Leaf.TDH_PHYMEM_PAMT_REMOVE: lambda m, rcx, rdx, r8, r9, lp: _pamt_leaf(
        m, "tdh_phymem_pamt_remove", rcx, (), lp),
}


def _pamt_leaf(m, name: str, rcx: int, rest: tuple, lp: int) -> Result:
    hpa, level = pamt_page_info(rcx)
    handler = getattr(m, f"_h_{name}")
    return m._run(name, lp, (hpa, *rest), handler(hpa, *rest, lp=lp, level=level))


def _page_add(m, rcx, rdx, r8, r9, lp):
    gpa, level = _page_info(rcx)
    if level != 0:
        gpa = gpa | 1  # PAGE.ADD is 4K only: any other level is OPERAND_INVALID | RCX
    return m.tdh_mem_page_add(rdx, gpa, r8, r9, lp=lp)


# Leaves the dispatcher accepts with version > 0 (module 1.5.05 `tdx_vmm_dispatcher.c`;
# 1.5.01 lacks VP.INIT).
_VERSIONED = frozenset({
    Leaf.TDH_MEM_PAGE_PROMOTE, Leaf.TDH_MEM_SEPT_ADD, Leaf.TDH_MEM_SEPT_REMOVE, Leaf.TDH_MNG_RD,
    Leaf.TDH_VP_RD, Leaf.TDH_VP_INIT,
})
# Leaves that run a model handler through `seamcall` (plus the no-op KEY.RECLAIMID).
SEAMCALL_MODELLED = frozenset(_ROUTES) | {Leaf.TDH_MNG_KEY_RECLAIMID}

# SEAMCALL name -> its handler's method name (`_h_<name>`), so `_call` formats no string.
_HANDLER = {name[3:]: name for name in dir(TdxModule) if name.startswith("_h_")}

_TDR = ("td", "TDR page PA")
_TDVPR = ("vp", "TDVPR page PA")
_FIELD = ("field_id", "metadata field id")
_PAGE = ("page", "4K-aligned host physical address")
_GPA = ("gpa", "guest physical address")
_LEVEL = ("level", "S-EPT level: 0=4K, 1=2M, 2=1G, 3=512G")

__all__ = ["TdxModule", "Result", "PAGE_SIZE", "SEAMCALL_MODELLED"]
