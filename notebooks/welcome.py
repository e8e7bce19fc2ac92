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
# # Welcome to tdxedu
#
# **tdxedu** lets you *run* how Linux KVM drives Intel TDX: an executable model of the TDX
# module's SEAMCALLs and of KVM's memory management (TDP MMU roots, Secure-EPT teardown,
# Dynamic PAMT), driven from widgets in these notebooks. No TDX hardware needed.
#
# This is a placeholder lesson until the real lessons land. It shows how every lesson works:
# you *predict*, then press **Step** and watch.
#
# **Predict first:** before a TD (a trust domain, TDX's confidential VM) can run its first
# instruction, how many different SEAMCALLs does KVM issue? Which one comes first?

# %%
from tdxedu.widgets.welcome import WelcomeDemo, summary_table

demo = WelcomeDemo()
demo.widget

# %% [markdown]
# Press **Step** to issue the next SEAMCALL; the blue boxes are the calls KVM has made.
# **Reset** starts again. The names are the kernel's own: grep for `tdh_mng_create` in
# `arch/x86/kvm/vmx/tdx.c` to see where KVM calls it.
#
# The whole sequence as text (this cell's output is checked by the test suite):

# %% tags=["nbval-check-output"]
print(summary_table())

# %% [markdown]
# ## What next
#
# The lessons (`00_tour.ipynb` and onwards) replace this narration with the real model: the
# same SEAMCALLs, checked by the TDX module's state machine, with errors such as
# `TDX_OPERAND_BUSY` when two CPUs race for the same lock.
