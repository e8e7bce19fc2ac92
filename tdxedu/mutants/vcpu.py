"""vCPU association with logical processors (`tdx_vcpu_load`): teardown.md §5."""

from . import Mutant, mutations

MUTANTS = [
    Mutant(
        "no-vp-flush-on-migration",
        "tdx_vcpu_load moves a vCPU to a new pCPU without TDH.VP.FLUSH on the old one",
        "teardown.md §5.1 (associate_vcpu: associated with a different LP -> "
        "TDX_VCPU_ASSOCIATED), §5.2 item 1 ([K616] tdx_vcpu_load -> tdx_flush_vp_on_cpu); "
        "'[PATCH v19 087/130] KVM: TDX: handle vcpu migration over logical processor'",
        ("migration",), "vp_enter_failed", mutations("no-vp-flush-on-migration")),
]
