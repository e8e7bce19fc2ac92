"""The project's bibliography: every `[TAG]` the code, lessons and docs cite, and where to read it.

A rule in the model carries a short tag in its docstring (``[K616]``, ``[AH-RFC]``, ``[M15]``);
this module says what each tag is: a mail on a public list (its Message-ID resolves at
``https://lore.kernel.org/r/<Message-ID>``), a Linux source file at a commit or tag, a TDX
module source file at a tag or commit, or a documentation page. It ships with the package, so
``tdxedu sources TAG`` works offline; ``docs/sources.md`` is generated from it
(``python3 dev.py sources``).

Kinds and the form of their locator:

* ``mail``: a Message-ID (``20250313181629.17764-1-adrian.hunter@intel.com``). A patch of a
  series is cited by the series' cover letter plus its number in the title.
* ``kernel`` / ``module``: ``owner/repo@revision:path`` on GitHub (revision = a commit of 12+
  hex digits, or a tag such as ``v6.16`` or ``TDX_1.5.01``). ``module`` is Intel's TDX module.
* ``doc``: an ``https://`` address.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

KINDS = {
    "mail": "mailing-list message (Message-ID on lore.kernel.org)",
    "kernel": "Linux source (repository@revision:path)",
    "module": "TDX module source (repository@revision:path)",
    "doc": "documentation page (URL)",
}

# A tag as the project writes it: an upper-case letter, then upper-case letters and digits,
# then optional "-part"s of two or more letters, digits or inner dots (``K616``, ``AH-RFC``,
# ``SC-Apr24``, ``V6-05``, ``LINUX-6.16``). tests/test_sources.py finds citations with it.
_PART = r"-[A-Za-z0-9][A-Za-z0-9.]*[A-Za-z0-9]"
TAG_RE = re.compile(rf"[A-Z](?:[A-Z0-9]+(?:{_PART})*|(?:{_PART})+)")

_MSGID = re.compile(r"[^\s<>@]+@[A-Za-z0-9.-]+\.[A-Za-z]+")
_REPO = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+)@(?P<rev>[0-9a-f]{12,40}|[\w.-]+)(?::(?P<path>\S+))?")
_URL = re.compile(r"https://\S+")
LOCATOR_RE = {"mail": _MSGID, "kernel": _REPO, "module": _REPO, "doc": _URL}


@dataclass(frozen=True)
class Source:
    tag: str
    kind: str
    locator: str  # see the module docstring for its form per kind
    title: str
    author: str = ""
    date: str = ""  # ISO date where known
    supports: str = ""  # what this source backs in tdxedu, in one line
    also: tuple[tuple[str, str], ...] = ()  # further (kind, locator)s: a reply, an older copy
    in_thread: bool = False  # a patch or reply found in the thread of `locator` (a cover letter)

    @property
    def url(self) -> str:
        return locator_url(self.kind, self.locator)

    def line(self) -> str:
        """One line: tag, kind, title (for `tdxedu sources`)."""
        return f"[{self.tag}] {self.kind}: {self.title}"

    def entry(self) -> str:
        """The full entry (for `tdxedu sources TAG`)."""
        out = [f"[{self.tag}]  {self.title}"]
        who = ", ".join(x for x in (self.author, self.date) if x)
        if who:
            out.append(f"  by:       {who}")
        out.append(f"  kind:     {KINDS[self.kind]}")
        out.append(f"  locator:  {self.locator}")
        out.append(f"  read at:  {self.url}")
        if self.in_thread:
            out.append("  note:     the locator is the series' cover letter; this message is in "
                       "its thread")
        for kind, extra in self.also:
            out.append(f"  see also: {locator_url(kind, extra)}")
        if self.supports:
            out.append(f"  supports: {self.supports}")
        return "\n".join(out)


def locator_url(kind: str, locator: str) -> str:
    """Where a locator can be read on the web."""
    if kind == "mail":
        return f"https://lore.kernel.org/r/{locator}"
    if kind in ("kernel", "module"):
        m = _REPO.fullmatch(locator)
        if m is None:
            return locator
        path = m["path"] or ""
        base = f"https://github.com/{m['repo']}"
        if not path:
            return f"{base}/tree/{m['rev']}"
        view = "blob" if "." in path.rsplit("/", 1)[-1] or path.endswith("README") else "tree"
        return f"{base}/{view}/{m['rev']}/{path}"
    return locator


def _s(tag: str, kind: str, locator: str, title: str, author: str = "", date: str = "",
       supports: str = "", also: tuple[tuple[str, str], ...] = (),
       in_thread: bool = False) -> Source:
    return Source(tag, kind, locator, title, author, date, supports, also, in_thread)


LINUX = "torvalds/linux"
KVMX86 = "kvm-x86/linux"
TDXM = "intel/tdx-module"
SEAN, RICK, YAN, ADRIAN = ("Sean Christopherson", "Rick Edgecombe", "Yan Zhao", "Adrian Hunter")
PAOLO, KIRILL = "Paolo Bonzini", "Kirill A. Shutemov"
DPAMT_V6 = "20260526023515.288829-1-rick.p.edgecombe@intel.com"


def _v6(n: int, title: str, supports: str) -> Source:
    return _s(f"V6-{n:02d}", "mail", DPAMT_V6, f"[PATCH v6 {n:02d}/11] {title}", RICK,
              "2026-05-25", supports, in_thread=True)


SOURCES: tuple[Source, ...] = (
    # ---------------------------------------------------------------- kernel source trees
    _s("LINUX-6.16", "kernel", f"{LINUX}@v6.16", "Linux v6.16 (first release with KVM TDX host "
       "support)", supports="the 'v6.16' policies: function names and flows of the v6.16 tree"),
    _s("LINUX-6.19", "kernel", f"{LINUX}@v6.19", "Linux v6.19 (after the TDX lock-contention "
       "overhaul)", supports="the 'v6.19' names (tdh_do_no_vcpus, TDX_BUG_ON) and flows"),
    _s("K616", "kernel", f"{LINUX}@3829d81b6958632602bee7a8272005d1a4ce298f:"
       "arch/x86/kvm/vmx/tdx.c", "KVM's TDX code, v6.16 era",
       supports="KVM's build, fault, page-removal (BLOCK/TRACK/kick/REMOVE), BUSY retry, vCPU "
       "association and HKID-release flows as the 'v6.16' policy runs them"),
    _s("K-KICK", "kernel", f"{LINUX}@v6.16:virt/kvm/kvm_main.c",
       "KVM core: kvm_make_all_cpus_request and kvm_kick_many_cpus",
       supports="the cost model's kick forms: the request loop visits every vCPU once "
       "(linear), and with KVM_REQUEST_WAIT the requester IPIs the vCPUs in guest mode and "
       "waits for every acknowledgement (the superlinear and cross-package readings)"),
    _s("XEON-SPR", "doc", "https://www.intel.com/content/www/us/en/products/sku/231746/"
       "intel-xeon-platinum-8480-processor-105m-cache-2-00-ghz/specifications.html",
       "Intel Xeon Platinum 8480+ (Sapphire Rapids, a TDX-capable CPU): specifications",
       supports="the size-growth cost form: a 105 MB last-level cache, against the S-EPT and "
       "PAMT working set of an 18 GiB TD (~108 MiB) and a 107 GiB one (~640 MiB)"),
    _s("K616-TDX", "kernel", f"{LINUX}@v6.16:arch/x86/kvm/vmx/tdx.c",
       "KVM's TDX code as released in Linux v6.16",
       supports="docs/conformance.md section 5, 'v6.16' column: what KVM does with each "
       "SEAMCALL status (KVM_BUG_ON, WARN_ON_ONCE, -EBUSY retry, leak); the 6.16 function "
       "names (tdx_sept_zap_private_spte, tdx_no_vcpus_enter_start/stop, tdx_clear_page)"),
    _s("K619-TDX", "kernel", f"{LINUX}@v6.19:arch/x86/kvm/vmx/tdx.c",
       "KVM's TDX code as released in Linux v6.19",
       supports="docs/conformance.md section 5, 'v6.19' column: TDX_BUG_ON at every SEAMCALL "
       "site, tdh_do_no_vcpus, tdx_quirk_reset_page; the 6.19 function names"),
    _s("K-NEW", "kernel", f"{KVMX86}@09c6f74ecb863f76e2486a960431fe6e2b86f2c7:"
       "arch/x86/kvm/vmx/tdx.c", "KVM's TDX code in kvm-x86, after the 6.19 overhaul",
       supports="tdh_do_no_vcpus, TDX_BUG_ON, tdx_quirk_reset_paddr and the 6.19 vCPU-free "
       "flush; still no KVM_TDX_TERMINATE_VM"),
    _s("K-TDXH", "kernel", f"{LINUX}@702fdf3513b045f596f836d9a4b8672c76f11834:"
       "arch/x86/kvm/vmx/tdx.h", "KVM's TDX structures and state enums",
       supports="enum kvm_tdx_state and enum vcpu_tdx_state (TD_STATE_*, VCPU_TD_STATE_*)"),
    _s("K-MAIN", "kernel", f"{LINUX}@v6.16:arch/x86/kvm/vmx/main.c",
       "VMX/TDX ops table (vt_* wrappers)",
       supports="which TDX function each x86 hook calls: vm_pre_destroy -> "
       "tdx_mmu_release_hkid, vm_destroy, vcpu_free, the S-EPT hooks"),
    _s("K-LEAF", "kernel", f"{LINUX}@43db1111073049220381944af4a3b8a5400eda71:"
       "arch/x86/virt/vmx/tdx/tdx.h", "SEAMCALL leaf numbers defined by the kernel",
       supports="the leaf numbers of tdxedu.tdx.leaves and which leaves the kernel calls"),
    _s("K-ERRNO", "kernel", f"{LINUX}@b2128290c29902315e632ea59e0504d6bc9e9b42:"
       "arch/x86/include/asm/shared/tdx_errno.h", "TDX status codes as the kernel defines them",
       supports="status values, operand ids (RCX, TDR, SEPT, TD_EPOCH) and the status mask",
       also=(("kernel", f"{LINUX}@1001d9886f25a88c3b6a097bea98572c1f9b9380:"
                        "arch/x86/kvm/vmx/tdx_errno.h"),)),
    _s("K-ASM", "kernel", f"{LINUX}@d829c46f770a428cf14673594c0381b24d52b669:"
       "arch/x86/include/asm/tdx.h", "TDX software-defined errors and the sc_retry loop",
       supports="TDX_SW_ERROR, TDX_SEAMCALL_GP/UD/VMFAILINVALID and the RDRAND retry of "
       "TDX_RND_NO_ENTROPY"),
    _s("K-DOC", "doc", "https://docs.kernel.org/virt/kvm/x86/intel-tdx.html",
       "Documentation/virt/kvm/x86/intel-tdx.rst (KVM TDX ABI)",
       supports="the KVM_TDX_* ioctls; the mainline page has no KVM_TDX_TERMINATE_VM",
       also=(("kernel", f"{KVMX86}@6c7ecd725e503bf2ca69ff52c6cc48bb650b1f11:"
             "Documentation/virt/kvm/x86/intel-tdx.rst"),)),
    _s("LINUX-DOC", "kernel", f"{LINUX}@165e77353831:Documentation/arch/x86/tdx.rst",
       "Documentation/arch/x86/tdx.rst (host TDX support)",
       supports="static PAMT is about 1/256 of TDX memory, its dmesg line, on-demand module "
       "initialisation"),
    _s("HERD7", "kernel", f"{LINUX}@v6.16:tools/memory-model/README",
       "Linux kernel memory model and herd7",
       supports="the explorer's Always / Sometimes / Never verdicts over every interleaving"),
    # TDP MMU source snapshots
    _s("S-510", "kernel", f"{LINUX}@89e5a426876094b721c44fdafca1b0bc992314c6:"
       "arch/x86/kvm/mmu/tdp_mmu.c", "The original TDP MMU (around v5.10)",
       supports="roots live only while a vCPU references them; the last put frees the root"),
    _s("S-69", "kernel", f"{LINUX}@0089c055b56024edf90e85dc852440b713ce8cb5:"
       "arch/x86/kvm/mmu/tdp_mmu.c", "TDP MMU, v6.9 to v6.13",
       supports="kvm_tdp_mmu_alloc_root / put_root under mmu_lock held for read, the root "
       "iterators, refcount 2 at allocation",
       also=(("kernel", f"{KVMX86}@2d181d84af38146748042a6974c577fc46c3f1c3:"
                        "arch/x86/kvm/mmu/tdp_mmu.c"),)),
    _s("M-610", "kernel", f"{KVMX86}@04f2bbf1c779c55149d12d350d7477792caf1067:"
       "arch/x86/kvm/mmu/mmu.c", "x86 MMU, v6.10 to v6.13",
       supports="kvm_mmu_free_roots, obsolete roots, KVM_REQ_MMU_FREE_OBSOLETE_ROOTS and "
       "kvm_mmu_zap_all_fast"),
    _s("S-TDX", "kernel", "kernelorg-mirror/virt_kvm_kvm@6249af4632166284e82033226a1679e38cb3e6e8"
       ":arch/x86/kvm/mmu/tdp_mmu.c", "TDP MMU with mirror roots (kvm.git, TDX era)",
       supports="root types, mirror roots, kvm_tdp_mmu_invalidate_roots(kvm, types) and "
       "which zaps skip mirror roots"),
    _s("H-TDX", "kernel", f"{LINUX}@v6.16:arch/x86/kvm/mmu/tdp_mmu.h",
       "TDP MMU header with enum kvm_tdp_mmu_root_types",
       supports="KVM_INVALID_ROOTS / KVM_DIRECT_ROOTS / KVM_MIRROR_ROOTS and their masks"),
    _s("I-TDX", "kernel", f"{LINUX}@v6.16:arch/x86/kvm/mmu/mmu_internal.h",
       "struct kvm_mmu_page",
       supports="tdp_mmu_root_count, role.invalid and tdp_mmu_scheduled_root_to_zap per root"),
    # ------------------------------------------------------------------ TDX module source
    _s("M15", "module", f"{TDXM}@TDX_1.5.01:src/vmm_dispatcher/api_calls",
       "Intel TDX module 1.5.01 source (tag TDX_1.5.01, commit 72d8cffb214b)",
       supports="every modelled SEAMCALL and TDCALL: checks, their order, statuses, locks, "
       "lifecycle and op-state, PAMT and S-EPT state tables",
       also=(("module", f"{TDXM}@TDX_1.5.01:include/auto_gen/tdx_error_codes_defs.h"),
             ("module", f"{TDXM}@TDX_1.5.01:include/auto_gen/sept_state_lookup.c"),
             ("module", f"{TDXM}@TDX_1.5.01:src/common/helpers/tdx_locks.h"),
             ("module", f"{TDXM}@TDX_1.5.01:src/common/data_structures/td_control_structures.h"),)),
    _s("M15-05", "module", "niooss-ledger/tdx-module@f99767b40bc33d5cc98f8f5ad8c632f9fd9663bf",
       "TDX module 1.5.05 source (public copy of Intel's release)",
       supports="statuses and checks that changed between module 1.5.01 and 1.5.05"),
    _s("M-NEW", "module", f"{TDXM}@a56a9173cda3:src/vmm_dispatcher/api_calls/"
       "tdh_mem_range_block.c", "A later TDX module (TDX Connect era)",
       supports="only what changed later: the S-EPT tree lock becomes a host-priority lock"),
    _s("M20", "module", f"{TDXM}@1666adc494db:src/common/memory_handlers/pamt_manager.h",
       "TDX module 2.0 tree: PAMT manager with Dynamic PAMT",
       supports="PT_PAMT, the 2M entry that points at a 4K page pair with a 10-bit count, "
       "two pages per pair, the 48-bit limit"),
    _s("M20-PAMT-ADD", "module", f"{TDXM}@a56a9173cda3:src/vmm_dispatcher/api_calls/"
       "tdh_phymem_pamt_add.c", "TDH.PHYMEM.PAMT.ADD handler",
       supports="PAMT.ADD's checks and statuses (HPA_RANGE_NOT_FREE, PAGE_NOT_FREE, BUSY)"),
    _s("M20-PAMT-REMOVE", "module", f"{TDXM}@1666adc494db:src/vmm_dispatcher/api_calls/"
       "tdh_phymem_pamt_remove.c", "TDH.PHYMEM.PAMT.REMOVE handler",
       supports="PAMT.REMOVE's checks and statuses (NO_PAMT_PAGE_PAIR, PAMT_PAGE_NOT_EMPTY) "
       "and the pages it hands back in RDX/R8"),
    _s("M20-ERR", "module", f"{TDXM}@1666adc494db:include/auto_gen_2_0/tdx_error_codes_defs.h",
       "TDX module 2.0 status codes",
       supports="the values of the Dynamic PAMT statuses"),
    _s("M15-PAMT", "module", f"{TDXM}@TDX_1.5.01:src/common/memory_handlers/pamt_manager.h",
       "PAMT manager of module 1.5.01",
       supports="16-byte PAMT entries, page types, owner and BEPOCH, PAMT blocks per 1 GB",
       also=(("module", f"{TDXM}@TDX_1.5.01:src/vmm_dispatcher/api_calls/tdh_sys_info.c"),
             ("module", f"{TDXM}@TDX_1.5.01:src/vmm_dispatcher/api_calls/tdh_sys_config.c"),
             ("module", f"{TDXM}@TDX_1.5.01:src/vmm_dispatcher/api_calls/tdh_sys_tdmr_init.c"),)),
    # ----------------------------------------------------- teardown, HKID, TERMINATE_VM
    _s("RE-P2", "mail", "20240904030751.117579-1-rick.p.edgecombe@intel.com",
       "[PATCH 00/21] TDX MMU Part 2 (cover letter)", RICK, "2024-09-04",
       "why private page tables and the HKID live until the TD is destroyed, the three ways "
       "to flush private TLBs, and which steps run before or after HKID release"),
    _s("K-Mar24", "mail", "65a1a35e0a3b9a6f0a123e50ec9ddb755f70da52.camel@intel.com",
       "Re: [PATCH v19 038/130] KVM: TDX: create/destroy VM structure", "Kai Huang",
       "2024-03-28", "the objection to releasing the HKID from the MMU-notifier path, and the "
       "vhost example of a late mm release"),
    _s("SC-Apr24", "mail", "Zhm5rYA8eSWIUi36@google.com",
       "Re: [PATCH v19 038/130] KVM: TDX: create/destroy VM structure", SEAN, "2024-04-12",
       "the v19 FLUSHVP_NOT_DONE retry loop and why loading a vCPU does not associate it",
       also=(("mail", "20240415224828.GS3039520@ls.amr.corp.intel.com"),)),
    _s("RE-mirror", "mail", "20240718211230.1492011-18-rick.p.edgecombe@intel.com",
       "[PATCH v4 17/18] KVM: x86/tdp_mmu: Don't zap valid mirror roots in "
       "kvm_tdp_mmu_zap_all()", RICK, "2024-07-18",
       "the MMU-notifier release zaps shared roots only: no SEAMCALL there"),
    _s("YZ-Feb25", "mail", "Z7wuq9hQS33z7Lvl@yzhao56-desk.sh.intel.com",
       "Re: [PATCH 20/30] KVM: TDX: create/destroy VM structure", YAN, "2025-02-24",
       "the vm_pre_destroy hook, which releases the HKID early in VM destruction"),
    _s("PB-vmdestroy", "mail", "20250226181453.2311849-3-pbonzini@redhat.com",
       "[PATCH 02/33] KVM: x86: move vm_destroy callback at end of kvm_arch_destroy_vm",
       PAOLO, "2025-02-26", "vm_destroy runs last, so the TDR is reclaimed after every other "
       "TD page (merged for 6.15)"),
    _s("SC-free", "mail", "20250224235542.2562848-2-seanjc@google.com",
       "[PATCH 1/7] KVM: x86: Free vCPUs before freeing VM state", SEAN, "2025-02-24",
       "kvm_destroy_vcpus runs before the MMU and vm_destroy in kvm_arch_destroy_vm",
       also=(("kernel", f"{LINUX}@17bcd714426386fda741a4bccd96a2870179344b"),)),
    _s("AH-RFC", "mail", "20250313181629.17764-1-adrian.hunter@intel.com",
       "[PATCH RFC] KVM: TDX: Defer guest memory removal to decrease shutdown time", ADRIAN,
       "2025-03-13", "the shutdown measurements (4 vCPUs/18 GB: 72 s -> 24 s; 32 vCPUs/107 GB: "
       "517 s -> 134 s), '5x faster per page' reclaim, and why runtime removal is slow"),
    _s("SC-Mar25", "mail", "Z-V0qyTn2bXdrPF7@google.com",
       "Re: [PATCH RFC] KVM: TDX: Defer guest memory removal to decrease shutdown time", SEAN,
       "2025-03-27", "the 'terminate VM' counter-proposal: mark the VM dead, release the HKID, "
       "then reclaim private pages directly"),
    _s("AH-Mar28", "mail", "d7e220ab-3000-408b-9dd6-0e7ee06d79ec@intel.com",
       "Re: [PATCH RFC] KVM: TDX: Defer guest memory removal to decrease shutdown time", ADRIAN,
       "2025-03-28", "the history of KVM's TDX_FLUSHVP_NOT_DONE check"),
    _s("TERM-V4", "mail", "20250611095158.19398-1-adrian.hunter@intel.com",
       "[PATCH V4 1/1] KVM: TDX: Add sub-ioctl KVM_TDX_TERMINATE_VM", ADRIAN, "2025-06-11",
       "KVM_TDX_TERMINATE_VM as applied to kvm-x86 before the 6.17 pull"),
    _s("TERM-V5", "kernel", f"{KVMX86}@dcab95e53364", "KVM: TDX: Add sub-ioctl "
       "KVM_TDX_TERMINATE_VM (v5, the commit in the 6.17 VMX pull)", SEAN, "2025-07",
       "the 'terminate-vm' policy: trylock every vCPU, kvm_vm_dead, release the HKID with "
       "mmu_lock held across CACHE.WB and KEY.FREEID, then reclaim private pages"),
    _s("PULL617", "mail", "20250725220713.264711-13-seanjc@google.com",
       "[GIT PULL] KVM: x86: VMX changes for 6.17", SEAN, "2025-07-25",
       "KVM_TDX_TERMINATE_VM was pulled for 6.17 and then dropped (replies of 29-30 Jul); "
       "Paolo's 'up to 10x' claim for S-EPT destruction"),
    _s("VMDEAD", "mail", "20250729193341.621487-1-seanjc@google.com",
       "[PATCH 0/5] KVM: Drop vm_dead, pivot on vm_bugged for -EIO", SEAN, "2025-07-29",
       "the later redesign of 'terminate VM' and the races raised against it"),
    _s("PULL618", "mail", "20250927060910.2933942-6-seanjc@google.com",
       "[GIT PULL] KVM: x86: VMX changes for 6.18", SEAN, "2025-09-27",
       "6.18 has no KVM_TDX_TERMINATE_VM; with the x86/tdx 6.18 pull, the page clear after "
       "reclaim is skipped unless X86_BUG_TDX_PW_MCE",
       also=(("mail", "20251001171112.899791-1-dave.hansen@linux.intel.com"),)),
    _s("PULL618-MMU", "mail", "20250927060910.2933942-4-seanjc@google.com",
       "[GIT PULL] KVM: x86: MMU changes for 6.18", SEAN, "2025-09-27",
       "the anti-zero-step local retry stops on an invalid memslot (a deadlock fix)"),
    _s("AH-clear", "mail", "20250819155811.136099-4-adrian.hunter@intel.com",
       "[PATCH V7 3/3] x86/tdx: Skip clearing reclaimed pages unless X86_BUG_TDX_PW_MCE is "
       "present", ADRIAN,
       "2025-08-19", "'up to 40%' shorter shutdown without the MOVDIR64B clear; clearing a large "
       "guest can take minutes"),
    _s("PULL619", "mail", "20251126014455.788131-8-seanjc@google.com",
       "[GIT PULL] KVM: x86: TDX changes for 6.19 (tag kvm-x86-tdx-6.19)", SEAN, "2025-11-26",
       "the 6.19 lock-contention overhaul (tdh_do_no_vcpus, TDX_BUG_ON) and the vCPU-free "
       "cpu_list fix"),
    # ------------------------------------------------------------- contention and BUSY
    _s("Y-RFC", "mail", "20241121115139.26338-1-yan.y.zhao@intel.com",
       "[RFC PATCH 0/2] SEPT SEAMCALL retry proposal", YAN, "2024-11-21",
       "the per-SEAMCALL lock table (TD epoch, S-EPT tree, S-EPT entry), the three SEAMCALL "
       "groups and why 0-step mitigation allows 6 faults"),
    _s("Y0", "mail", "20250113020925.18789-1-yan.y.zhao@intel.com",
       "[PATCH 0/7] KVM: TDX SEPT SEAMCALL retry", YAN, "2025-01-13",
       "the merged BUSY policy: groups 1-3, local retry for AUG/SEPT.ADD, kick-and-retry-once "
       "for BLOCK/TRACK/REMOVE"),
    _s("Y4", "mail", "20250113021250.18948-1-yan.y.zhao@intel.com",
       "[PATCH 4/7] KVM: TDX: Kick off vCPUs when SEAMCALL is busy during TD page removal", YAN,
       "2025-01-13", "wait_for_sept_zap: kick every vCPU out, keep it out, retry the SEAMCALL "
       "once; TDH.VP.ENTER and guest TDCALLs are outside mmu_lock"),
    _s("PULL616", "mail", "20250528172432.8396-1-pbonzini@redhat.com",
       "[GIT PULL] First batch of KVM changes for Linux 6.16 merge window", PAOLO, "2025-05-28",
       "TDX host support, with the kick-and-retry-once patches, was merged for 6.16"),
    _s("S0", "mail", "20251017003244.186495-1-seanjc@google.com",
       "[PATCH v3 00/25] KVM: x86/mmu: TDX post-populate cleanups", SEAN, "2025-10-16",
       "the 6.19 rework of KVM's TDX locking"),
    _s("S17", "mail", "20251017003244.186495-18-seanjc@google.com",
       "[PATCH v3 17/25] KVM: TDX: Combine KVM_BUG_ON + pr_tdx_error() into TDX_BUG_ON()",
       SEAN, "2025-10-16", "6.19's reactions: the WARN_ON_ONCE of TDH.MNG.CREATE/ADDCX/INIT "
       "become a bugged VM; RECLAIM and CACHE.WB stay a bare WARN (no VM passed)"),
    _s("S20", "mail", "20251017003244.186495-21-seanjc@google.com",
       "[PATCH v3 20/25] KVM: TDX: Add macro to retry SEAMCALLs when forcing vCPUs out of guest",
       SEAN, "2025-10-16", "tdh_do_no_vcpus: one SEAMCALL, on BUSY kick every vCPU out and "
       "call once more"),
    _s("V3-02", "mail", "20250918232224.2202592-3-rick.p.edgecombe@intel.com",
       "[PATCH v3 02/16] x86/tdx: Add helpers to check return status codes", RICK, "2025-09-18",
       "IS_TDX_OPERAND_BUSY() and friends; the status layout (status in bits 63:32, operand "
       "id below)"),
    # ----------------------------------------------------------------- Dynamic PAMT
    _s("RFC-CL", "mail", "20250502130828.4071412-1-kirill.shutemov@linux.intel.com",
       "[RFC, PATCH 00/12] TDX: Enable Dynamic PAMT", KIRILL, "2025-05-02",
       "static PAMT costs about 0.4% of memory, allocated at module init; Dynamic PAMT brings "
       "it to about 0.004%"),
    _s("RFC-01", "mail", "20250502130828.4071412-1-kirill.shutemov@linux.intel.com",
       "[RFC, PATCH 01/12] x86/virt/tdx: Allocate page bitmap for Dynamic PAMT", KIRILL,
       "2025-05-02", "which SEAMCALLs fail with TDX_MISSING_PAMT_PAGE_PAIR", in_thread=True),
    _s("RFC-08", "mail", "20250502130828.4071412-1-kirill.shutemov@linux.intel.com",
       "[RFC, PATCH 08/12] KVM: x86/tdp_mmu: Add phys_prepare() and phys_cleanup() to "
       "kvm_x86_ops (and its review thread)", KIRILL, "2025-05-02",
       "the allocation designs debated for PAMT pages: per-vCPU pools, kmem_cache, "
       "kvm_arch_gmem_prepare, and why each was dropped", in_thread=True),
    _s("V2-CL", "mail", "20250609191340.2051741-1-kirill.shutemov@linux.intel.com",
       "[PATCHv2 00/12] TDX: Enable Dynamic PAMT", KIRILL, "2025-06-09",
       "why the kernel keeps its own per-2M refcounts (the module's hint is racy), the PAMT "
       "page pair need not be contiguous, which leaves need a pair"),
    _s("V2-THREAD", "mail", "20250609191340.2051741-1-kirill.shutemov@linux.intel.com",
       "Re: [PATCHv2 00/12] TDX: Enable Dynamic PAMT (replies of 8-12 Aug 2025)",
       "Sean Christopherson, Vishal Annapurve, Rick Edgecombe", "2025-08-12",
       "the guest_memfd-hook versus fault-time debate over where PAMT pages are supplied",
       in_thread=True),
    _s("DAVE-REVIEW-V2", "mail", "20250609191340.2051741-1-kirill.shutemov@linux.intel.com",
       "Re: [PATCHv2 04/12] x86/virt/tdx: Add tdx_alloc/free_page() helpers", "Dave Hansen",
       "2025-06", "PAMT pages per 2M range computed from the entry size (512 x 16 B = 2 pages)",
       in_thread=True),
    _s("V3-CL", "mail", "20250918232224.2202592-1-rick.p.edgecombe@intel.com",
       "[PATCH v3 00/16] TDX: Enable Dynamic PAMT", RICK, "2025-09-18",
       "2M-granular PAMT locking, the measured pamt_lock contention, the list-based page cache, "
       "2M mappings need no pair"),
    _s("V4-CL", "mail", "20251121005125.417831-1-rick.p.edgecombe@intel.com",
       "[PATCH v4 00/16] TDX: Enable Dynamic PAMT", RICK, "2025-11-20",
       "mempool and top-up-time alternatives tried and rejected"),
    _s("V4-02", "mail", "20251121005125.417831-1-rick.p.edgecombe@intel.com",
       "Re: [PATCH v4 04/16] x86/virt/tdx: Allocate page bitmap for Dynamic PAMT", RICK,
       "2025-11-24", "the '0.4% -> 0.004%, 100x' reduction", in_thread=True),
    _s("SEAN-V5-CL", "mail", "20260129011517.3545883-1-seanjc@google.com",
       "[RFC PATCH v5 00/45] TDX: Dynamic PAMT + S-EPT Hugepage", SEAN, "2026-01-28",
       "the control-page allocator tried for S-EPT pages and left for v6; private memory is "
       "mapped at 4K only"),
    _s("SEAN-V5-29", "mail", "20260129011517.3545883-1-seanjc@google.com",
       "[RFC PATCH v5 29/45] x86/virt/tdx: Get/Put DPAMT page pair if and only if mapping size "
       "is 4KB", SEAN, "2026-01-28", "a 2M mapping needs no PAMT page pair", in_thread=True),
    _s("V6-CL", "mail", DPAMT_V6, "[PATCH v6 00/11] Dynamic PAMT (cover letter)", RICK,
       "2026-05-25", "the memory table (PAMT vs DPAMT on 256 GB and 2 TB hosts), refcounts for "
       "all of [0, max_pfn), the design v6 settled on"),
    _v6(1, "x86/virt/tdx: Simplify tdmr_get_pamt_sz()",
        "static PAMT sizes per level and the per-TDMR allocation"),
    _v6(2, "x86/virt/tdx: Allocate page bitmap for Dynamic PAMT",
        "one bitmap bit per 4K page replaces the PAMT_4K array"),
    _v6(3, "x86/virt/tdx: Add tdx_alloc/free_control_page() helpers",
        "PAMT.ADD/REMOVE leaf numbers (58/59) and registers, two pages per 2M range"),
    _v6(4, "x86/virt/tdx: Allocate ref counts for Dynamic PAMT memory",
        "one 4-byte refcount per 2M of physical address space"),
    _v6(5, "x86/virt/tdx: Handle concurrent callers in tdx_pamt_get/put()",
        "pamt_lock around read-refcount, decide, SEAMCALL, update"),
    _v6(6, "x86/virt/tdx: Optimize tdx_pamt_get/put()",
        "lock only on 0->1 and 1->0; a failed REMOVE leaks the pair with a WARN"),
    _v6(7, "KVM: TDX: Allocate PAMT memory for TD and vCPU control structures",
        "control pages get their pair at allocation; a failed reclaim leaks on purpose"),
    _v6(8, "x86/tdx: Add APIs to support Dynamic PAMT ops from KVM's fault path",
        "struct tdx_pamt_cache and the top-up API"),
    _v6(9, "KVM: TDX: Get/put PAMT pages when (un)mapping private memory",
        "the per-vCPU cache of 10 pages topped up before mmu_lock, get before AUG/SEPT.ADD, "
        "put after REMOVE, kvm_get_running_vcpu in the fault path"),
    _v6(10, "x86/virt/tdx: Enable Dynamic PAMT",
        "TDX_FEATURES0 bit 36, TDH.SYS.CONFIG R8 bit 16, at most 48 physical address bits"),
    _v6(11, "Documentation/x86: Add documentation for TDX's Dynamic PAMT",
        "the DPAMT dmesg lines and the documented design"),
    _s("TIP-X86-TDX", "doc",
       "https://git.kernel.org/pub/scm/linux/kernel/git/tip/tip.git/log/?h=x86/tdx",
       "tip tree, branch x86/tdx",
       date="2026-09-04", supports="the 10-commit Dynamic PAMT series queued for mainline (also "
       "in linux-next next-20260907); its mainline release is not confirmed"),
    # ------------------------------------------------------------------- TDP MMU roots
    _s("JP-HV", "mail", "20230227171751.1211786-1-jpiotrowski@linux.microsoft.com",
       "[PATCH] KVM: SVM: Disable TDP MMU when running on Hyper-V", "Jeremi Piotrowski",
       "2023-02-27", "the report: slow nested boot with the TDP MMU"),
    _s("SC-Apr23-diag", "mail", "ZDg6w+1v4e/uRDfF@google.com",
       "Re: [PATCH] KVM: SVM: Disable TDP MMU when running on Hyper-V", SEAN, "2023-04-13",
       "the diagnosis: SMI/RSM emulation unloads every root and the TDP MMU freed them; about "
       "10,000 roots before the guest kernel started"),
    _s("SC-Apr23", "mail", "ZDhO02VeRcOMTQz0@google.com",
       "Re: [PATCH] KVM: SVM: Disable TDP MMU when running on Hyper-V", SEAN, "2023-04-13",
       "the draft fix and its numbers: 15 root allocations instead of 100k, 9 s vs 2 s to PID "
       "1, 30 s vs 4 s to the console"),
    _s("SC-preserve", "mail", "20230426220323.3079789-1-seanjc@google.com",
       "KVM: x86: Preserve TDP MMU roots until they are explicitly invalidated (v3)", SEAN,
       "2023-04-26", "refcount 2 at allocation (one reference held by the TDP MMU), "
       "KVM_BUG_ON when a valid root reaches 0, at most six direct roles; merged for v6.4",
       also=(("kernel", f"{LINUX}@edbdb43fc96b11b3bfa531be306a1993d9fe89ec"),)),
    _s("BG-fastzap", "kernel", f"{LINUX}@1336c692abad", "KVM: x86/mmu: Fast invalidation for "
       "TDP MMU", "Ben Gardon", "2021-04-01",
       "fast zap marks every root invalid so refcounts fall to zero as vCPUs reload",
       also=(("mail", "20210401233736.638171-13-bgardon@google.com"),)),
    _s("OVH22", "mail", "20220303193842.370645-1-pbonzini@redhat.com",
       "[PATCH v4 00/30] KVM: x86/mmu: Overhaul TDP MMU zapping and flushing", PAOLO,
       "2022-03-03", "readers never take a reference to an invalid root; defunct and invalid "
       "roots zapped by a worker (the pre-6.4 protocol)"),
    _s("ASYNC-RM", "mail", "20230916003916.2545000-4-seanjc@google.com",
       "KVM: x86/mmu: Stop zapping invalidated TDP MMU roots asynchronously", SEAN, "2023-09-16",
       "tdp_mmu_scheduled_root_to_zap and the synchronous zap of invalidated roots (v6.6)",
       also=(("kernel", f"{LINUX}@0df9dab891ff0d9b646d82e4fe038229e4c02451"),)),
    _s("RDLOCK", "mail", "20240111020048.844847-1-seanjc@google.com",
       "KVM: x86/mmu: zap invalidated roots at 4KiB granularity ... free TDP MMU roots while "
       "holding mmu_lock for read (series)", SEAN, "2024-01-11",
       "roots allocated and freed under mmu_lock held for read (v6.9)"),
    _s("YZ-zapquirk", "mail", "20240703021043.13881-1-yan.y.zhao@intel.com",
       "KVM_X86_QUIRK_SLOT_ZAP_ALL series", YAN, "2024-07-03",
       "a memslot deletion can zap only that slot instead of fast-zapping every root (v6.12)"),
    _s("TDXPREP", "mail", "20240718211230.1492011-1-rick.p.edgecombe@intel.com",
       "[PATCH v4 00/18] TDX MMU prep series part 1", RICK, "2024-07-18",
       "mirror roots and external page tables (v6.14): never fast-zapped, zapped with mmu_lock "
       "held for write, the vCPU's mirror reference kept until vCPU destruction",
       also=(("mail", "20240718211230.1492011-13-rick.p.edgecombe@intel.com"),
             ("mail", "20240718211230.1492011-2-rick.p.edgecombe@intel.com"),
             ("mail", "20240619223614.290657-18-rick.p.edgecombe@intel.com"),)),
    # ------------------------------------------------------------ notebook tooling
    _s("NBVAL", "doc", "https://github.com/computationalmodelling/nbval",
       "nbval: py.test plugin to validate Jupyter notebooks",
       supports="golden cells (nbval-check-output) and why prints inside an Output widget "
       "upset nbval, so widgets redraw Image values instead"),
    _s("MPL-BLIT", "doc", "https://matplotlib.org/stable/users/explain/animations/blitting.html",
       "Matplotlib: Faster rendering by using blitting",
       supports="redraw cost grows with artists: panels draw few texts and no axes"),
    _s("OKABE-ITO", "doc", "https://jfly.uni-koeln.de/color/",
       "Okabe & Ito: Color Universal Design - how to make figures and presentations that are "
       "friendly to colorblind people",
       supports="the package's palette (tdxedu/viz/palette.py): eight colours that stay "
       "distinct under the common colour-vision deficiencies"),
    _s("HIDPI", "doc", "https://developer.mozilla.org/en-US/docs/Web/API/Window/devicePixelRatio",
       "MDN: Window.devicePixelRatio",
       supports="pictures are rendered at 2 device pixels per CSS pixel and shown no wider "
       "than their CSS size, so a 2x screen draws them sharp"),
)

# Tags the workshop notes used that the bibliography spells differently (old -> new).
RENAMED = {
    "Kerr": "K-ERRNO", "Kasm": "K-ASM", "Knew": "K-NEW", "Kh": "K-TDXH", "Kmain": "K-MAIN",
    "Kleaf": "K-LEAF", "Kdoc": "K-DOC", "V4": "TERM-V4", "V5": "TERM-V5", "AH": "AH-RFC",
    "RE": "V3-02", "P616": "PULL616", "P618": "PULL618-MMU", "P619": "PULL619",
    "Mnew": "M-NEW", "TDXMMU2": "RE-P2", "FIX": "SC-preserve", "SEED": "SC-Apr23",
    "DIAG": "SC-Apr23-diag", "HV": "JP-HV", "RFC-08 thread": "RFC-08",
    "TDXM-PAMT-H-1.5": "M15-PAMT", "TDXM-SYSINFO-1.5": "M15-PAMT",
    "TDXM-SYSCONFIG-1.5": "M15-PAMT", "TDXM-TDMRINIT-1.5": "M15-PAMT",
    "TDXM-PAMT-H-2.0": "M20", "TDXM-PAMT-ADD": "M20-PAMT-ADD",
    "TDXM-PAMT-REMOVE": "M20-PAMT-REMOVE", "TDXM-ERR-2.0": "M20-ERR",
    "TIP-PUSH": "TIP-X86-TDX", "NEXT-20260907": "TIP-X86-TDX",
    "MAINLINE-MERGES": "TIP-X86-TDX",
}

BY_TAG: dict[str, Source] = {s.tag: s for s in SOURCES}


class UnknownTag(LookupError):
    """A tag the bibliography does not define; `.message` says what to try instead."""

    def __init__(self, tag: str, message: str) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message


def normalise(tag: str) -> str:
    """``"[K616]"``, ``"k616"`` and ``"K616"`` all name the same entry."""
    t = tag.strip()
    if t.startswith("[") and t.endswith("]"):
        t = t[1:-1].strip()
    if t in BY_TAG:
        return t
    folded = {k.lower(): k for k in BY_TAG}
    return folded.get(t.lower(), t)


def lookup(tag: str) -> Source:
    """The entry for `tag`, or `UnknownTag` with the renamed tag or the closest matches."""
    t = normalise(tag)
    if t in BY_TAG:
        return BY_TAG[t]
    if t in RENAMED:
        new = RENAMED[t]
        raise UnknownTag(t, f"[{t}] is now [{new}]: tdxedu sources {new}")
    close = difflib.get_close_matches(t.upper(), [k.upper() for k in BY_TAG], n=4, cutoff=0.5)
    names = [normalise(c) for c in close]
    hint = ("; closest: " + ", ".join(f"[{c}]" for c in names)) if names else ""
    raise UnknownTag(t, f"no source tagged [{t}]{hint} (tdxedu sources lists them all)")


def markdown() -> str:
    """docs/sources.md, generated from `SOURCES` (tests check the file is up to date)."""
    out = [
        "# Sources",
        "",
        "<!-- Generated from tdxedu/sources.py by `python3 dev.py sources`; do not edit. -->",
        "",
        "Every `[TAG]` in the code, the lessons and the docs names one of the sources below. A "
        "mail's Message-ID opens at `https://lore.kernel.org/r/<Message-ID>`; a source file is "
        "given as `repository@revision:path` on GitHub. The same entries ship with the package: "
        "`tdxedu sources` lists them and `tdxedu sources TAG` prints one.",
        "",
    ]
    groups = {k: [s for s in SOURCES if s.kind == k] for k in KINDS}
    heads = {"mail": "Mails and patches", "kernel": "Linux source",
             "module": "TDX module source", "doc": "Documentation"}
    for kind, items in groups.items():
        if not items:
            continue
        out += [f"## {heads[kind]}", "", "| tag | source | supports |", "|---|---|---|"]
        for s in sorted(items, key=lambda s: s.tag.lower()):
            who = ", ".join(x for x in (s.author, s.date) if x)
            where = f"[`{s.locator}`]({s.url})" + (" (in its thread)" if s.in_thread else "")
            cell = f"{_md(s.title)}<br>{where}"
            if who:
                cell = f"{_md(s.title)} ({_md(who)})<br>{where}"
            for kind, extra in s.also:
                cell += f"<br>also [`{extra}`]({locator_url(kind, extra)})"
            out.append(f"| <a id=\"{s.tag.lower()}\"></a>`[{s.tag}]` | {cell} | "
                       f"{_md(s.supports)} |")
        out.append("")
    out += ["## Renamed tags", "",
            "Earlier drafts spelled some tags differently; the new spelling is the one to cite.",
            "", "| old | new |", "|---|---|"]
    out += [f"| `{old}` | `[{new}]` |" for old, new in sorted(RENAMED.items())]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")
