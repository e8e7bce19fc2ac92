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
# # 03 · `TDX_OPERAND_BUSY`: who locks what, and what KVM does about it
#
# **What you'll be able to do** (about 35 minutes)
#
# * say which TDX-module lock each memory SEAMCALL (and the guest's `TDG.MEM.PAGE.ACCEPT`)
#   takes, shared or exclusive, and why KVM's `mmu_lock` does not prevent contention;
# * reproduce `TDX_OPERAND_BUSY` on KVM's zap path two ways: a guest ACCEPT holding an S-EPT
#   entry, and a vCPU's 0-step mitigation holding the whole S-EPT tree;
# * explain the host-priority bit (TDHP) and why one retry after kicking the vCPUs out is
#   expected to succeed;
# * compare three BUSY policies over *every* interleaving (no-retry, retry-loop,
#   kick-retry-once) and write the 6.19 macro `tdh_do_no_vcpus` yourself.
#
# **The real story.** The TDX module never waits for a lock: it tries once and, on failure,
# returns `TDX_OPERAND_BUSY` with the operand id of what was busy. Pre-merge KVM retried
# `TDX_ERROR_SEPT_BUSY` (`0x8000020000000092`) up to `SEAMCALL_RETRY_MAX` = 16 times, and
# looped on the zap path; users hit it anyway (canonical/tdx #213, Sept 2024). Yan Zhao's
# "[RFC PATCH 0/2] SEPT SEAMCALL retry proposal" (kvm@, 21 Nov 2024) and "[PATCH 4/7] KVM: TDX:
# Kick off vCPUs when SEAMCALL is busy during TD page removal" (13 Jan 2025,
# `20250113021250.18948-1-yan.y.zhao@intel.com`) replaced the loops with *kick every vCPU out,
# keep them out, retry exactly once*; it was merged with TDX host support in **Linux 6.16**
# (Paolo Bonzini's 6.16 pull, 28 May 2025). Sean Christopherson's "KVM: x86/mmu: TDX
# post-populate cleanups" (v3, 16 Oct 2025; merged for **6.19**) packaged it as the macro
# `tdh_do_no_vcpus`. Sources: Yan Zhao's RFC with the lock table [Y-RFC], her patch [Y4], the
# 6.16 pull [PULL616], Sean's macro [S20] and the 6.19 pull [PULL619]; the module 1.5.01 source
# [M15] (`tdxedu sources TAG` prints any of them).

# %% [markdown]
# ## 1. See it happen
#
# KVM removes a private page with `kvm->mmu_lock` held **for write**
# (`tdx_sept_remove_private_spte`, `arch/x86/kvm/vmx/tdx.c`). Nothing else in KVM can touch
# the mirror EPT meanwhile.
#
# **Predict:** can its first SEAMCALL, `TDH.MEM.RANGE.BLOCK`, still fail with
# `TDX_OPERAND_BUSY`? If yes, who could be holding the lock?
#
# The widget runs the explorer scenario `busy-accept-kick-retry-once`: vCPU 0 (`vcpu0`, on
# pCPU 0) enters the guest and accepts page 1 (`TDG.MEM.PAGE.ACCEPT`, which zeroes the page
# first), while KVM (`zap`, on pCPU 1) removes the same page. The *script* says which actor
# runs at each scheduler step; after it, the first runnable actor runs. Press **Step** until
# KVM's BLOCK has succeeded, reading the status line: the actor, the call, the status, and the
# kernel chain `zap_private → tdx_sept_remove_private_spte → tdx_sept_zap_private_spte` (the
# names of Linux 6.16, whose policy this is). Then pick `busy-accept-no-retry` and **Run**.
# Then open the answer.

# %%

from tdxedu.lessons.operand_busy import host_priority_story
from tdxedu.lessons.operand_busy_answers import (
    busy_runs_answer,
    locks_answer,
    matrix_answer,
    verdicts_answer,
    zero_step_prose,
)
from tdxedu.lessons.operand_busy_exercises import (
    check_busy_policy,
    check_busy_prediction,
    show_solution,
)
from tdxedu.lessons.operand_busy_locks import format_vp_enter_phases
from tdxedu.widgets import Explorer
from tdxedu.widgets.lesson_busy import BUSY_SCRIPTS, busy_stepper

busy = busy_stepper("busy-accept-kick-retry-once")
busy

# %% tags=["nbval-check-output"]
busy_runs_answer(BUSY_SCRIPTS)

