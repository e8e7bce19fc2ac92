"""Lesson 05 (Dynamic PAMT): a TD's life on a Dynamic PAMT host, one SEAMCALL per Step, with
the PAMT map showing page pairs and per-2 MiB refcounts.

    st = dpamt_life_stepper("2M", vcpus=2, policy="vcpu-cache")
    st                          # Step / Next PAMT op / Run / Reset, pickers, pictures
    st.pamt_button.click()      # in a test: run to the next TDH.PHYMEM.PAMT.ADD / REMOVE

The source is `TdLifeSource` (KVM's own build and teardown path) on a `RunningTd` built with
`dynamic_pamt=True` and one of the kernel-side allocation policies of `tdxedu.kvm.pamt`
(`ALLOC_POLICIES`, [RFC-08] [V3-CL] [V4-CL]). PAMT.ADD / REMOVE are SEAMCALLs issued by
`tdx_pamt_get` /
`tdx_pamt_put` ([V6-05], [V6-06]), so they are Steps like any other.

The "dpamt" panel draws `tdxedu.viz.draw_pamt` with its Dynamic PAMT side column (pair
installed? kernel refcount) and colours the pages the module uses *as* PAMT_4K pages (the
PAMT_PAGE_BITMAP, `Pamt.pamt_pages`) as PT_PAMT, so a pair shows up twice: two purple pixels
where the pages live, and a filled square beside the range they cover. It is registered in
`tdxedu.widgets.panels.PANELS` on import (additive: no existing panel changes).
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from ..kvm.pamt import ALLOC_POLICIES, check_alloc_policy
from ..kvm.pamt_memory import PAMT_PAIR_BYTES
from ..kvm.tdx import TEARDOWN_POLICIES
from ..steps import (
    Finished,
    StepInfo,
    TdLifeSource,
    touched,
)
from ..tdx.pamt import PageType
from ..trace import MODULE_SOURCE
from ..viz import css_figure, draw_pamt
from ..viz.cost import style_axes
from ..viz.palette import series_style
from .panels import PANELS
from .stepper import Stepper

PAMT_LEAVES = ("tdh_phymem_pamt_add", "tdh_phymem_pamt_remove")
SRC_DPAMT = "arch/x86/virt/vmx/tdx/tdx.c (Dynamic PAMT v6)"


# --- a read-only view of the module that shows PAMT pages as PT_PAMT -------------------------
class _Entry:
    __slots__ = ("pfn", "pt", "owner")

    def __init__(self, pfn, pt, owner):
        self.pfn, self.pt, self.owner = pfn, pt, owner


class _PamtView:
    """What `draw_pamt` reads of `module.pamt` (base, size, entries, in_use), with every page
    in the PAMT_PAGE_BITMAP shown as a PT_PAMT entry."""

    def __init__(self, pamt):
        self.base, self.size = pamt.base, pamt.size
        self.entries = {pfn: e for pfn, e in pamt.entries.items() if e.pt != PageType.PT_NDA}
        for pfn in pamt.pamt_pages:
            self.entries[pfn] = _Entry(pfn, PageType.PT_PAMT, 0)

    def in_use(self):
        return [e for e in self.entries.values() if e.pt not in (PageType.PT_NDA,
                                                                   PageType.PT_RSVD)]


class _ModuleView:
    def __init__(self, module):
        self.pamt = _PamtView(module.pamt)


def dpamt_view(host) -> dict[int, tuple[bool, int]]:
    """{2 MiB-aligned PA: (page pair installed, kernel refcount)} for every range that has
    either (the `dpamt=` argument of `draw_pamt`)."""
    m = host.module
    out: dict[int, tuple[bool, int]] = {}
    for idx, r in m.pamt.ranges.items():
        if r.pt == PageType.PT_PAMT:
            out[idx << 21] = (True, 0)
    if host.pamt is not None:
        for idx, n in host.pamt.pamt_refcounts.items():
            out[idx << 21] = (out.get(idx << 21, (False, 0))[0], n)
    return out


def draw_dpamt(host, *, highlight_pa: int | None = None, max_rows: int = 8):
    """The PAMT map of a Dynamic PAMT host: page types (PAMT pages as PT_PAMT) plus, per
    2 MiB range, the pair square and the refcount bar."""
    return draw_pamt(_ModuleView(host.module), highlight_pa=highlight_pa,
                     dpamt=dpamt_view(host) or {host.module.pamt.base: (False, 0)},
                     max_rows=max_rows)


def _pamt_target(e) -> int | None:
    if e is None or e.source != MODULE_SOURCE:
        return None
    if e.op in PAMT_LEAVES and e.args:
        return e.args[0]
    return touched(e).get("page")


def dpamt_panel(src, info):
    host = src.td.host
    m = host.module
    main = None if info is None else info.main
    page = _pamt_target(main)
    key = (page, tuple(sorted((i, r.pt) for i, r in m.pamt.ranges.items())),
           tuple(sorted(host.pamt.pamt_refcounts.items())) if host.pamt else (),
           tuple(sorted(m.pamt.pamt_pages)),
           tuple(sorted((p, e.pt) for p, e in m.pamt.entries.items() if e.pt)))
    return key, lambda: draw_dpamt(host, highlight_pa=page)


PANELS.setdefault("dpamt", dpamt_panel)


# --- the source ---------------------------------------------------------------------------
class DpamtLifeSource(TdLifeSource):
    """`TdLifeSource` on a Dynamic PAMT host with allocation policy `policy`."""

    def __init__(self, memory="2M", vcpus: int = 2, strategy: str = "v6.16", *,
                 policy: str = "vcpu-cache", phases=("build", "teardown")):
        self.policy = check_alloc_policy(policy)
        super().__init__(memory, vcpus, strategy, phases=phases)
        self.title += f"; Dynamic PAMT, allocation policy {policy}"
        self.panels = ("dpamt", "timeline")

    def reset(self) -> None:
        self.td_options = {"dynamic_pamt": True, "pamt_policy": self.policy}
        self.error: str | None = None
        self.pairs_after_build: int | None = None
        super().reset()

    def step(self):
        if self.done:
            raise Finished("the run is over: press Reset (or change a setting) to start again")
        first = len(self.td.trace)
        try:
            info = super().step()
        except (MemoryError, RuntimeError) as exc:  # the model refused: phys-prepare's -ENOMEM
            self.done = True
            self.n += 1
            self.error = str(exc) or ("out of memory" if isinstance(exc, MemoryError)
                                      else "the model refused")
            return StepInfo(self.n, self.td.trace.events[first:],
                            note=f"KVM gave up: {self.error}")
        if self.phase == "teardown" and self.pairs_after_build is None:
            self.pairs_after_build = self.pairs()
        return info

    def pairs(self) -> int:
        return self.td.host.pamt.pairs_installed()

    def refs(self) -> int:
        return sum(self.td.host.pamt.pamt_refcounts.values())

    def step_to_pamt(self):
        """Step until a TDH.PHYMEM.PAMT.ADD / REMOVE has been issued (or the run ends)."""
        info = None
        while not self.done:
            info = self.step()
            main = info.main
            if main is not None and main.source == MODULE_SOURCE and main.op in PAMT_LEAVES:
                break
        if info is None:
            raise Finished("the run is over: press Reset to start again")
        return info

    def run_to_end(self):
        while not self.done:
            self.step()
        return self

    def summary(self) -> str:
        m = self.td.host.module
        c = m.counts
        p = self.td.host.pamt
        lines = [f"{self.memory} TD, {self.vcpus} vCPUs, policy {self.policy}, teardown "
                 f"{self.strategy}: {self.n} steps" + (", finished" if self.done else "")]
        if self.error:
            lines.append(f"  stopped: {self.error}")
        lines.append(f"  TDH.PHYMEM.PAMT.ADD {c.get('tdh_phymem_pamt_add', 0)}, "
                     f"TDH.PHYMEM.PAMT.REMOVE {c.get('tdh_phymem_pamt_remove', 0)}")
        if self.pairs_after_build is not None:
            lines.append(f"  pairs while the TD ran: {self.pairs_after_build} "
                         f"({self.pairs_after_build * PAMT_PAIR_BYTES // 1024} KiB of PAMT_4K)")
        lines.append(f"  now: {self.pairs()} pairs installed, refcounts sum {self.refs()}, "
                     f"{len(p.sept_kmem_cache)} pooled S-EPT pages, "
                     f"{self.td.host.allocator.in_use} host pages allocated, "
                     f"KVM_BUG_ON {len(self.td.kvm.bugs)}, WARN {len(p.warnings)}")
        return "\n".join(lines)


def refcount_table(host, *, limit: int = 8) -> str:
    """Per 2 MiB range: the kernel's refcount, the module's count of 4K pages in use, and
    whether a pair is installed (they agree unless a policy or race broke something)."""
    m, p = host.module, host.pamt
    idxs = sorted(set(p.pamt_refcounts) | {i for i, r in m.pamt.ranges.items()
                                          if r.pt == PageType.PT_PAMT})
    lines = [f"{'2 MiB range':>12}  {'pair':>4}  {'pamt_refcounts':>14}  {'module 4K in use':>16}"]
    for idx in idxs[:limit]:
        pa = idx << 21
        pair = m.pamt.range_pt(pa) == PageType.PT_PAMT
        lines.append(f"{pa:>#12x}  {'yes' if pair else 'no':>4}  "
                     f"{p.pamt_refcounts.get(idx, 0):>14}  {m.pamt.pages_in_use_4k(pa):>16}")
    if not idxs:
        lines.append("  (no range has a pair or a reference)")
    return "\n".join(lines)


# --- the widget ------------------------------------------------------------------------------
def dpamt_life_stepper(memory: str = "2M", vcpus: int = 2, policy: str = "vcpu-cache",
                       strategy: str = "v6.16", *, panels=None) -> Stepper:
    """A TD built and torn down on a Dynamic PAMT host, one SEAMCALL per Step; "Next PAMT op"
    runs to the next TDH.PHYMEM.PAMT.ADD / REMOVE. Pickers: allocation policy, teardown
    strategy, memory, vCPUs."""
    controls = {
        "policy": widgets.Dropdown(options=list(ALLOC_POLICIES), value=policy,
                                   description="PAMT policy"),
        "strategy": widgets.Dropdown(options=list(TEARDOWN_POLICIES), value=strategy,
                                     description="teardown"),
        "memory": widgets.Text(value=str(memory), description="memory",
                               continuous_update=False),
        "vcpus": widgets.IntText(value=vcpus, description="vCPUs"),
    }

    def make(policy, strategy, memory, vcpus):
        return DpamtLifeSource(memory, vcpus, strategy, policy=policy)

    st = Stepper(make, controls=controls, panels=panels,
                 title="A TD's life on a Dynamic PAMT host")
    st.pamt_button = widgets.Button(description="Next PAMT op", layout=widgets.Layout(
        width="120px"), tooltip="step until the next TDH.PHYMEM.PAMT.ADD or REMOVE")

    def to_pamt():
        src = st._need_source()
        if src.done:
            raise Finished("the run is over: press Reset to start again")
        st.last = src.step_to_pamt()
        st._redraw()

    st.pamt_button.on_click(st._guard(lambda _b: to_pamt()))
    st.action_buttons.append(st.pamt_button)
    st.pamt_button.disabled = st.step_button.disabled
    st.step_to_pamt = st._guard(to_pamt)
    row = st.widget.children[2]
    row.children = (row.children[0], st.pamt_button) + row.children[1:]
    return st


# --- static vs Dynamic PAMT memory ------------------------------------------------------------
def draw_pamt_memory(rows, *, title: str = "PAMT memory on a 1 TiB host"):
    """`rows` = {label: (xs, bytes)}: PAMT bytes vs the x quantity, one line per label."""
    fig = css_figure(380)
    ax = fig.add_axes((0.09, 0.14, 0.5, 0.76))
    for i, (label, (xs, ys)) in enumerate(rows.items()):
        ax.plot(xs, np.asarray(ys) / (1 << 30), label=label, linewidth=1.8, markersize=4,
                markevery=max(len(xs) // 8, 1), **series_style(i))
    style_axes(ax, xlabel="guest memory in TDs (GiB, all at 4 KiB unless noted)",
               ylabel="PAMT memory (GiB)", title=title)
    return fig


__all__ = ["DpamtLifeSource", "dpamt_life_stepper", "dpamt_panel", "dpamt_view", "draw_dpamt",
           "refcount_table", "draw_pamt_memory", "PAMT_LEAVES"]
