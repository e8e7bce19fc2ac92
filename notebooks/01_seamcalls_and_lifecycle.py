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
# # 01 · SEAMCALLs, status codes and the TD lifecycle
#
# **What you'll be able to do** (about 30 minutes)
#
# * decode any SEAMCALL status from a kernel log, e.g. `0xC0000B0D00000001` and
#   `0x8000020000000092`, into the kernel's macro names (class, code, operand id);
# * list the build SEAMCALLs in the order KVM issues them and say which module state each
#   one needs (`TD_HKID_ASSIGNED`, `TD_KEYS_CONFIGURED`, OP_STATE `INITIALIZED`, `RUNNABLE`);
# * read the PAMT: which pages the module owns, as what type, for which TD;
# * predict the error the module returns for a call in the wrong order, then check.
#
# **The real story.** A status like `TDX_OPERAND_BUSY | TDX_OPERAND_ID_SEPT`
# (`0x8000020000000092`) is what KVM's TD page removal kept hitting when a vCPU's 0-step
# mitigation or a guest `TDG.MEM.PAGE.ACCEPT` held the Secure EPT: Yan Zhao's "[PATCH 4/7] KVM:
# TDX: Kick off vCPUs when SEAMCALL is busy during TD page removal" (13 Jan 2025), merged in
# 6.16, exists because of that one number. Reviewers read these values in `pr_tdx_error` log
# lines every day; after this lesson you can too.

# %% [markdown]
# ## 1. A status is two numbers in one register
#
# RAX after a SEAMCALL: bits 63:32 are the status (bit 63 = error, bit 62 = non-recoverable),
# bits 31:0 the **operand id** naming *which* resource was busy or invalid (RCX, the TDR,
# the S-EPT, the TD epoch...). `tdxedu.tdx.decode` prints it as the kernel spells it.
#
# **Predict:** `0x8000020000000092`: error or not? Busy or invalid? Which operand? And
# `0xC0000B0D00000001`, `0xC0000B0600000001`, `0x00000B0700000000`, `0x8000082400000000`?
# `describe(value)` from `tdxedu.tdx` decodes any of them; the answers are below.

# %% tags=["nbval-check-output"]
from tdxedu.lessons.seamcalls_and_lifecycle import build_answer, decode_answer, errors_answer

decode_answer((0x8000020000000092, 0xC0000B0D00000001, 0xC0000B0600000001,
               0x00000B0700000000, 0x8000082400000000))

# %% [markdown]
# ## 2. Build a TD, one wrapper call per Step, in any order you like
#
# The widget issues SEAMCALLs on a fresh TDX module in the order you pick (a preset) or type
# (wrapper names, comma separated). Operands are filled in the way KVM would: a TDR page and
# a private HKID for `tdh_mng_create`, every TDCS page for `tdh_mng_addcx`, and so on.
#
# **Predict, then Step:** with *KVM's order*, which call moves the lifecycle to
# `TD_KEYS_CONFIGURED`? Which one moves OP_STATE to `RUNNABLE`? Watch the PAMT: each
# `tdh_mng_addcx` turns a white pixel orange (`PT_TDCX`), `tdh_mem_sept_add` blue (`PT_EPT`),
# `tdh_mem_page_add` green (`PT_REG`).

# %%

from tdxedu.lessons.seamcalls_and_lifecycle_exercises import (
    check_build_order,
    check_decode,
    show_solution,
)
from tdxedu.steps import SeamcallScriptSource
from tdxedu.widgets import seamcall_stepper
from tdxedu.widgets.stepper import BUILD_PRESETS

calls = seamcall_stepper()
calls

# %% tags=["nbval-check-output"]
build_answer()

# %% [markdown]
# ## 3. Break the order on purpose
#
# Pick the other presets in the widget. Before each **Run**, write down the status you
# expect (one preset has two different refusals). Then open the answer (checked by the
# tests):

# %% tags=["nbval-check-output"]
errors_answer(BUILD_PRESETS)

# %% [markdown]
# ## 4. The lifecycle, and who owns which page
#
# The module keeps two state machines per TD. The lifecycle (`TD_HKID_ASSIGNED` →
# `TD_KEYS_CONFIGURED` → `TD_BLOCKED` → `TD_TEARDOWN`) is about the *key*: memory can be
# reclaimed directly only in `TD_TEARDOWN`, once no cache line holds data under the TD's
# key. OP_STATE (`UNINITIALIZED` → `INITIALIZED` → `RUNNABLE`) is about the *build*.
#
# The PAMT records, for every 4 KiB page, its type and its owner (the TDR). A summary of the
# module after KVM's order:

# %% tags=["nbval-check-output"]
src = SeamcallScriptSource("tdh_mng_create, tdh_mng_key_config, tdh_mng_addcx, tdh_mng_init, "
                           "tdh_vp_create, tdh_vp_addcx, tdh_vp_init, tdh_mem_sept_add, "
                           "tdh_mem_page_add, tdh_mr_finalize")
while not src.done:
    src.step()
owned = {}
for e in src.module.pamt.in_use():
    owned[e.pt.name] = owned.get(e.pt.name, 0) + 1
td = src.module.tds[src.tdr]
print(f"TD {src.tdr:#x}: {td.lifecycle.name}, OP_STATE {td.tdcs.op_state.name}, "
      f"chldcnt {td.chldcnt}")
for name, n in sorted(owned.items()):
    print(f"  {name:<9} {n}")

# %% [markdown]
# `chldcnt` counts the TD's child pages (TDCS, TDVPR, TDCX, S-EPT and guest pages): the TDR is
# the last page to go, and only when `chldcnt` is 0.

# %% [markdown]
# ## Exercises
#
# **1. Decode.** Give the kernel spelling of `0xC0000B0D00000001`, the status
# `TDH.MEM.PAGE.REMOVE` returns for an entry in the wrong state.

# %%
check_decode(0xC0000B0D00000001, "TDX_EPT_ENTRY_STATE_INCORRECT")  # complete the answer

# %%
show_solution("decode_state")

# %% [markdown]
# **2. Build it yourself.** Write the list of SEAMCALL wrapper names that builds a TD, makes
# it `RUNNABLE` with one initial page, and enters its vCPU, without a single error. The
# checker runs your list on a fresh module and asks the module's invariant checker too.

# %%
my_order = ["tdh_mng_create", "tdh_mng_init"]  # fix me
check_build_order(my_order)

# %%
show_solution("build_order")

# %% [markdown]
# **3. Teardown order.** Type `td_exit, tdh_vp_flush, tdh_mng_vpflushdone, tdh_phymem_cache_wb,
# tdh_mng_key_freeid, tdh_phymem_page_reclaim` after KVM's build order in the widget. Which
# lifecycle state does each call reach? What happens if you drop `tdh_vp_flush`?
#
# **Next:** [02 · Secure-EPT removal and TLB tracking](02_sept_removal_and_tlb.ipynb)