# %% [markdown]
# ## 2. Who locks what
#
# Every lock in the module is a **try-lock** (module 1.5.01 `tdx_locks.h`, [M15]):
#
# * a *sharex* lock (readers or one writer) for the TD epoch and the S-EPT tree; with a
#   host-priority variant for OP_STATE and every PAMT entry (which is how the TDR, a TDVPR or
#   a target page is "locked");
# * the **S-EPT entry lock**: bit 11 (TDEL) of the entry itself, plus bit 52 (TDHP, host
#   priority); one holder; SEAMCALLs take the *host* side, TDCALLs the *guest* side.
#
# **Predict** before opening the answer: which calls take the S-EPT *tree* exclusively? Which
# lock does a vCPU hold for as long as it runs in the guest?
#
# The table in the answer is not typed in: it is **generated** by issuing each call once on a
# model TD with a spy on the module's try-locks (`tdxedu.lessons.operand_busy_locks.lock_table`),
# then compared cell by cell with a table transcribed from the module's handlers
# (`tdh_vp_enter.c`, `tdh_mem_*.c`, `tdg_mem_page_*.c`). A page operand is locked through the
# PAMT walk, which also holds the page's 2 MB PAMT entry shared (not a column here).

# %% tags=["nbval-check-output"]
locks_answer()

# %% [markdown]
# Read it with KVM's locking in mind (Yan's contention matrix in [Y-RFC]):
#
# * KVM serialises *its own* S-EPT SEAMCALLs with `mmu_lock`: the zap path (BLOCK, TRACK,
#   REMOVE) holds it for write, the fault path (AUG, SEPT.ADD) for read.
# * But **`TDH.VP.ENTER` and the guest's TDCALLs are not under `mmu_lock`.** The guest's
#   ACCEPT, ATTR.RD and ATTR.WR take the entry's *guest* lock. VP.ENTER takes the epoch lock
#   shared only to count itself in `REFCOUNT[epoch & 1]`, and releases it at once; only then,
#   and only when 0-step mitigation is active, it takes the S-EPT tree exclusively.
# * So TRACK can meet VP.ENTER on the epoch lock (for an instant), and BLOCK / REMOVE / AUG can
#   meet a 0-step VP.ENTER on the tree, or a TDCALL on the entry.
# * VPFLUSHDONE and KEY.FREEID take the TDR *exclusively*: every vCPU in the guest holds it
#   shared (the `*`), so those can only run once no vCPU runs. Lesson 04 uses that.
#
# The order inside VP.ENTER decides the contention windows of section 3. Stop a VP.ENTER of a
# vCPU with a 0-step list inside its check, then let it enter, and read which locks it holds
# at each point (module `tdh_vp_enter.c`: TDVPR, TDR, OP_STATE, the epoch step, the 0-step
# filter, then OP_STATE and the tree are released before the guest runs):

# %% tags=["nbval-check-output"]
print(format_vp_enter_phases())

# %% [markdown]
# Inside the 0-step check the vCPU holds the tree exclusively but **not** the epoch lock, and
# it is already counted in the current epoch. A TRACK at that moment succeeds, and leaves the
# entering vCPU counted in what is now the *previous* epoch: a PAGE.REMOVE right after it gets
# `TDX_TLB_TRACKING_NOT_DONE` until that vCPU exits (or its entry fails, which undoes the count).

# %% [markdown]
# ## 3. Who makes whom BUSY
#
# Each cell below starts from the same TD, stops the *row* call at its preemption point
# (a vCPU simply in the guest; VP.ENTER inside its 0-step check; a guest ACCEPT zeroing page
# P; a BLOCK or a TRACK half-way), then issues the *column* call from another CPU.
#
# **Predict** four cells first: *ACCEPT of P* × *BLOCK P*; *0-step check* × *AUG*;
# *0-step check* × *TRACK*; *TRACK* × *VP.ENTER vCPU 1*. Then run.

# %% tags=["nbval-check-output"]
matrix_answer()

