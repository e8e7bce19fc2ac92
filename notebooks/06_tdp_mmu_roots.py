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
# # 06 · TDP MMU roots: refcount 1 vs 2, the SMM storm, fast zap and the TDX mirror root
#
# **What you'll be able to do** (about 35 minutes)
#
# * say what a TDP MMU root is, what its *role* is, and who holds references to it
#   (`tdp_mmu_root_count`: the vCPUs' `root.hpa` / `prev_roots[]`, iterators, and since v6.4
#   the TDP MMU itself);
# * explain why one line, "new roots start at refcount **2**", took a 1-vCPU VM booting with
#   SeaBIOS from ~100k root allocations to 15, and reproduce the curve;
# * step through a memslot deletion (fast zap: invalidate, `KVM_REQ_MMU_FREE_OBSOLETE_ROOTS`,
#   zap, put) and say why an invalid root may outlive it;
# * explain why a TD's mirror root is never fast-zapped and lives until VM destruction;
# * use the model's root invariants to catch a broken root policy at the exact step it goes wrong,
#   and write one of those invariants yourself.
#
# **The real story.** In February 2023 Jeremi Piotrowski (Microsoft) proposed disabling the
# TDP MMU for KVM nested under Hyper-V: L2 guests booted slowly ("[PATCH] KVM: SVM: Disable
# TDP MMU when running on Hyper-V"). Tracing, he saw ~10 000 unique roots *before kernel
# init*. Sean Christopherson diagnosed it on 13 Apr 2023: every SMI and RSM resets the MMU
# context, the vCPU drops its root, and the TDP MMU, unlike the shadow MMU, freed a root at
# its last vCPU reference, so legacy BIOS's thousands of SMM round trips each tore a root
# down and rebuilt it. His fix, "KVM: x86: Preserve TDP MMU roots until they are explicitly
# invalidated" (commit `edbdb43fc96b`, merged for **v6.4**, backported to 6.3.2), keeps one
# reference for the TDP MMU itself: "15 with the patch vs 100k without". Later: the zap
# workqueue went away in v6.6, roots moved under the read lock in v6.9, root types and mirror
# roots came in v6.14, and TDX in **v6.16**. Sources: the report [JP-HV], Sean's diagnosis
# [SC-Apr23-diag] and draft [SC-Apr23], the fix [SC-preserve], the later series [OVH22],
# [ASYNC-RM], [RDLOCK], [TDXPREP]; kernel file `arch/x86/kvm/mmu/tdp_mmu.c` ([S-69], [S-TDX]).

# %% [markdown]
# ## 1. Roots, roles, and who holds a reference
#
# A **root** is the top page of one TDP (EPT/NPT) page-table tree. The VM keeps its roots on
# `kvm->arch.tdp_mmu_roots`; a vCPU loading its MMU (`kvm_mmu_load` →
# `kvm_tdp_mmu_alloc_root`, before v6.9 `kvm_tdp_mmu_get_vcpu_root_hpa`) looks for a valid
# root whose **role** word matches what it needs and takes a reference, or allocates one.
# The role fields that matter: paging level (4 or 5), `smm` (address space 1), `guest_mode`
# (L2), `invalid`, and in the TDX era `is_mirror`. The model's role type
# (`tdxedu.kvm.mmu_role.KvmMmuPageRole`) accepts these direct (non-mirror) ones:

# %% tags=["nbval-check-output"]

from tdxedu.lessons.tdp_mmu_roots import (
    broken_answer,
    direct_roles_prose,
    memslot_answer,
    root_policy_table,
    smm_answer,
    storm_answer,
    td_roots_answer,
)
from tdxedu.lessons.tdp_mmu_roots_exercises import (
    check_inv2,
    check_resurrection_schedule,
    check_storm_allocations,
    show_solution,
)
from tdxedu.viz import as_image
from tdxedu.widgets import Explorer, roots_stepper
from tdxedu.widgets.lesson_roots import (
    broken_roots_stepper,
    broken_source,
    draw_storm,
    smm_storm_curves,
)

