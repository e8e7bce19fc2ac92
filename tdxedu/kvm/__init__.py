"""The host kernel: struct kvm and vCPUs, TDP MMU roots, KVM's TDX glue, Dynamic PAMT kernel
side. Talks to the TDX module only through SEAMCALL wrappers."""

from .kvm import (
    IN_GUEST_MODE,
    KVM_REQ_OUTSIDE_GUEST_MODE,
    OUTSIDE_GUEST_MODE,
    Kvm,
    KvmVcpu,
)
from .locks import Mutex, RwLock

__all__ = ["Kvm", "KvmVcpu", "RwLock", "Mutex", "IN_GUEST_MODE", "OUTSIDE_GUEST_MODE",
           "KVM_REQ_OUTSIDE_GUEST_MODE"]
