"""vCPU association with logical processors (`tdx_vcpu_load`): [M15], [K616]."""

from . import Mutant, mutations

MUTANTS = [
    Mutant(
        "no-vp-flush-on-migration",
        "tdx_vcpu_load moves a vCPU to a new pCPU without TDH.VP.FLUSH on the old one",
        "[M15] associate_vcpu (associated with a different LP -> TDX_VCPU_ASSOCIATED); "
        "[K616] tdx_vcpu_load -> tdx_flush_vp_on_cpu; the v19 patch 'KVM: TDX: handle vcpu "
        "migration over logical processor' ([SC-Apr24]); the vCPU stays on the old CPU's "
        "associated_tdvcpus list (invariant assoc-list) and VP.ENTER on the new one fails",
        ("migration",), "invariant:assoc-list", mutations("no-vp-flush-on-migration")),
]
