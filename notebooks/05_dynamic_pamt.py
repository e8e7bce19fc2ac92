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
# # 05 · Dynamic PAMT: page pairs, refcounts, and who pays for them
#
# **What you'll be able to do** (about 35 minutes)
#
# * say what the PAMT costs with and without Dynamic PAMT, per TiB and for a real host, and
#   where each byte goes (PAMT_4K, PAMT_2M, PAMT_1G, the bitmap, `pamt_refcounts`, page pairs);
# * follow `tdx_pamt_get` / `tdx_pamt_put` through a TD's life and see each
#   `TDH.PHYMEM.PAMT.ADD` (leaf 58) and `TDH.PHYMEM.PAMT.REMOVE` (leaf 59) on the PAMT map;
# * explain why KVM supplies the pages from a per-vCPU cache, by running the four designs
#   that were proposed instead and watching each one fail in its own way;
# * show, with the explorer, why `pamt_lock` exists and why the module's removal hint is not
#   enough, and write the refcounting yourself.
#
# **The real story.** The TDX module keeps a 16-byte PAMT entry for *every* 4 KiB page it
# might use, allocated when TDX is initialised, "approximately 0.4 % of system memory"
# whether or not a TD ever runs (Kirill A. Shutemov, "[RFC, PATCH 00/12] TDX: Enable Dynamic
# PAMT", 2 May 2025). Dynamic PAMT keeps only the 2 MiB and 1 GiB levels and lets the host
# hand the module the 4 KiB level on demand, two pages per 2 MiB range. The hard part was not
# the module: it was *where KVM gets those pages* while it holds `mmu_lock`. The series went
# through Kirill's RFC and v2 (June 2025), Rick Edgecombe's v3 (Sep 2025) and v4 (Nov 2025),
# Sean Christopherson's combined "v5" RFC with S-EPT huge pages (Jan 2026), and Rick's v6
# (25 May 2026, "[PATCH v6 00/11] Dynamic PAMT"). A later revision was pushed to tip
# `x86/tdx` on 4 Sep 2026 and is in linux-next next-20260907; the mainline merge (likely
# 7.4) is not confirmed ([TIP-X86-TDX]). Sources: the cover letters [RFC-CL], [V2-CL], [V3-CL],
# [V4-CL], [SEAN-V5-CL], [V6-CL] and the v6 patches ([V6-01] ... [V6-11]); the module's PAMT
# code [M15-PAMT], [M20]; kernel files `arch/x86/virt/vmx/tdx/tdx.c` and `arch/x86/kvm/vmx/tdx.c`.

# %% [markdown]
# ## 1. What the PAMT costs
#
# Every PAMT entry is 16 bytes, at every level (module `pamt_manager.h`). Static PAMT has
# one entry per 4 KiB page (PAMT_4K), per 2 MiB (PAMT_2M) and per 1 GiB (PAMT_1G) of TDX
# memory. Dynamic PAMT replaces PAMT_4K with a **PAMT_PAGE_BITMAP** (1 bit per 4 KiB page:
# "is this page being used *as* a PAMT page?") and the kernel adds `pamt_refcounts`, one
# `atomic_t` per 2 MiB of physical address space ([V6-02], [V6-04]).
#
# **Predict first.** Per TiB of TDX memory, static PAMT is about 4 GiB. With Dynamic PAMT
# and no TD running, is it about 400 MiB, 40 MiB or 4 MiB?

# %% tags=["nbval-check-output"]

from tdxedu.lessons.dynamic_pamt import (
    cover_letter_prose,
    cover_letter_text,
    host_answer,
    pamt_life_answer,
    pamt_memory_curves,
    per_tib_answer,
    policies_answer,
    race_answer,
)
from tdxedu.lessons.dynamic_pamt_exercises import (
    check_dpamt_bytes,
    check_lossy_scenarios,
    check_pamt_refcounting,
    show_solution,
)
from tdxedu.viz import as_image
from tdxedu.widgets import Explorer
from tdxedu.widgets.lesson_pamt import (
    DpamtLifeSource,
    dpamt_life_stepper,
    draw_pamt_memory,
    refcount_table,
)