# %% [markdown]
# Things to notice:
#
# * `BUSY|SEPT` is the **tree** (operand `0x92`, the old `TDX_ERROR_SEPT_BUSY`); `BUSY|RCX` an
#   **entry**; `BUSY|TD_EPOCH` the **epoch** lock (`0xA9`).
# * A vCPU that is merely *in the guest* blocks none of KVM's zap calls: the 0-step check and
#   TDCALLs are the culprits, which is why Yan called them "expected to be rare".
# * `NOT_BLOCKED` (`TDX_GPA_RANGE_NOT_BLOCKED`) in the REMOVE column means REMOVE got every
#   lock and then found P not blocked: the module takes locks **before** it looks at state, so
#   a busy entry wins over a wrong state.
# * 0-step check × TRACK is `ok`: the epoch lock was released before the check began (the
#   phases table of section 2).
# * TRACK × VP.ENTER: the vCPU can't even enter while TRACK advances the epoch. That is why the
#   fastpath treats a BUSY VP.ENTER as "exit handled" ([K616] `tdx_exit_handlers_fastpath`).
#
# ### Host priority
#
# Why is *one* retry enough for the entry lock? When a SEAMCALL loses an entry, the module sets
# TDHP in the entry; from then on *guest* acquires of that entry fail with
# `TDX_OPERAND_BUSY_HOST_PRIORITY` until the host wins once ([M15] `tdx_locks.h`):

# %% tags=["nbval-check-output"]
print(host_priority_story())

# %% [markdown]
# `TDX_OPERAND_BUSY_HOST_PRIORITY` (`0x8000020400000000`) is in module 1.5 but not in the
# kernel's `tdx_errno.h`: the host never sees it, only the guest does.

# %% [markdown]
# ## 4. 0-step mitigation: the vCPU takes the whole tree

# %% tags=["nbval-check-output"]
zero_step_prose()

# %% [markdown]
# **Predict, then Step:** pick `busy-zero-step-kick-retry-once` in the widget of section 1
# (vCPU 0's list holds page 1, so its next VP.ENTER runs the 0-step check). Which status does
# KVM's BLOCK get now, and with which operand? (Then try `busy-zero-step-no-retry`.)

# %% [markdown]
# ## 5. Three BUSY policies, every interleaving
#
# The model keeps three policies on one code path in `tdxedu/kvm/tdx.py` (versions are data,
# not copies of the code); its call chains name the functions of the kernel the VM models,
# `KvmTdx(kernel="v6.16")` by default:
#
# * `no-retry`: nothing; any error after BLOCK / TRACK / REMOVE is a `KVM_BUG_ON`. A strawman:
#   the 6.16 rule without its retry.
# * `retry-loop`: call again while BUSY, with `mmu_lock` held for write. The pre-merge
#   out-of-tree code (TRACK and REMOVE looped; SEPT_BUSY retried up to 16 times).
# * `kick-retry-once`: set `wait_for_sept_zap`, kick every vCPU
#   (`KVM_REQ_OUTSIDE_GUEST_MODE`, waiting for each), retry **once**, clear the flag; any
#   error after that is a `KVM_BUG_ON`. Yan's [Y4]: 6.16 `tdx_no_vcpus_enter_start/stop`,
#   6.19 `tdh_do_no_vcpus`.
#
# **Predict** for each policy: can `kvm_bug` happen (sometimes / never)? Can KVM spin
# (`step_bound`: a run still going after 30 scheduler steps)?
#
# The explorer answers like herd7 does for a litmus test: *always / sometimes / never* over
# every interleaving. Press **Explore**, pick a condition, **Replay witness** to step through
# the shortest run where it holds. (The `retry-loop` scenarios have many more interleavings:
# exploring them takes 10–15 s.)

# %%
explorer = Explorer(sorted(BUSY_SCRIPTS), scenario="busy-accept-no-retry")
explorer

# %% tags=["nbval-check-output"]
verdicts_answer(max_steps=30)

