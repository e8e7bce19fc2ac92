"""What a page still holds when the host gets it back: dirty cache lines under a private
KeyID and integrity-protected TD data (`tdx_clear_page`, `tdx_quirk_reset_page`,
`tdh_phymem_page_wbinvd_hkid` / `_tdr`): [K616], [AH-clear], [PULL618], [M15]. Caught by the
host allocator's invariants ``pg-dirty-keyid`` and ``pg-td-data`` (`tdxedu.kvm.allocator`)."""

from . import Mutant, mutations

MUTANTS = [
    Mutant(
        "quirk-reset-ignores-erratum",
        "the 6.18 page reset skips MOVDIR64B on every CPU, erratum or not: a reclaimed page "
        "goes back to the host still holding TD data on an X86_BUG_TDX_PW_MCE CPU",
        "[AH-clear] (skip clearing reclaimed pages *unless* X86_BUG_TDX_PW_MCE); [PULL618] "
        "tdx_quirk_reset_paddr; invariant pg-td-data",
        ("teardown",), "invariant:pg-td-data", mutations("quirk-reset-ignores-erratum")),
    Mutant(
        "clear-before-wbinvd",
        "the removal path clears the page before TDH.PHYMEM.PAGE.WBINVD(HKID): the write-back "
        "that follows puts TD data back into the cleared page",
        "[K616] tdx_sept_remove_private_spte (PAGE.REMOVE, then tdh_phymem_page_wbinvd_hkid, "
        "then tdx_clear_page); [M15] tdh_phymem_page_wbinvd.c; invariant pg-td-data",
        ("teardown", "zap-running"), "invariant:pg-td-data",
        mutations("clear-before-wbinvd")),
    Mutant(
        "tdr-no-wbinvd",
        "tdx_reclaim_td_control_pages frees the TDR after RECLAIM without "
        "TDH.PHYMEM.PAGE.WBINVD under the global TDX KeyID",
        "[K616] tdx_reclaim_td_control_pages ('TDX module may access TDR while operating on "
        "TD', so tdh_phymem_page_wbinvd_tdr before the clear and the free); invariant "
        "pg-dirty-keyid",
        ("teardown",), "invariant:pg-dirty-keyid", mutations("tdr-no-wbinvd")),
]
