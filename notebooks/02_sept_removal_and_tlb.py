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
# # 02 · Removing a private page: BLOCK → TRACK → kick → REMOVE
#
# **What you'll be able to do** (about 35 minutes)
#
# * name the Secure-EPT entry states a page goes through (`MAPPED` → `BLOCKED` → `FREE`) and
#   which SEAMCALL moves it;
# * explain TLB tracking with TD epochs: `TD_EPOCH`, the two `REFCOUNT`s, a page's `BEPOCH`,
#   and why KVM must IPI every vCPU between `TDH.MEM.TRACK` and `TDH.MEM.PAGE.REMOVE`;
# * predict what breaks when one step is missing: `TDX_GPA_RANGE_NOT_BLOCKED`,
#   `TDX_TLB_TRACKING_NOT_DONE`, `TDX_PREVIOUS_TLB_EPOCH_BUSY`;
# * write the removal yourself and have the model's invariant checker accept it.
#
# **The real story.** Every private page of a live TD is removed by
# `tdx_sept_remove_private_spte` in `arch/x86/kvm/vmx/tdx.c` (Linux 6.16): RANGE.BLOCK,
# `tdx_track` (TRACK, then `kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)`),
# PAGE.REMOVE, WBINVD, clear. KVM's own comment admits that tracking is done per page
# "although it is also done later". It is why a TD's shutdown took 72 s in Adrian Hunter's
# measurement (lesson 00), and the subject of the 6.19 overhaul (`tdh_do_no_vcpus`, Sean
# Christopherson's "KVM: x86/mmu: TDX post-populate cleanups", Oct 2025).

# %% [markdown]
# ## 1. Why can't the host just take the page back?
#
# A vCPU running in the guest may hold a TLB entry for the page. If the host reused the page
# while that entry lived, the guest could still write to memory that now belongs to someone
# else. The TDX module therefore refuses `TDH.MEM.PAGE.REMOVE` until it *knows* no CPU can
# still translate to the page. Its proof has two parts:
#
# 1. **BLOCK** (`TDH.MEM.RANGE.BLOCK`): the S-EPT entry goes `MAPPED` → `BLOCKED`, so no *new*
#    translation can be created; the module writes the current `TD_EPOCH` into the page's
#    PAMT entry as `BEPOCH`.
# 2. **TRACK** (`TDH.MEM.TRACK`): `TD_EPOCH++`. Each vCPU counted itself into
#    `REFCOUNT[epoch & 1]` at VP.ENTER; once every vCPU that entered in the block epoch has
#    exited, `REFCOUNT` of that epoch is 0 and the page is *tracked*. A vCPU that re-enters
#    later does so in the new epoch and flushes its TLB first.
#
# KVM's part is the **kick**: IPIs that force every vCPU out of the guest, and wait for them.
#
# **Predict:** the TD below has 2 vCPUs in the guest (both entered in epoch 1). After BLOCK
# and TRACK, what are `TD_EPOCH` and `REFCOUNT`? Can REMOVE succeed before the kick?
# Then press **Step** and watch the title line of the S-EPT picture.

# %%

from tdxedu.lessons.sept_removal_and_tlb import epoch_answer, removal_answer
from tdxedu.lessons.sept_removal_and_tlb_exercises import (
    check_removal_order,
    check_remove_page,
    show_solution,
)
from tdxedu.widgets import removal_stepper, teardown_stepper
from tdxedu.widgets.stepper import REMOVAL_PRESETS

removal = removal_stepper()
removal

# %% tags=["nbval-check-output"]
epoch_answer()

# %% [markdown]
# ## 2. Remove one step and watch what breaks
#
# Pick each preset in the widget, predict the status, then **Run**. Then open the same runs
# as text, with what each one teaches (checked by the tests):

# %% tags=["nbval-check-output"]
removal_answer(REMOVAL_PRESETS)

# %% [markdown]
# ## 3. The same sequence inside a real teardown
#
# Here is KVM doing it for every page of a 16 KiB TD under the 6.16 order. Step through: the
# status line names the chain `kvm_gmem_release → tdx_sept_remove_private_spte → tdx_track`,
# and the timeline shows one BLOCK, TRACK, IPI, REMOVE, WBINVD group per page.

# %%
teardown = teardown_stepper("16K", vcpus=2, panels=("timeline", "sept"))
teardown

# %% [markdown]
# **Predict:** why does the timeline show the IPI (`kvm_make_all_cpus_request`) even though no
# vCPU is running at teardown? (Hint: `tdx_track` cannot know; the request is cheap when
# nobody is in guest mode, and the ordering argument must hold for every caller.)

# %% [markdown]
# ## Exercises
#
# **1. Order the operations.** Give a list drawn from `block`, `track`, `kick`, `reenter`,
# `remove`, `wbinvd`, `unblock` that removes the page from the running TD and leaves it safe
# for the host to reuse. The checker runs it and asks the module's invariant checker.

# %%
my_ops = ["block", "track", "remove"]  # fix me
check_removal_order(my_ops)

# %%
show_solution("removal_order")

# %% [markdown]
# **2. Write the removal as code.** `lab.do(op)` issues one operation; `lab.module`,
# `lab.tdr`, `lab.gpa` and `lab.host_lp` let you call the module directly
# (`lab.module.tdh_mem_range_block(lab.tdr, lab.gpa, 0, lp=lab.host_lp)`).

# %%
def remove_page(lab):
    lab.do("block")
    lab.do("remove")  # something is missing


check_remove_page(remove_page)

# %%
show_solution("remove_page")

# %% [markdown]
# **3. Think.** KVM removes pages one at a time and tracks each one. Sketch a batched version
# (block many pages, track once, kick once, remove all). Which module rule makes it correct?
# Which KVM rule (mmu_lock held for write) would it have to respect? Compare it with
# releasing the HKID first (`terminate-vm` in lesson 00).
