"""Lesson 06 (TDP MMU roots): a Stepper over any roots world (a broken variant included), the
shortest witness of a broken variant as a step source, and the SMM-storm plot.

    broken_roots_stepper("broken-free-valid-root")   Step to the step the checker catches
    draw_storm(smm_storm_curves([0, 1, 2, 5, 10]))    root allocations vs N, one line a policy

Broken variants (`tdxedu.kvm.mmu_role.BROKEN_POLICIES`) are not registered explorer scenarios
(they are for tests and mutation lessons); `BROKEN_CASES` gives each a small world in which the
explorer finds its violation (the same builders as tests/test_tdp_mmu_explore.py).
"""

from __future__ import annotations

import ipywidgets as widgets

from ..kvm.mmu_role import BROKEN_POLICIES, POLICIES
from ..lessons.tdp_mmu_roots import BROKEN_CASES, WHAT_IT_BREAKS, broken_witness
from ..scenarios.registry import Scenario
from ..scenarios.roots import smm_storm
from ..steps import ExplorerSource
from ..viz import css_figure
from ..viz.cost import style_axes
from ..viz.palette import series_style
from .stepper import Stepper


class WorldSource(ExplorerSource):
    """`ExplorerSource` over any world builder (not only registered scenarios)."""

    def __init__(self, name: str, build, description: str = "", *, max_steps: int = 300,
                 choices=None, seed: int | None = None):
        self._sc = Scenario(name, description or name, build, max_steps)
        self.scenario = self._sc
        self.script = []
        self.choices = list(choices or [])
        self.seed = seed
        how = "shortest witness" if self.choices else f"seed {seed}"
        self.title = f"{name} ({how}): {self._sc.description}"
        self.reset()
        self.panels = ("roots", "timeline")


def broken_source(variant: str) -> WorldSource:
    return WorldSource(variant, BROKEN_CASES[variant], WHAT_IT_BREAKS[variant],
                       choices=broken_witness(variant))


def broken_roots_stepper(variant: str = "broken-free-valid-root", *, panels=None) -> Stepper:
    """Replay a broken variant's shortest witness step by step; the status line says
    "invariant violated: inv2: ..." at the step the checker catches it."""
    controls = {"variant": widgets.Dropdown(options=list(BROKEN_CASES), value=variant,
                                            description="variant")}
    return Stepper(lambda variant: broken_source(variant), controls=controls, panels=panels,
                   title="A broken root policy, caught by the root invariant checker")


# --- the storm plot -------------------------------------------------------------------------
def smm_storm_curves(ns=(0, 1, 2, 5, 10, 20, 50), policies=tuple(POLICIES), n_vcpus: int = 1,
                     key: str = "root_allocations") -> dict[str, tuple[list[int], list[int]]]:
    """{policy: (N values, `smm_storm(policy, N)[key]`)}."""
    return {p: (list(ns), [smm_storm(p, n, n_vcpus)[key] for n in ns]) for p in policies}


def draw_storm(curves: dict, *, ylabel: str = "TDP MMU root allocations",
               title: str = "SMM-reset storm: root allocations after N SMI/RSM round trips"):
    """Allocations vs N, one line per policy (distinct styles: v6.4+ overlap)."""
    fig = css_figure(360)
    ax = fig.add_axes((0.09, 0.14, 0.7, 0.76))
    for i, (pol, (ns, ys)) in enumerate(curves.items()):
        ax.plot(ns, ys, label=pol, markersize=6 - i % 3, linewidth=2.2 - 0.3 * (i % 4),
                **series_style(i))
    style_axes(ax, xlabel="N (SMI/RSM round trips)", ylabel=ylabel, title=title,
               legend_title="policy")
    return fig


__all__ = ["BROKEN_CASES", "WHAT_IT_BREAKS", "WorldSource", "broken_witness", "broken_source",
           "broken_roots_stepper", "smm_storm_curves", "draw_storm", "BROKEN_POLICIES"]
