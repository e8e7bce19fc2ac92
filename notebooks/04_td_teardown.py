# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Tearing down a TD: HKID release, VP.FLUSH, and the orderings that lost
#
# **What you'll be able to do** (about 40 minutes)
#
# * walk the upstream teardown of a TD stage by stage and name the kernel function behind
#   every SEAMCALL (`kvm_gmem_release`, `tdx_mmu_release_hkid`, `tdx_vcpu_free`,
#   `tdx_sept_free_private_spt`, `tdx_vm_destroy`);
# * explain what `TDH.VP.FLUSH` and `TDH.MNG.VPFLUSHDONE` check, and why
#   `TDX_FLUSHVP_NOT_DONE` *leaks* the HKID and every control page instead of freeing them;
# * compare the 2024 orderings (`v19-notifier`, `flush-at-vcpu-free`) with upstream (`v6.16`)
#   and find, with the explorer, the vCPU-load race that sank the first one;
# * tell the story of `KVM_TDX_TERMINATE_VM` and predict teardown time from the cost model and
#   the only public measurements.
#
# **The real story.** In March 2025 Adrian Hunter measured TD shutdown: **72 s** to reclaim an
# 18 GB TD with 4 vCPUs, **517 s** for 107 GB with 32 vCPUs, against **24 s** and **134 s** if
# the memory is reclaimed *after* the HKID is released ("[PATCH RFC] KVM: TDX: Defer guest
# memory removal to decrease shutdown time", 13 Mar 2025). Sean Christopherson answered with a
# sub-ioctl to start the teardown early (27 Mar 2025); it became `KVM_TDX_TERMINATE_VM` (V4,
# 11 Jun 2025; V5 in the 6.17 VMX pull) and was **dropped from the 6.17 pull** on 29–30 Jul
# 2025 to rethink `vm_dead`. Upstream still removes every private page the slow way; the merged
# speed-up is 6.18's skip of the page clear ("up to 40%"). A year earlier, the v19 TDX series
# released the HKID from the MMU notifier, and the thread of Mar–Apr 2024 (Kai Huang, Sean,
# Isaku Yamahata) is where `TDX_FLUSHVP_NOT_DONE` comes from. Sources: [AH-RFC], [SC-Mar25],
# [TERM-V4], [TERM-V5], [PULL617], [PULL618], [K-Mar24], [SC-Apr24], [AH-Mar28]; KVM's code
# [K616]; the module source [M15] (`tdxedu sources TAG` prints any of them).

# %% [markdown]
# ## 1. The upstream sequence, one SEAMCALL per Step
#
# When QEMU exits (Linux 6.16 to 6.19: [K616], and Rick Edgecombe's TDX MMU Part 2 cover
# letter [RE-P2] for why):
#
# * **A.** vCPU fds close. No SEAMCALL; a vCPU stays *associated* with the pCPU it last ran on.
# * **B.** The mm goes: `kvm_mmu_notifier_release` → `kvm_tdp_mmu_zap_all`. No SEAMCALL: only
#   the shared EPT is zapped, mirror (S-EPT) roots are skipped.
# * **C.** Each guest_memfd closes: `kvm_gmem_release` → `tdx_sept_remove_private_spte`, per
#   4 KiB page, `mmu_lock` held for write: BLOCK, `tdx_track` (TRACK + IPI to all vCPUs),
#   REMOVE, WBINVD under the HKID, clear.
# * **D1.** The last `kvm_put_kvm` → `kvm_destroy_vm` → `vm_pre_destroy` →
#   `tdx_mmu_release_hkid`: VP.FLUSH per vCPU (an IPI to its CPU), VPFLUSHDONE, CACHE.WB per
#   package, KEY.FREEID.
# * **D3.** `kvm_destroy_vcpus` → `tdx_vcpu_free` (RECLAIM TDCX + TDVPR pages);
#   `kvm_mmu_uninit_vm` → `tdx_sept_free_private_spt` (RECLAIM S-EPT pages); `vm_destroy` →
#   `tdx_vm_destroy`, last (RECLAIM TDCS pages, the TDR, then WBINVD of the TDR with the
#   global KeyID).
#
# **Predict:** which is the first SEAMCALL of the teardown? At which Step does the lifecycle
# leave `TD_KEYS_CONFIGURED`, and which call moves it to `TD_TEARDOWN`? Press **Step** and
# watch the status line (it names the chain, e.g. `kvm_gmem_release → kvm_put_kvm →
# kvm_destroy_vm → tdx_mmu_release_hkid`) and the lifecycle picture.

# %%