direct_roles_prose()

# %% [markdown]
# `kvm_tdp_mmu_put_root()` drops a reference; the root is freed when the count reaches 0. The
# kernel-version policies in the model (`tdxedu.kvm.mmu_role.POLICIES`):

# %% tags=["nbval-check-output"]
print(root_policy_table())

# %% [markdown]
# **Predict first.** A 1-vCPU VM runs, enters SMM (SMI), runs, leaves SMM (RSM), runs. Under
# v6.3 a new root starts at count 1: the vCPU's reference. What happens to the non-SMM root
# when the SMI unloads the vCPU's MMU? And under v6.4, where it starts at 2?
#
# Press **Step** below (policy v6.3) past the SMI and the RSM, watching the root list: each
# bar is one reference, named after its holder (the vCPU's `root` slot, the zap worker
# `tdp_mmu_zap_wq`, the TDP MMU itself `tdp_mmu`). Then switch the policy to **v6.4** and do it
# again. Then open the answer.

# %%
storm = roots_stepper("smm-storm", policy="v6.3")
storm

# %% tags=["nbval-check-output"]
smm_answer()

# %% [markdown]
# ## 2. The storm, plotted
#
# `smm_storm(policy, N)` drives N SMI/RSM round trips by direct calls (the worker and RCU keep
# up) and counts `kvm_mmu_get_page` "new" events for roots, what Sean counted. **Predict**
# the slope of v6.3's line, and the value v6.4+ settles at.

# %% tags=["nbval-check-output"]
storm_answer((0, 1, 2, 5, 10, 20, 50))

# %% [markdown]
# The same counts as curves:

# %%
as_image(draw_storm(smm_storm_curves((0, 1, 2, 5, 10, 20, 50))))

# %% [markdown]
# ## 3. Fast zap: invalidating roots while vCPUs run
#
# With the TDP MMU holding a reference, roots die only when **explicitly invalidated**. A
# memslot delete/move (with `KVM_X86_QUIRK_SLOT_ZAP_ALL` in effect) calls
# `kvm_mmu_zap_all_fast()`: under `mmu_lock` for write it marks every root invalid
# (`kvm_tdp_mmu_invalidate_all_roots`, v6.14+ `kvm_tdp_mmu_invalidate_roots(kvm,
# KVM_DIRECT_ROOTS)`), sets `tdp_mmu_scheduled_root_to_zap`, and in the same critical section
# sends `KVM_REQ_MMU_FREE_OBSOLETE_ROOTS` to every vCPU; then, under the read lock,
# `kvm_tdp_mmu_zap_invalidated_roots()` zaps each flagged root and puts the TDP MMU's
# reference (v6.6+; v6.4 gave it to the workqueue). The vCPUs drop theirs before their next
# guest entry.
#
# **Predict:** when `kvm_set_memslot` returns, are the invalidated roots gone?
# Step through it (policy v6.16, seed 0); watch the hatched (invalid) bars.

# %%
memslot = roots_stepper("memslot-update", policy="v6.16")
memslot

# %% tags=["nbval-check-output"]
memslot_answer()

# %% [markdown]
# ## 4. The TDX mirror root (v6.14 prep, v6.16 TDX)
#
# A TD's private memory is mapped by the **Secure EPT**, which the TDX module owns. KVM keeps
# a *mirror* page table (`role.is_mirror`) that the CPU never uses; changes to it are
# propagated through `set_external_spte` / `remove_external_spte` (lessons 01-02). The mirror
# root "cannot be rebuilt like a normal root" (TDXPREP): fast zap passes `KVM_DIRECT_ROOTS`
# only, memslot deletion for a TD zaps just the slot's leaves, a vCPU's `mirror_root_hpa`
# reference is dropped only in `kvm_mmu_destroy()`, and the root is invalidated and zapped
# only in `kvm_mmu_uninit_tdp_mmu()`, with `mmu_lock` held for write.
#
# **Predict:** a TD with 2 vCPUs; a memslot is deleted. How many references does the mirror
# root hold afterwards, and from whom? Pick `memslot-update-td` in the widget above, then open
# the answer:

# %% tags=["nbval-check-output"]
td_roots_answer()

# %% [markdown]
# ## 5. The invariants, and a broken policy caught in the act
#
# After every step of every run, the model checks the root invariants
# (`tdxedu.kvm.tdp_mmu_invariants`, restating what `tdp_mmu.c` asserts or relies on): `inv2` no
# free of a valid root, `inv4` the TDP MMU's
# reference is held iff the root is valid or scheduled to zap, `inv5` no get from zero,
# `inv8` invalidation together with `KVM_REQ_MMU_FREE_OBSOLETE_ROOTS`, `inv9` fast zap leaves
# no SPTEs, `inv11` the mirror root only dies at destruction, and so on. Each deliberately
# broken policy breaks one; the explorer finds the shortest run where it happens.
#
# **Predict:** `broken-free-valid-root` is v6.4's put without the `invalid` check, on v6.3's
# counting (new roots at 1). At which Step of the 1-vCPU SMM scenario does it go wrong, and
# what does the root list show at that Step? Step through the witness below until the status
# line says "invariant violated"; pick other variants to see theirs. Then open the answer.

# %%
broken = broken_roots_stepper("broken-free-valid-root")
broken

# %% tags=["nbval-check-output"]
broken_answer(broken_source("broken-free-valid-root"))

# %% [markdown]
# ## Exercises
#
# **1. Predict the storm.** How many root allocations does v6.3 make after 1000 SMI/RSM round
# trips on a 1-vCPU VM (counting the first root)?

# %%
answer = 1000  # fix me
check_storm_allocations(answer, policy="v6.3", n=1000)

# %%
show_solution("storm_v63_1000")

# %% [markdown]
# **2. Find the interleaving.** In `roots-last-put-race-v6.3` a reader
# (`kvm_tdp_mmu_wrprot_slot`, holding a root across a `cond_resched`), vcpu0 (about to enter
# SMM) and a memslot update race. Give a schedule (actor names: `reader0`, `vcpu0`, `memslot`,
# `kworker`, `rcu`) in which the reader's final put is the root's last reference, so v6.3
# resurrects it under the read lock (Paolo's comment in the v6.3 `kvm_tdp_mmu_put_root`, [OVH22]).
# Use the explorer below to look
# for `resurrected_under_read_lock`, then write the schedule yourself.

# %%
race = Explorer(["roots-last-put-race-v6.3", "roots-last-put-race-v6.4"],
                scenario="roots-last-put-race-v6.3")
race

# %%
schedule = ["vcpu0", "reader0"]  # fix me
check_resurrection_schedule(schedule)

# %%
show_solution("resurrection_schedule")

# %% [markdown]
# **3. Write invariant 2.** `fn(kvm)` returns a list of messages, empty when "no valid root
# has refcount 0" holds. Roots are in `kvm.arch.tdp_mmu_roots` (on the list) and
# `kvm.arch.tdp_mmu_live` (hpa → root, until freed); each has `.invalid`,
# `.tdp_mmu_root_count`, `.role`. The checker replays `broken-free-valid-root` (your check must
# fire at the step the model's does) and 12 correct v6.16 runs (it must stay silent).

# %%
def no_free_of_valid_root(kvm):
    return []  # fix me


check_inv2(no_free_of_valid_root)

# %%
show_solution("inv2")

# %% [markdown]
# **4. Think.** With refcount 2, who puts the second reference of a root that is never
# invalidated? (Hint: `kvm_mmu_uninit_tdp_mmu`.) Why does the fix's "at most six roots" make
# keeping every root forever affordable, and why does a TD add exactly one more?
#
# **Previous:** [05 · Dynamic PAMT](05_dynamic_pamt.ipynb)