# %% [markdown]
# ## 6. The history, in kernel versions
#
# * **Pre-merge (2023–2024)**: a wrapper retried `TDX_ERROR_SEPT_BUSY` up to 16 times; the zap
#   paths looped (an out-of-tree patch marked HACK, "KVM: TDX: Retry seamcall when
#   TDX_OPERAND_BUSY with operand SEPT", listed in [Y-RFC]).
# * **RFC 21 Nov 2024, v1 13 Jan 2025** (Yan Zhao): three groups. PAGE.ADD → `-EBUSY`;
#   SEPT.ADD and PAGE.AUG (mmu_lock for read) → `-EBUSY` → `RET_PF_RETRY`, and the TDX
#   EPT-violation handler **retries locally** (fewer VP.ENTERs, fewer 0-step triggers); BLOCK,
#   TRACK, REMOVE (mmu_lock for write, must not fail) → kick and retry once. Sean suggested the
#   per-VM flag plus `KVM_REQ_OUTSIDE_GUEST_MODE`.
# * **6.16** (merged): `tdx_no_vcpus_enter_start/stop` set and clear `wait_for_sept_zap`;
#   `tdx_vcpu_run()` returns "exit handled" without VP.ENTER while it is set; any error after
#   the retry is `KVM_BUG_ON`.
# * **6.18**: the local retry loop of the EPT-violation handler stops when the memslot is
#   invalid (being deleted or moved): it could deadlock with the memslot update (Merge tag
#   "KVM x86 MMU changes for 6.18", [PULL618-MMU]).
# * **6.19**: `tdh_do_no_vcpus(tdh_func, kvm, args...)`, one macro for TRACK, BLOCK and
#   REMOVE: asserts `mmu_lock` held for write, calls, and on BUSY sets the flag, kicks,
#   retries once, clears the flag. It makes it "all but impossible to leave an elevated
#   wait_for_sept_zap" ([S20]). `KVM_BUG_ON` + `pr_tdx_error` become `TDX_BUG_ON*`. A
#   `tdx_vm_state_guard` (kvm->lock, every vcpu->mutex, slots_lock) makes build-time ioctls
#   exclusive with anything that could contend.
#
# Loops that remain in 6.16 and 6.19 ([K616], [K-NEW]): the EPT-violation local retry (AUG /
# SEPT.ADD), the
# vCPU run loop re-entering after a BUSY VP.ENTER, `TDH.PHYMEM.CACHE.WB` on
# `TDX_INTERRUPTED_RESUMABLE` (up to 10000), and `sc_retry` on `TDX_RND_NO_ENTROPY`.

# %% [markdown]
# ## Exercises
#
# **1. Predict the matrix.** Fill in the status (`"ok"`, `"BUSY|SEPT"`, `"BUSY|RCX"`,
# `"BUSY|TD_EPOCH"`, `"NOT_BLOCKED|RCX"`) for these five cells *without* looking back at
# section 3, using only the lock table and the VP.ENTER phases. The checker compares with the
# model.

# %%
my_guess = {
    ("guest ACCEPT of P", "BLOCK P"): "ok",  # fix me
    ("VP.ENTER 0-step check", "AUG"): "ok",  # fix me
    ("VP.ENTER 0-step check", "TRACK"): "BUSY|TD_EPOCH",  # fix me
    ("TRACK", "VP.ENTER vCPU 1"): "ok",  # fix me
    ("vCPU 0 in the guest", "TRACK"): "ok",
}
check_busy_prediction(my_guess)

# %%
show_solution("busy_prediction")

# %% [markdown]
# **2. Write `tdh_do_no_vcpus`.** Your generator replaces KVM's zap-path BUSY handler. It gets
# `kt` (`struct kvm_tdx`), the SEAMCALL name and its arguments; issue the call with
# `r = yield from kt.sc(name, *args, cpu=cpu)` and return the final `r.status`. You may set
# `kt.wait_for_sept_zap` and kick every vCPU with
# `yield from kt.kvm.kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE)`.
# The checker explores **every** interleaving of both busy scenarios with your code and wants
# `kvm_bug` never, no leak, no spin, no deadlock. The starter below is `no-retry`: run it and
# read the verdict, then fix it. (Try a retry loop too, and a kick that forgets to clear the
# flag: each fails differently.)

# %%
from tdxedu.kvm.kvm import KVM_REQ_OUTSIDE_GUEST_MODE  # noqa: F401 - for your policy
from tdxedu.tdx import status as st


def my_tdh_do_no_vcpus(kt, name, *args, cpu):
    r = yield from kt.sc(name, *args, cpu=cpu)
    if r.status.matches(st.TDX_OPERAND_BUSY):
        pass  # what now?
    return r.status


check_busy_policy(my_tdh_do_no_vcpus)

# %%
show_solution("busy_policy")

# %% [markdown]
# **3. Think.** The checker also accepts a policy that kicks and retries but never sets
# `wait_for_sept_zap`: in these two small scenarios the kicked vCPU has nothing left that
# re-takes the lock. Describe a scenario where the flag matters (hint: a vCPU whose 0-step
# list contains the very GPA being zapped re-enters between the kick and the retry). What
# would the explorer report for `no flag` there?
#
# **Next:** [04 · Tearing down a TD](04_td_teardown.ipynb)
