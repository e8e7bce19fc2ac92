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
# # 00 · A tour: KVM, the TDX module, and one TD's life
#
# **What you'll be able to do** (about 25 minutes)
#
# * name the three actors in a TDX system (KVM on the host, the TDX module in SEAM mode, the
#   guest TD) and say which one owns which memory;
# * explain what a SEAMCALL is and read one in a trace: `tdh_mem_page_remove(td, gpa, level)
#   on cpu0 -> TDX_SUCCESS`;
# * follow a TD from `KVM_TDX_INIT_VM` to the reclaim of its last page on a per-CPU timeline,
#   and find the kernel function behind every step;
# * drive every lesson's widgets: **Step**, **Run**, **Reset**, pickers, and the "why?" line.
#
# **The real story.** KVM's TDX host support was merged for Linux **6.16** (Paolo Bonzini's
# pull for the 6.16 merge window, 28 May 2025). Tearing a TD down turned out to be the slow
# part: in March 2025 Adrian Hunter measured **72 s** to reclaim the memory of an 18 GB TD
# with 4 vCPUs, and 517 s for 107 GB ("[PATCH RFC] KVM: TDX: Defer guest memory removal to
# decrease shutdown time"). The fix that followed, `KVM_TDX_TERMINATE_VM`, reached the 6.17 VMX
# pull and was then dropped; upstream still removes every private page the slow way. By the
# end of this tour you will have *counted* those SEAMCALLs yourself.
#
# **What you need:** Python; no TDX hardware. Everything below runs a model of the TDX
# module and of KVM whose names are the kernel's: grep `arch/x86/kvm/vmx/tdx.c` for any
# function you see.

# %% [markdown]
# ## 1. Three actors
#
# * **KVM** (`arch/x86/kvm/vmx/tdx.c`) runs in the host kernel (VMX root). It owns host
#   memory and the pages it *offers* to a TD. It talks to the module with **SEAMCALL**, a CPU
#   instruction that enters SEAM mode.
# * The **TDX module** runs in SEAM mode, signed by Intel. It owns the PAMT (who owns each
#   physical page), every TD's Secure EPT and the TD keys. It returns to KVM with SEAMRET
#   and enters the guest on `TDH.VP.ENTER`.
# * The **guest TD** runs in VMX non-root mode, its memory encrypted with its own key (the
#   HKID). It owns its private memory once it has accepted it, and talks to the module with
#   **TDCALL** (`tdg_mem_page_accept`, ...).
#
# KVM never writes the TD's private page tables or its private memory. It *asks* the module,
# one SEAMCALL at a time, and the module answers with a 64-bit status such as `TDX_SUCCESS`
# or `TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT`. Every SEAMCALL names its *leaf*
# (`TDH.MEM.PAGE.REMOVE`), its operands (a TDR page, a GPA, a level) and the logical CPU it
# runs on.
#
# **Predict first.** A TD with 64 KiB of memory (16 private pages) and 2 vCPUs is built, runs,
# and is destroyed. How many SEAMCALLs does that take in total: about 20, about 150, or about
# 1,000? Write your guess down, then run the cells below.

# %%
from tdxedu.lessons.tour import first_steps_answer, life_answer, strategies_answer
from tdxedu.lessons.tour_exercises import check_teardown_count, show_solution
from tdxedu.steps import TdLifeSource
from tdxedu.viz import as_image, draw_lifecycle, draw_timeline
from tdxedu.widgets import Explorer, td_life_stepper

life = td_life_stepper("64K", vcpus=2, strategy="v6.16")
life

# %% [markdown]
# ## 2. How to drive a lesson widget
#
# * **Step** advances the model by one Step: the line under the buttons says exactly what one
#   Step is for that widget. The status line says what it was in words, the kernel function
#   chain that issued it (`issued by kvm_gmem_release → tdx_sept_remove_private_spte`), the
#   source file, and a **why?** you can unfold: the docstring of that function in the model,
#   with its source tag.
# * **Run** goes to the end; **Reset** starts the same TD again. Changing a picker (teardown
#   strategy, memory, vCPUs) rebuilds the TD. A bad value (try memory `banana`, or `0`
#   vCPUs) shows a message in the widget; nothing breaks.
# * The pictures: a **per-CPU timeline** (one lane per logical CPU; one mark per SEAMCALL,
#   with its own colour and shape for success, BUSY and error, and marks for IPIs, lock holds
#   and vCPUs running in the guest, each named in the legend under the picture), the
#   **TD lifecycle** (the module's state machine, the
#   current state lit), the **Secure EPT** (the TD's private page tables, one box per entry)
#   and the **PAMT** (one pixel per 4 KiB page of host memory, coloured by what the module
#   says that page is).
#
# %% [markdown]
# **Predict, then Step:** which SEAMCALL creates the TD? Which one moves the lifecycle to
# `TD_KEYS_CONFIGURED`? When does the PAMT get its first green (`PT_REG`) pixel? Press
# **Step** until you have all three, then open the answers.

