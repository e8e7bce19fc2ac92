"""Build a TD to a chosen point with the module's own SEAMCALLs, the way KVM does.

Used by the tests and handy in lessons and notebooks: `TdBuilder(module).build("finalized",
vcpus=2, pages=3)` issues TDH.MNG.CREATE, TDH.MNG.KEY.CONFIG on one LP per package,
TDH.MNG.ADDCX per TDCS page, TDH.MNG.INIT, per vCPU TDH.VP.CREATE / VP.ADDCX / VP.INIT on the
LP it will run on, S-EPT pages with TDH.MEM.SEPT.ADD, initial pages with TDH.MEM.PAGE.ADD +
TDH.MR.EXTEND, and TDH.MR.FINALIZE (order: KVM_TDX_INIT_VM, KVM_TDX_INIT_VCPU,
KVM_TDX_INIT_MEM_REGION, KVM_TDX_FINALIZE_VM; [K616]).
Every step must succeed; a failure raises `BuildError` naming the SEAMCALL and its status.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .pamt import PAGE_SIZE, PageType
from .sept import level_size

EXTENDMR_CHUNK = 256  # kernel TDX_EXTENDMR_CHUNKSIZE
STAGES = ("created", "keys_configured", "initialized", "finalized")


class BuildError(RuntimeError):
    """A SEAMCALL the builder needed did not succeed."""


@dataclass
class BuiltTd:
    """What the builder made: physical addresses of every page, by role."""

    tdr: int
    hkid: int
    tdcs: list[int] = field(default_factory=list)
    vcpus: list[int] = field(default_factory=list)  # TDVPR PAs
    vcpu_lp: dict[int, int] = field(default_factory=dict)  # TDVPR -> LP it is associated with
    tdcx: dict[int, list[int]] = field(default_factory=dict)  # TDVPR -> its TDCX pages
    sept_pages: dict[tuple[int, int], int] = field(default_factory=dict)  # (level, gpa) -> PA
    private: dict[int, int] = field(default_factory=dict)  # GPA -> HPA of mapped 4K pages


class TdBuilder:
    """Drives one `TdxModule` to build TDs. Pages come from a simple bump allocator that skips
    pages the module does not consider free (PT_NDA)."""

    def __init__(self, module, *, first_pa: int | None = None):
        self.m = module
        self._next = module.pamt.base + (first_pa if first_pa is not None else 0x10_0000)
        self._used: set[int] = set()

    # --- pages ----------------------------------------------------------------------------
    def page(self) -> int:
        """A fresh 4K page the module has as PT_NDA."""
        while True:
            pa = self._next
            self._next += PAGE_SIZE
            if not self.m.pamt.covers(pa):
                raise BuildError("out of TDMR memory: give the TdxModule more `memory`")
            if pa not in self._used and self.m.pamt.page_type(pa) == PageType.PT_NDA:
                self._used.add(pa)
                return pa

    def page_2m(self) -> int:
        """A fresh 2 MB-aligned range whose 512 pages the module has as PT_NDA (for a 2 MB
        TD page, TDH.MEM.PAGE.AUG at level 1); taken from the top of the TDMR."""
        top = getattr(self, "_next_2m", self.m.pamt.end)
        while True:
            top -= 1 << 21
            if top < self._next:
                raise BuildError("out of TDMR memory: give the TdxModule more `memory`")
            pages = [top + i * PAGE_SIZE for i in range(512)]
            if all(pa not in self._used and self.m.pamt.page_type(pa) == PageType.PT_NDA
                   for pa in pages):
                self._used.update(pages)
                self._next_2m = top
                return top

    def lp_for_vcpu(self, i: int) -> int:
        """vCPU i's LP: round-robin over packages first, so vCPUs span every package."""
        m = self.m
        pkg = i % m.num_packages
        return pkg * m.lps_per_package + (i // m.num_packages) % m.lps_per_package

    @staticmethod
    def _ok(res, what: str):
        if res.status.is_error:
            raise BuildError(f"{what}: {res.status}")
        return res

    # --- steps ----------------------------------------------------------------------------
    def create(self, hkid: int | None = None) -> BuiltTd:
        if hkid is None:
            hkid = next(h for h in self.m.private_hkids if self.m.kot[h] == 0)
        td = BuiltTd(tdr=self.page(), hkid=hkid)
        self._ok(self.m.tdh_mng_create(td.tdr, hkid), "TDH.MNG.CREATE")
        return td

    def configure_keys(self, td: BuiltTd) -> None:
        for pkg in range(self.m.num_packages):
            lp = pkg * self.m.lps_per_package
            self._ok(self.m.tdh_mng_key_config(td.tdr, lp=lp), f"TDH.MNG.KEY.CONFIG pkg{pkg}")

    def add_tdcs(self, td: BuiltTd) -> None:
        for _ in range(self.m.tdcs_pages - len(td.tdcs)):
            pa = self.page()
            self._ok(self.m.tdh_mng_addcx(td.tdr, pa), "TDH.MNG.ADDCX")
            td.tdcs.append(pa)

    def init(self, td: BuiltTd) -> None:
        self._ok(self.m.tdh_mng_init(td.tdr), "TDH.MNG.INIT")

    def add_vcpu(self, td: BuiltTd, lp: int | None = None, *, init: bool = True) -> int:
        if lp is None:
            lp = self.lp_for_vcpu(len(td.vcpus))
        vp = self.page()
        self._ok(self.m.tdh_vp_create(td.tdr, vp), "TDH.VP.CREATE")
        td.vcpus.append(vp)
        td.tdcx[vp] = []
        for _ in range(self.m.tdcx_per_vcpu):
            pa = self.page()
            self._ok(self.m.tdh_vp_addcx(vp, pa), "TDH.VP.ADDCX")
            td.tdcx[vp].append(pa)
        if init:
            # x2APIC ids must be unique per TD (TDH.VP.INIT version 1); KVM passes vcpu_id.
            self._ok(self.m.tdh_vp_init(vp, 0, len(td.vcpu_lp), lp=lp), "TDH.VP.INIT")
            td.vcpu_lp[vp] = lp
        return vp

    def map_tables(self, td: BuiltTd, gpa: int, down_to: int = 1) -> None:
        """TDH.MEM.SEPT.ADD for every missing table page above a 4K leaf at `gpa`."""
        for level in range(3, down_to - 1, -1):
            key = (level, gpa & ~(level_size(level) - 1))
            if key in td.sept_pages:
                continue
            pa = self.page()
            self._ok(self.m.tdh_mem_sept_add(td.tdr, key[1], level, pa), "TDH.MEM.SEPT.ADD")
            td.sept_pages[key] = pa

    def add_page(self, td: BuiltTd, gpa: int, *, extend: bool = True) -> int:
        """Initial memory: TDH.MEM.PAGE.ADD, then TDH.MR.EXTEND once per 256-byte chunk (16 per
        page), as KVM's `tdx_gmem_post_populate` does with TDX_EXTENDMR_CHUNKSIZE."""
        self.map_tables(td, gpa)
        pa = self.page()
        self._ok(self.m.tdh_mem_page_add(td.tdr, gpa, pa, 0), "TDH.MEM.PAGE.ADD")
        if extend:
            for off in range(0, PAGE_SIZE, EXTENDMR_CHUNK):
                self._ok(self.m.tdh_mr_extend(td.tdr, gpa + off), "TDH.MR.EXTEND")
        td.private[gpa] = pa
        return pa

    def finalize(self, td: BuiltTd) -> None:
        self._ok(self.m.tdh_mr_finalize(td.tdr), "TDH.MR.FINALIZE")

    def aug(self, td: BuiltTd, gpa: int) -> int:
        """Runtime memory: TDH.MEM.PAGE.AUG (the entry is PENDING until the guest accepts)."""
        self.map_tables(td, gpa)
        pa = self.page()
        self._ok(self.m.tdh_mem_page_aug(td.tdr, gpa, 0, pa), "TDH.MEM.PAGE.AUG")
        td.private[gpa] = pa
        return pa

    # --- all at once ----------------------------------------------------------------------
    def build(self, stage: str = "finalized", *, vcpus: int = 1, pages: int = 1,
              hkid: int | None = None, gpa_base: int = 0) -> BuiltTd:
        """A TD at `stage` (one of STAGES). vCPUs and initial pages need an initialised TD,
        so they are only added for "initialized" and "finalized"."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        td = self.create(hkid)
        if stage == "created":
            return td
        self.configure_keys(td)
        self.add_tdcs(td)
        if stage == "keys_configured":
            return td
        self.init(td)
        for _ in range(vcpus):
            self.add_vcpu(td)
        for i in range(pages):
            self.add_page(td, gpa_base + i * PAGE_SIZE)
        if stage == "finalized":
            self.finalize(td)
        return td


__all__ = ["TdBuilder", "BuiltTd", "BuildError", "STAGES"]
