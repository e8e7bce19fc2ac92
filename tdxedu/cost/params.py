"""The cost model's parameters: what each one prices, its value, the range it may take, and
where it comes from.

We found **no per-SEAMCALL latencies in public sources**: none of the mails in
`docs/sources.md` gives microseconds per BLOCK, TRACK, REMOVE or RECLAIM. The only anchors are
Adrian Hunter's four end-to-end measurements ([AH-RFC], `calibration.csv`), his "reclaiming a
4K page in TD_TEARDOWN state can be 5 times faster", "up to 40%" shutdown time saved by
skipping the clear ([AH-clear], merged for 6.18 [PULL618]) and "it can take minutes" to clear
a large guest ([AH-clear]). So:

* ``fitted`` parameters are solved from the four measurements by `calibrate()`
  (non-negative least squares). Four rows identify three things: the per-page cost of the
  runtime chain, how that grows with the vCPU count (the kick), and the per-page reclaim cost.
* ``prior`` parameters are assumptions with a range; `calibrate()` samples them over their
  range and refits, which is what the prediction band is made of.

Values are in seconds (`unit` says how `describe()` shows them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Param:
    name: str
    value: float  # seconds (per operation)
    low: float
    high: float
    kind: str  # "fitted" or "prior"
    unit: str  # display unit: "us", "ms", "s", "x"
    prices: str
    source: str

    def with_value(self, v: float) -> Param:
        return replace(self, value=float(v))


US, MS = 1e-6, 1e-3

# Split of the fitted runtime chain across its leaves: only the sum is identifiable
# (BLOCK, TRACK, REMOVE and WBINVD are issued once per page each, so their counts are
# identical in every measurement). Equal shares: an assumption, shown as such.
RUNTIME_SPLIT = {"tdh_mem_range_block": 0.25, "tdh_mem_track": 0.25,
                 "tdh_mem_page_remove": 0.25, "tdh_phymem_page_wbinvd": 0.25}

DEFAULT_PARAMS: dict[str, Param] = {p.name: p for p in [
    Param("runtime_chain", 12.0 * US, 0.0, 60 * US, "fitted", "us",
          "one private page on the runtime path: TDH.MEM.RANGE.BLOCK + TDH.MEM.TRACK + "
          "TDH.MEM.PAGE.REMOVE + TDH.PHYMEM.PAGE.WBINVD(HKID) + KVM's per-page work, without "
          "the clear and the kick (split across the four leaves equally: RUNTIME_SPLIT)",
          "fitted to [AH-RFC] 'before' rows; per-leaf split is an assumption"),
    Param("kick_per_vcpu", 0.12 * US, 0.0, 5 * US, "fitted", "us",
          "kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE) after every TRACK, per vCPU "
          "of the TD ([K616] `tdx_track`: once for every page)",
          "fitted: the only term that separates 4 from 32 vCPUs. The two configurations differ "
          "in size too, so a per-page cost that grew with size would look the same"),
    Param("reclaim", 3.0 * US, 0.0, 30 * US, "fitted", "us",
          "TDH.PHYMEM.PAGE.RECLAIM + KVM's per-page work (tdx_reclaim_page), without the clear",
          "fitted to [AH-RFC] 'after' rows"),
    Param("clear", 1.9 * US, 0.95 * US, 1.9 * US, "prior", "us",
          "MOVDIR64B clear of one 4 KiB page (tdx_clear_page; since 6.18 skipped unless "
          "X86_BUG_TDX_PW_MCE)",
          "[AH-clear] 'up to 40%' of shutdown time, applied to the reclaim path's measured "
          "~4.7 us/page (0.40 x 4.7 = 1.9 us: the upper end; half of it the lower end). Applied "
          "to the runtime path's 15-18 us/page, 40% would need a negative reclaim cost, so the "
          "figure can only refer to the fast path"),
    Param("xpkg_kick_factor", 0.5, 0.0, 1.0, "prior", "x",
          "extra cost of kicking a vCPU on another package, as a fraction of kick_per_vcpu "
          "(remote cache lines for the request bit and vcpu->mode)",
          "assumption; not identifiable: the packages of [AH-RFC]'s hosts are not stated"),
    Param("vp_flush", 10 * US, 2 * US, 50 * US, "prior", "us",
          "TDH.VP.FLUSH including its smp_call_function_single IPI round trip, per vCPU",
          "assumption (order of magnitude of an IPI round trip); per-TD, negligible at scale"),
    Param("vpflushdone", 5 * US, 1 * US, 20 * US, "prior", "us", "TDH.MNG.VPFLUSHDONE",
          "assumption; once per TD"),
    Param("cache_wb", 5 * MS, 0.5 * MS, 50 * MS, "prior", "ms",
          "TDH.PHYMEM.CACHE.WB on one package (a WBINVD-class write-back of the package's "
          "caches), per call", "assumption (order of magnitude); once per package"),
    Param("key_freeid", 5 * US, 1 * US, 20 * US, "prior", "us", "TDH.MNG.KEY.FREEID",
          "assumption; once per TD"),
    Param("pamt_remove", 2 * US, 0.5 * US, 10 * US, "prior", "us",
          "Dynamic PAMT: TDH.PHYMEM.PAMT.REMOVE under pamt_lock plus resetting and freeing the "
          "returned page pair, once per 2 MB range whose last reference is put",
          "assumption (no published latency; a PAMT-only SEAMCALL, cf. RECLAIM's few us); "
          "only on a DPAMT host ([V6-06])"),
    Param("pamt_put", 0.05 * US, 0.01 * US, 0.3 * US, "prior", "us",
          "Dynamic PAMT: tdx_pamt_put's atomic_dec_and_lock on the range's refcount, per page "
          "given back (a shared cache line per 2 MB range)",
          "assumption (an uncontended atomic on a cache line the zap keeps hot); only on a "
          "DPAMT host ([V6-06])"),
    Param("fixed", 0.0, 0.0, 2.0, "prior", "s",
          "shutdown work that does not scale with pages or vCPUs and is not modelled",
          "assumption: 0 s, up to 2 s (a fixed 1.75 s would make the two 'after' rows fit "
          "exactly; the data cannot tell it from a per-page cost that falls with size)"),
]}