# %% tags=["nbval-check-output"]
first_steps_answer("64K", vcpus=2, strategy="v6.16")

# %% [markdown]
# ## 3. One TD's life, as text
#
# The same run without the widget: build, then tear down under the upstream (6.16) order.
# Back to your guess from section 1 (about 20, about 150, or about 1,000 SEAMCALLs?): the
# answer, counted by the model (checked by the test suite, so it is exactly what you should
# see):

# %% tags=["nbval-check-output"]
life_answer("64K", vcpus=2, strategy="v6.16")

# %% [markdown]
# The whole life on one timeline (the last 48 events):

# %%
src = TdLifeSource("64K", vcpus=2, strategy="v6.16")
while not src.done:
    src.step()
as_image(draw_timeline(src.trace, window=48, title="the last 48 events of the TD's life"))

# %% [markdown]
# and the lifecycle at the end: the TDR page itself has been reclaimed, so the module no longer
# knows the TD.

# %%
as_image(draw_lifecycle(None, None, reclaimed=True))

# %% [markdown]
# ## 4. Compare teardown strategies
#
# **Predict:** the never-merged `KVM_TDX_TERMINATE_VM` releases the HKID *first*, while the TD
# still has all its memory. Which SEAMCALLs disappear from the counts, and which one takes
# their place? Pick `terminate-vm` in the widget above and press **Run**, then open the
# answer:

# %% tags=["nbval-check-output"]
strategies_answer("64K", vcpus=2)

# %% [markdown]
# The other two strategies are history you can run: `v19-notifier` (2024: release the HKID
# from the MMU notifier, while a vCPU may still be loaded) and `flush-at-vcpu-free` (Kai
# Huang's "normal way"). A later lesson shows, with the explorer, why they were rejected.

# %% [markdown]
# ## 5. A taste of the explorer: every interleaving
#
# Real CPUs run at the same time. The explorer runs *every* interleaving of a small scenario
# and answers, per condition, **always / sometimes / never**, like herd7 for a litmus test.
# Here KVM zaps a page while the guest accepts it; the BUSY policy is 6.16's "kick all vCPUs
# out and retry once". Press **Explore**, pick a condition, and **Replay witness** to step
# through the shortest run where it holds.

# %%
explorer = Explorer(["busy-accept-kick-retry-once", "busy-accept-no-retry",
                     "busy-accept-retry-loop"], scenario="busy-accept-kick-retry-once")
explorer

# %% [markdown]
# ## Exercises
#
# **1. Count before you run.** How many `tdh_mem_page_remove` calls does the v6.16 teardown
# of a 64 KiB TD with 2 vCPUs issue? Change `answer` and run the cell; the checker builds the
# TD and tears it down to judge.

# %%
answer = 0  # your prediction
check_teardown_count(answer, memory="64K", vcpus=2, strategy="v6.16",
                     leaf="tdh_mem_page_remove")

# %%
show_solution("teardown_count_64K")

# %% [markdown]
# **2. Explore.** In the widget of section 1, which is the first step whose "why?" names
# `tdx_mmu_release_hkid`? What lifecycle state does the module enter right after it?
#
# **3. Go further.** The 2024 `v19-notifier` order released the HKID from the MMU notifier
# while a vCPU could still be loaded. Run `Explorer(["hkid-release-v19-notifier",
# "hkid-release-v6.16"])`, press **Explore**: for which order is `hkid_leaked` "sometimes"?
#
# **Next:** [01 · SEAMCALLs, status codes and the TD lifecycle](01_seamcalls_and_lifecycle.ipynb)
