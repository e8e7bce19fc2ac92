"""Placeholder widget for ``notebooks/welcome.ipynb``: step through how KVM builds a TD.

This is *narration*, not the model: it only walks a fixed list of SEAMCALL wrapper names in
the order KVM issues them while building and starting a TD. The real, checked model lives in
``tdxedu.tdx`` / ``tdxedu.kvm``; lessons drive that instead.

Source of the order: Linux v6.16 ``arch/x86/kvm/vmx/tdx.c`` (``__tdx_td_init`` for
KVM_TDX_INIT_VM, ``tdx_vcpu_init`` for KVM_TDX_INIT_VCPU, ``tdx_gmem_post_populate`` for
KVM_TDX_INIT_MEM_REGION, ``tdx_td_finalize`` for KVM_TDX_FINALIZE_VM, ``tdx_vcpu_run`` for
KVM_RUN), and the wrappers in ``arch/x86/virt/vmx/tdx/tdx.c``.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import ipywidgets as widgets
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

__all__ = ["BUILD_STEPS", "BuildStep", "WelcomeDemo", "render_build_steps", "summary_table"]


@dataclass(frozen=True)
class BuildStep:
    seamcall: str  # kernel wrapper name, e.g. "tdh_mng_create"
    leaf: str  # TDX module leaf, e.g. "TDH.MNG.CREATE"
    ioctl: str  # the userspace request that makes KVM issue it
    what: str  # one line for a learner


BUILD_STEPS: tuple[BuildStep, ...] = (
    BuildStep(
        "tdh_mng_create",
        "TDH.MNG.CREATE",
        "KVM_TDX_INIT_VM",
        "create the TD: a TDR page, and a private key id (HKID) assigned to it",
    ),
    BuildStep(
        "tdh_mng_key_config",
        "TDH.MNG.KEY.CONFIG",
        "KVM_TDX_INIT_VM",
        "program the TD's key into the memory controller, once per CPU package",
    ),
    BuildStep(
        "tdh_mng_addcx",
        "TDH.MNG.ADDCX",
        "KVM_TDX_INIT_VM",
        "hand the TD control structure pages (TDCS) to the TDX module",
    ),
    BuildStep(
        "tdh_mng_init",
        "TDH.MNG.INIT",
        "KVM_TDX_INIT_VM",
        "set the TD's parameters (CPUID, attributes, XFAM)",
    ),
    BuildStep(
        "tdh_vp_create", "TDH.VP.CREATE", "KVM_TDX_INIT_VCPU", "create a vCPU: its TDVPR page"
    ),
    BuildStep("tdh_vp_init", "TDH.VP.INIT", "KVM_TDX_INIT_VCPU", "initialise the vCPU's state"),
    BuildStep(
        "tdh_mem_page_add",
        "TDH.MEM.PAGE.ADD",
        "KVM_TDX_INIT_MEM_REGION",
        "copy the initial guest image (firmware) into private memory",
    ),
    BuildStep(
        "tdh_mr_finalize",
        "TDH.MR.FINALIZE",
        "KVM_TDX_FINALIZE_VM",
        "seal the measurement: the TD becomes RUNNABLE",
    ),
    BuildStep("tdh_vp_enter", "TDH.VP.ENTER", "KVM_RUN", "enter the guest: the TD runs"),
)


def summary_table(steps: tuple[BuildStep, ...] = BUILD_STEPS) -> str:
    """A fixed-width text table of the build steps (deterministic; used by a golden cell)."""
    rows = [("#", "SEAMCALL wrapper", "module leaf", "issued for")]
    rows += [(str(i), s.seamcall, s.leaf, s.ioctl) for i, s in enumerate(steps, 1)]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def render_build_steps(done: int, steps: tuple[BuildStep, ...] = BUILD_STEPS) -> Figure:
    """A row of boxes, one per SEAMCALL; the first ``done`` are filled. Pure: no pyplot."""
    n = len(steps)
    fig = Figure(figsize=(7.2, 1.3), dpi=80)
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.96))
    ax.set_xlim(0, n)
    ax.set_ylim(0, 1)
    ax.axis("off")
    for i, s in enumerate(steps):
        is_done, is_next = i < done, i == done
        box = FancyBboxPatch(
            (i + 0.06, 0.3),
            0.88,
            0.5,
            boxstyle="round,pad=0.02",
            facecolor="#2b7bba" if is_done else "white",
            edgecolor="#d95f02" if is_next else "#555555",
            linewidth=2.2 if is_next else 1.0,
        )
        ax.add_patch(box)
        label = s.leaf.removeprefix("TDH.").replace(".", ".\n", 1)
        ax.text(
            i + 0.5,
            0.55,
            label,
            ha="center",
            va="center",
            fontsize=6.5,
            color="white" if is_done else "black",
        )
    ax.text(0.06, 0.1, f"{done}/{n} SEAMCALLs issued", fontsize=7, va="center")
    return fig


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


class WelcomeDemo:
    """Step through the SEAMCALLs KVM issues to build and start a TD.

    ``demo.widget`` is what a notebook displays; ``step_button.click()`` and
    ``reset_button.click()`` drive it headlessly; ``status.value`` is the visible text and
    ``picture.outputs`` holds the current picture (one ``image/png`` display_data).
    """

    def __init__(self, steps: tuple[BuildStep, ...] = BUILD_STEPS) -> None:
        self.steps = steps
        self.done = 0
        self.step_button = widgets.Button(
            description="Step", button_style="primary", tooltip="issue the next SEAMCALL"
        )
        self.reset_button = widgets.Button(description="Reset", tooltip="start again")
        self.status = widgets.HTML()
        self.status.add_class("tdxedu-status")
        self.picture = widgets.Output()
        self.picture.add_class("tdxedu-picture")
        self.step_button.on_click(lambda _b: self.step())
        self.reset_button.on_click(lambda _b: self.reset())
        self.widget = widgets.VBox(
            [widgets.HBox([self.step_button, self.reset_button]), self.status, self.picture]
        )
        self._redraw(note=None)

    # the model of this placeholder: a counter
    def step(self) -> None:
        if self.done >= len(self.steps):
            self._redraw(note="The TD is already running: press Reset to build it again.")
            return
        self.done += 1
        self._redraw(note=None)

    def reset(self) -> None:
        self.done = 0
        self._redraw(note=None)

    def status_text(self) -> str:
        """Plain text of the status line (what the HTML widget shows)."""
        if self.done == 0:
            return (
                f"Nothing issued yet. Press Step to issue the first of {len(self.steps)} SEAMCALLs."
            )
        s = self.steps[self.done - 1]
        return f"Step {self.done}/{len(self.steps)}: {s.seamcall}() ({s.ioctl}): {s.what}."

    def _redraw(self, note: str | None) -> None:
        text = html.escape(self.status_text())
        if note:
            text += f"<br><b>{html.escape(note)}</b>"
        self.status.value = text
        png = figure_png(render_build_steps(self.done, self.steps))
        # Replace the Output's content in one assignment: works with or without a kernel and
        # avoids the flicker of clear_output + display.
        self.picture.outputs = (
            {
                "output_type": "display_data",
                "data": {
                    "image/png": base64.b64encode(png).decode("ascii"),
                    "text/plain": f"<build steps picture: {self.done}/{len(self.steps)}>",
                },
                "metadata": {},
            },
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
