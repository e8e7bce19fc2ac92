"""The TDP MMU / TDX junction: mirror-root changes that must go through the external-SPTE
hooks (`remove_external_spte`, `free_external_spt`): [TDXPREP], [RE-P2], [K616]."""

from . import Mutant, mutations

FAMILY = "roots"

MUTANTS = [
    Mutant(
        "zap-skips-external",
        "the TDP MMU drops a mirror leaf on guest_memfd invalidation without "
        "remove_external_spte: the page stays mapped (and pinned) in the S-EPT, so the TD's "
        "pages can never be reclaimed",
        "[TDXPREP] (a mirror SPTE change is propagated to the external page table through "
        "kvm_x86_ops hooks); [K616] tdx_sept_remove_private_spte; [M15] "
        "tdh_phymem_page_reclaim.c (TDX_TD_ASSOCIATED_PAGES_EXIST for the TDR)",
        ("td-mirror",), "pages_leaked", mutations("zap-skips-external")),
    Mutant(
        "uninit-skips-free-external-spt",
        "zapping the mirror root at VM destruction frees its page tables without "
        "free_external_spt: the S-EPT pages are never reclaimed, so the TDR cannot be either",
        "[RE-P2] (private page tables are reclaimed after the HKID, at VM destruction); "
        "[K616] tdx_sept_free_private_spt; [M15] tdh_phymem_page_reclaim.c (a TDR with "
        "children -> TDX_TD_ASSOCIATED_PAGES_EXIST)",
        ("td-mirror",), "pages_leaked", mutations("uninit-skips-free-external-spt")),
]
