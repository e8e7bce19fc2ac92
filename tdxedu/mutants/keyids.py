"""The kernel's TDX KeyID pool (`tdx_guest_keyid_alloc/free`, `tdx_hkid_free`) against the
module's Key Ownership Table, with more than one TD per host: [K616], [M15]. Caught by the
host invariant ``keyid-pool`` (`tdxedu.kvm.host.Host.check_invariants`)."""

from . import Mutant, mutations

MUTANTS = [
    Mutant(
        "keyid-free-before-freeid",
        "the HKID goes back to the kernel's pool right after TDH.MNG.VPFLUSHDONE, before "
        "CACHE.WB and KEY.FREEID: a TD built meanwhile can be given a KeyID the module still "
        "holds (HKID_FLUSHED)",
        "[K616] tdx_mmu_release_hkid (tdx_hkid_free only after a successful "
        "TDH.MNG.KEY.FREEID); [M15] tdh_mng_create.c (a KOT entry not HKID_FREE -> "
        "TDX_HKID_NOT_FREE); invariant keyid-pool",
        ("two-tds",), "invariant:keyid-pool", mutations("keyid-free-before-freeid")),
    Mutant(
        "keyid-not-returned",
        "tdx_hkid_free sets kvm_tdx->hkid = -1 without tdx_guest_keyid_free: the KeyID is "
        "free in the module but lost to the kernel, one per destroyed TD",
        "[K616] tdx_hkid_free (tdx_guest_keyid_free, then hkid = -1); invariant keyid-pool",
        ("two-tds",), "invariant:keyid-pool", mutations("keyid-not-returned")),
]