from tdxedu.cost import default_calibration, sweep
from tdxedu.lessons.td_teardown import (
    cost_table,
    cost_terms_prose,
    extrapolation_answer,
    flush_answer,
    hkid_release_answer,
    teardown_answer,
    teardown_stages,
)
from tdxedu.lessons.td_teardown_cost import forms_table, validation_answer
from tdxedu.lessons.td_teardown_exercises import (
    check_cost_estimate,
    check_hkid_leakers,
    check_release_hkid,
    show_solution,
)
from tdxedu.viz import as_image, sweep_figure
from tdxedu.widgets import Explorer, teardown_stepper

teardown = teardown_stepper("16K", vcpus=2, strategy="v6.16", panels=("timeline", "lifecycle"))
teardown

# %% [markdown]
# When you have your answer, open it (checked by the tests):

# %% tags=["nbval-check-output"]
teardown_answer("16K", vcpus=2, strategy="v6.16")

# %% [markdown]
# Rick Edgecombe's rule (TDX MMU Part 2 cover letter, Sep 2024): each operation supports one
# scenario, before *or* after HKID reclaim. Leaf pages must be removable at runtime, so they
# use the runtime flow; page tables are never torn down at runtime, so they wait.
#
# Why the lifecycle moves as it does (module 1.5.01 [M15]: `tdh_mng_vpflushdone.c`,
# `tdh_mng_key_freeid.c`, `tdh_phymem_page_reclaim.c`): `VPFLUSHDONE`
# needs no vCPU associated and moves the TD to `TD_BLOCKED` (KOT: `HKID_FLUSHED`);
# `KEY.FREEID` needs `TD_BLOCKED` *and* every package's cache written back, and moves it to
# `TD_TEARDOWN` (KOT: `HKID_FREE`); `PAGE.RECLAIM` is legal only in `TD_TEARDOWN`, and the TDR
# only once its `chldcnt` is 0.

# %% [markdown]
# ## 2. VP.FLUSH, VPFLUSHDONE, and a leaked HKID
#
# A vCPU becomes *associated* with a logical CPU when it is initialised or enters there;
# only `TDH.VP.FLUSH` **on that same CPU** dissociates it (and flushes the TD's TLB entries and
# VMCS from it). `TDH.MNG.VPFLUSHDONE` refuses with `TDX_FLUSHVP_NOT_DONE` while any vCPU is
# still associated.
#
# **Predict** each status: a TD whose two vCPUs last ran on LP 0 and LP 1; the host works on
# LP 3. It calls VPFLUSHDONE; flushes vCPU 0 on LP 3, then on LP 0; flushes vCPU 1 on LP 1;
# vCPU 1 enters once more on LP 2 and exits; VPFLUSHDONE; flushes vCPU 1 on LP 2;
# VPFLUSHDONE; KEY.FREEID; CACHE.WB; KEY.FREEID. And once the HKID is free: can the TDR page
# be reclaimed first?

# %% tags=["nbval-check-output"]
flush_answer()

# %% [markdown]
# What does KVM do when VPFLUSHDONE fails? In `tdx_mmu_release_hkid` (6.16 and the
# newest kvm-x86 tree alike), `TDX_FLUSHVP_NOT_DONE` jumps silently to the end: the HKID stays
# assigned. Later `tdx_vcpu_free` and `tdx_vm_destroy` see an assigned HKID and **give up**, so
# the TDCX, TDVPR, S-EPT and TDCS pages and the TDR are leaked rather than reclaimed unsafely
# (and the S-EPT page free path `KVM_BUG_ON`s). Sean's 2025 comment on that check: "Uh, what's
# going on here?"; Adrian traced it back to v16 of the TDX series ([AH-Mar28]).

# %% [markdown]
# ## 3. The orderings of 2024, and the race the explorer finds
#
# Four teardown policies on one code path (`tdxedu/kvm/teardown.py`):
#
# * `v19-notifier`: the HKID is released from the MMU-notifier release (stage B), while vCPU
#   fds may still be open; all vCPUs flushed there. The v19 TDX series; Kai Huang's questions
#   (28 Mar 2024); rejected by Sean: "the right answer is to not release the HKID until the VM
#   is destroyed" (quoted in [AH-RFC]).
# * `flush-at-vcpu-free`: VP.FLUSH in `tdx_vcpu_free`, HKID released after the vCPUs are
#   freed. Kai's "normal way" ([K-Mar24]).
# * `v6.16`: upstream. `vm_pre_destroy`, after every fd and guest_memfd has closed; all vCPUs
#   flushed in the release ([YZ-Feb25], [PB-vmdestroy]).
# * `terminate-vm`: first of all, from `KVM_TDX_TERMINATE_VM` on a dead VM (Adrian / Sean
#   2025, dropped from 6.17).
#
# Where each one's SEAMCALLs come from, on the same 16 KiB TD:

# %% tags=["nbval-check-output"]
for strategy in ("v19-notifier", "flush-at-vcpu-free", "terminate-vm"):
    print(teardown_stages("16K", vcpus=2, strategy=strategy))

# %% [markdown]
# Run alone, each order is clean. The trouble is concurrency. **Predict:** in the scenario
# `hkid-release-*`, a vhost-like thread drops the last mm reference (so the MMU notifier's
# release runs) *while* vCPU 0 is loaded on a new pCPU and enters once more; then every file
# closes (Isaku's example in [K-Mar24]). For which policies can the HKID leak?
#
# Press **Explore** for each scenario in the widget, then replay the `hkid_leaked` witness.

# %%
explorer = Explorer(["hkid-release-v19-notifier", "hkid-release-flush-at-vcpu-free",
                     "hkid-release-v6.16", "hkid-release-terminate-vm"],
                    scenario="hkid-release-v19-notifier")
explorer

# %% tags=["nbval-check-output"]
hkid_release_answer()

# %% [markdown]
# A caveat on the `terminate-vm` row: nobody issues `KVM_TDX_TERMINATE_VM` in this scenario,
# so it releases the HKID at `vm_pre_destroy`, exactly like v6.16. When the ioctl *is* used
# it releases the HKID earliest of all, and its guard is different: it takes `kvm->lock`,
# trylocks every `vcpu->mutex` (`-EBUSY` if a vCPU is busy), marks the VM dead
# (`kvm_vm_dead`, so no vCPU enters again), and only then releases the HKID ([TERM-V5]).

# %% [markdown]
# ## 4. `KVM_TDX_TERMINATE_VM`: the fast path that did not land
#
# * **RFC (13 Mar 2025)**, Adrian: defer guest_memfd removal until after HKID release
#   (pin up to 64 inodes). Sean (27 Mar): "Option 2 is just as gross"; instead a TDX sub-ioctl
#   that locks all vCPUs, marks the VM dead, and releases the HKID, holding `mmu_lock` for
#   write across CACHE.WB + KEY.FREEID. The removal hook then sees no HKID and reclaims
#   directly (`tdx_reclaim_page`: RECLAIM + clear), one SEAMCALL per page instead of four.
# * **V4 (11 Jun 2025)** [TERM-V4], **V5** [TERM-V5] (adds `KVM_TDX_CAP_TERMINATE_VM`): the whole
#   6.17 VMX pull [PULL617].
# * **29–30 Jul 2025**: Sean: "I vote to drop it for 6.17 and give ourselves time to figure out
#   what we want to do with vm_dead"; Paolo agreed. The follow-up "[PATCH 0/5] KVM: Drop
#   vm_dead, pivot on vm_bugged for -EIO" raised new races (vCPU sub-ioctls vs HKID release).
#   It is not in the 6.18 or 6.19 pulls ([PULL618], [PULL619]).
# * **6.18** did merge "x86/tdx: Skip clearing reclaimed pages unless X86_BUG_TDX_PW_MCE"
#   [AH-clear]:
#   no MOVDIR64B clear except on SPR/EMR, "up to 40%" faster shutdown.
#
# Pick `terminate-vm` in the widget of section 1 and **Run**: compare the counts with v6.16.

# %% [markdown]
# ## 5. What it costs at scale
#
# The step model can't run 18 GB (4.7 million pages) one SEAMCALL at a time; `tdxedu.cost`
# counts the same SEAMCALLs in closed form and prices them. Its per-operation prices are
# **fitted to Adrian's four numbers** (no per-SEAMCALL latency has been published), so the
# agreement below is by construction, not a test. What the model adds is the split (which
# term dominates) and the extrapolation.

# %% tags=["nbval-check-output"]
print(default_calibration().describe())

# %% tags=["nbval-check-output"]
print("pages cleared (before 6.18):")
print(cost_table(clear_pages=True))
print("\nno clear (6.18+, CPUs without X86_BUG_TDX_PW_MCE):")
print(cost_table(clear_pages=False))

# %% [markdown]
# **Predict** before opening the answer: how long would v6.16 take for a 1 TiB TD with 4
# vCPUs: minutes or an hour? And with `terminate-vm`?

# %% tags=["nbval-check-output"]
extrapolation_answer("1T", vcpus=4)

# %% [markdown]
# The curves, 1 GiB to 1 TiB:

# %%
sizes = ["1G", "4G", "18G", "64G", "107G", "256G", "1T"]
cleared = sweep(sizes, ["v6.16", "terminate-vm"], vcpus=4)
no_clear = sweep(sizes, ["v6.16", "terminate-vm"], vcpus=4, clear_pages=False)
curves = dict(cleared, strategies={
    "v6.16": cleared["strategies"]["v6.16"],
    "v6.16, no clear (6.18+)": no_clear["strategies"]["v6.16"],
    "terminate-vm": cleared["strategies"]["terminate-vm"],
    "terminate-vm, no clear": no_clear["strategies"]["terminate-vm"],
})
as_image(sweep_figure(curves, title="TD teardown, 4 vCPUs: runtime removal (v6.16) vs "
                      "reclaim after HKID release"))

# %% tags=["nbval-check-output"]
cost_terms_prose()

# %% [markdown]
# ### How far to trust the curves
#
# Four measurements, three fitted numbers: the fit above agrees with the data *by
# construction*. The honest test hides a measurement and asks the model for it.
#
# **Predict** first: fitted on the 4-vCPU pair alone, how far off will the model be for the
# 32-vCPU TD, a little or a lot? On which path, runtime removal or reclaim?

# %%
validation_answer()

# %% [markdown]
# The runtime rows differ in vCPUs *and* in size at once, so "each kick visits every vCPU" and
# "each page costs more in a bigger TD" explain them equally well. Each reading is a **model
# form** with its own physical argument and source; every form fits all four rows within the
# tolerance. The band `tdxedu teardown` reports is their envelope (forms × priors ×
# measurement jitter): inside the measured range the forms agree, outside it they part ways,
# and the tool says so (`EXTRAPOLATES: ...` and the form that sets the band's upper edge).

# %% tags=["nbval-check-output"]
print(forms_table("1T", vcpus=128))
print()
print(forms_table("64G", vcpus=16))

# %% [markdown]
# Run it yourself: `tdxedu teardown --validate`, and `tdxedu teardown --memory 1T --vcpus 128
# --json` for the `extrapolation` and `upper_edge_form` fields. On a Dynamic PAMT host add
# `--dpamt`: one `TDH.PHYMEM.PAMT.REMOVE` per 2 MB range the TD emptied, priced as a prior,
# because no published measurement covers it.

# %% [markdown]
# ## Exercises
#
# **1. Release the HKID yourself.** `lab.module` is a TDX module with a RUNNABLE TD on a
# **two-package** machine (LPs 0–1 and 2–3); its vCPUs `lab.vcpus` last ran on
# `lab.vcpu_lp[vp]`. Issue the SEAMCALLs that `tdx_mmu_release_hkid` issues, so the TD reaches
# `TD_TEARDOWN`. The checker then reclaims every page of the TD; all must succeed, and the
# module's invariant checker must agree. The starter forgets things: read the message.

# %%
def release_hkid(lab):
    m = lab.module
    m.tdh_vp_flush(lab.vcpus[0], lp=lab.vcpu_lp[lab.vcpus[0]])
    m.tdh_mng_vpflushdone(lab.tdr, lp=1)
    m.tdh_mng_key_freeid(lab.tdr, lp=1)


check_release_hkid(release_hkid)

# %%
show_solution("release_hkid")

# %% [markdown]
# **2. Which orders leak?** Give the set of teardown policies for which the explorer finds
# `hkid_leaked` *sometimes* in the `hkid-release-*` scenario (choose from `"v6.16"`,
# `"terminate-vm"`, `"v19-notifier"`, `"flush-at-vcpu-free"`). Answer from section 3's
# reasoning; the checker explores every interleaving to judge.

# %%
check_hkid_leakers({"flush-at-vcpu-free"})  # fix me

# %%
show_solution("hkid_leakers")

# %% [markdown]
# **3. A big TD.** Estimate the v6.16 teardown time of a **400 GiB TD with 64 vCPUs**, pages
# cleared, in seconds, within 25% of the cost model. Use the per-page numbers above, or call
# `tdxedu.cost.predict(pages, vcpus, strategy)` yourself. Then compare `terminate-vm`.

# %%
my_seconds = 600  # fix me
check_cost_estimate(my_seconds, memory="400G", vcpus=64)

# %%
show_solution("cost_estimate")

# %% [markdown]
# **4. Think.** `flush-at-vcpu-free` never leaks in this scenario, so why did upstream not take
# it? (Hint: which stage needs `TD_TEARDOWN`, and in which order does `kvm_arch_destroy_vm`
# free vCPUs, S-EPT pages and the TDR? Kai Huang pointed out in March 2024 that VPFLUSHDONE
# would then have to come after the vCPUs are freed.)
#
# **Previous:** [03 · TDX_OPERAND_BUSY](03_operand_busy.ipynb)