per_tib_answer()

# %% [markdown]
# The catch is `pamt_refcounts`: it covers the *address space* up to `max_pfn`, not the
# memory, and v6 dropped the optimisation that skipped holes. Rick's v6 cover letter has the
# table (TDX on, no TDs); here it is recomputed from the accounting model, `tdxedu.kvm.pamt_memory`:

# %% tags=["nbval-check-output"]
print(cover_letter_text())

# %% tags=["nbval-check-output"]
cover_letter_prose()

# %% [markdown]
# Now run TDs. **Predict:** a 1 TiB host runs one 64 GiB TD mapped at 4 KiB (today's upstream
# KVM maps private memory only at 4 KiB). How much Dynamic PAMT does that TD cost?

# %% tags=["nbval-check-output"]
host_answer()

# %% [markdown]
# The same numbers as the host fills up with 64 GiB TDs:

# %%
as_image(draw_pamt_memory(pamt_memory_curves()))

# %% [markdown]
# Static PAMT is flat; 4K-mapped Dynamic PAMT grows to meet it when all memory runs TDs (the
# v6 letter: "if the system runs 100 % TDs, DPAMT could come out slightly behind");
# huge-page TDs stay near the floor.

# %% [markdown]
# ## 2. Pairs and refcounts, step by step
#
# In the model, `TdxModule(dynamic_pamt=True)` keeps, per 2 MiB range, a PAMT_2M entry that is
# `PT_NDA` (no 4 KiB level), `PT_PAMT` (a node naming the **pair** of host pages that hold the
# range's 512 PAMT_4K entries) or a 2 MiB leaf. The kernel keeps `pamt_refcounts[pfn >> 9]`,
# the number of 4 KiB pages of the range the host has given to the module, across *all* TDs:
#
# * `tdx_pamt_get(pfn, cache)`: fast path `atomic_inc_not_zero`; on 0 → 1 take two pages,
#   take `pamt_lock`, re-check, `TDH.PHYMEM.PAMT.ADD` ([V6-05], [V6-06]);
# * `tdx_pamt_put(pfn)`: `atomic_dec_and_lock`; only 1 → 0 takes the lock and issues
#   `TDH.PHYMEM.PAMT.REMOVE`, then frees the two pages the module hands back.
#
# Control pages (TDR, TDCS, TDVPR, TDCX) get theirs through `tdx_alloc_control_page()`;
# S-EPT and guest pages take theirs under `mmu_lock` from the vCPU's `pamt_cache`, topped up
# to 10 pages beforehand by `tdx_topup_pamt_cache()` ([V6-07], [V6-09]).
#
# **Predict:** a 2 MiB TD with 2 vCPUs. The host allocator hands out pages lowest first. How
# many PAMT.ADDs will the whole life take, and which SEAMCALL is the very first one?
#
# Press **Step** once and watch the map: when a PAMT.ADD succeeds, two pixels turn purple
# (the pair's pages, `PT_PAMT`) and the square beside the row fills. Then press **Next PAMT
# op** to jump from one ADD/REMOVE to the next. The bar beside each row is the kernel refcount.

# %%
life = dpamt_life_stepper("2M", vcpus=2, policy="vcpu-cache")
life

# %% tags=["nbval-check-output"]
pamt_life_answer(DpamtLifeSource("2M", vcpus=2, policy="vcpu-cache"), refcount_table)

# %% [markdown]
# ## 3. The allocation debate, policy by policy
#
# The module side was settled early. A year of review went into one question: where do the
# two pages come from when KVM maps a page **under `mmu_lock`**, where it must not sleep?
# Each proposal is a named policy on the same code path (`tdxedu.kvm.pamt.ALLOC_POLICIES`):
#
# Sources: RFC-08 thread (May 2025, Yan Zhao, Kai Huang, Kirill), v2 review (Aug 2025, Sean,
# Vishal Annapurve), v2/v3/v6 cover letters.
#
# | policy | proposal | objection raised |
# |---|---|---|
# | `phys-prepare` | RFC: `phys_prepare()` hook, pool passed by the TDP MMU | no vCPU, no pool |
# | `kmem-cache-ctor` | Kai Huang: S-EPT `kmem_cache` ctor installs DPAMT | PAMT held, no TD |
# | `gmem-prepare` | `kvm_arch_gmem_prepare()` at guest_memfd allocation | THP split/collapse |
# | `module-hint` | "previous attempt": no refcount, REMOVE on the hint | racy (section 4) |
# | `vcpu-cache` | v3-v6: per-vCPU `pamt_cache`, filled before `mmu_lock` | none (in tip) |
#
# **Predict** for each policy: does a plain build + teardown of a small TD come out clean? If
# not, what is left behind? Then pick the policy in the widget above (and press **Run**), or
# open all five at once:

# %% tags=["nbval-check-output"]
policies_answer()

# %% [markdown]
# ## 4. Two CPUs, one 2 MiB range: why `pamt_lock`
#
# Each CPU runs `tdx_pamt_get` → uses the page (the moment KVM would `PAGE.AUG` it, so the
# pair must be there) → `tdx_pamt_put`. The module's PAMT.ADD/REMOVE take the PAMT_2M entry's
# lock exclusively and fail with `TDX_OPERAND_BUSY` instead of waiting ([V3-CL]). Three
# designs: `pamt-get-put` (v6: `pamt_lock` around "read count, decide, SEAMCALL, update"),
# `pamt-get-put-no-pamt-lock` (v6's fast paths without the lock, reading
# `TDX_HPA_RANGE_NOT_FREE` as "someone else added it", as v4 did), and
# `pamt-get-put-module-hint`.
#
# **Predict:** for which designs is `pair_lost` (a CPU uses its page while the range has no
# pair) *sometimes*? Press **Explore** for each, then replay the `pair_lost` witness.

# %%
race = Explorer(["pamt-get-put", "pamt-get-put-no-pamt-lock", "pamt-get-put-module-hint"],
                scenario="pamt-get-put-no-pamt-lock")
race

# %% tags=["nbval-check-output"]
race_answer()

# %% [markdown]
# ## Exercises
#
# **1. Count the bytes.** How many MiB of Dynamic PAMT does a 1 TiB host spend with one
# 64 GiB TD (4 KiB mappings, 8 vCPUs, S-EPT pages packed)? Work it out from section 1's
# rules (bitmap, PAMT_2M, PAMT_1G, refcounts, then 8 KiB per 2 MiB range touched), then check.

# %%
answer_mib = 40  # your answer in MiB
check_dpamt_bytes(answer_mib)

# %%
show_solution("dpamt_bytes_1tib_64g")

# %% [markdown]
# **2. Write `tdx_pamt_get` / `tdx_pamt_put`.** `lab.refcount` is yours (2 MiB index → count);
# `lab.pamt_add(pfn)` and `lab.pamt_remove(pfn)` issue the SEAMCALLs. The checker takes and
# drops pages of three ranges in a seeded order and asks the module after every step: does
# every page you hold have a pair? Was any SEAMCALL refused? Is any pair left over? This
# first try adds a pair on every get: run it and read the status it gets.

# %%
def get(lab, pfn):
    lab.pamt_add(pfn)  # fix me


def put(lab, pfn):
    pass  # fix me


check_pamt_refcounting(get, put)

# %%
show_solution("pamt_get")

# %% [markdown]
# **3. Which designs lose a pair?** Give the set of scenario names for which the explorer
# says `pair_lost` is *sometimes*.

# %%
lossy = {"pamt-get-put"}  # fix me
check_lossy_scenarios(lossy)

# %%
show_solution("lossy_scenarios")

# %% [markdown]
# **4. Think.** v6's get takes two pages from the cache *before* taking `pamt_lock`, and the
# loser of a 0 → 1 race gives them back. Why not allocate inside the lock? (Hint: `pamt_lock`
# is a spinlock, and `mmu_lock` is already held.) And why must a failed PAMT.REMOVE set the
# count back to 1 and leak the pages with a WARN instead of retrying ([V6-06])?
#
# **Next:** [06 · TDP MMU roots](06_tdp_mmu_roots.ipynb)
