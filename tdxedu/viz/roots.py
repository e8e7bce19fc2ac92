"""The TDP MMU root list of one VM: a row per root with its role, valid/invalid, and a bar per
reference holder whose length is the number of references it holds.

Data: `kvm.arch.tdp_mmu_roots` (roots on the list) and `kvm.arch.tdp_mmu_live` (roots not yet
freed), each a `tdxedu.kvm.tdp_mmu.KvmMmuPage` with `tdp_mmu_root_count`, `refs` (holder ->
count: "tdp_mmu", "vcpu0.root", "vcpu0.prev1", "tdp_mmu_zap_wq", "iter:<actor>", ...),
`role` and flags. Reference holders as `tdxedu.kvm.tdp_mmu` models them. A red mark flags a root
whose holders
do not add up to its count (the model's explanation disagreeing with the kernel's number).
"""

from __future__ import annotations

from matplotlib.patches import Rectangle

from ._common import ERROR, Panel, legend, new_figure

HOLDER_COLOURS = {"tdp_mmu": "#4575b4", "root": "#1a9850", "prev": "#a6d96a",
                  "mirror": "#984ea3", "tdp_mmu_zap_wq": "#fdae61", "iter": "#f46d43",
                  "other": "#969696"}


def holder_kind(holder: str) -> str:
    if holder in ("tdp_mmu", "tdp_mmu_zap_wq"):
        return holder
    if holder.startswith("iter:"):
        return "iter"
    slot = holder.rsplit(".", 1)[-1]
    if slot == "root" or slot == "mirror":
        return slot
    if slot.startswith("prev"):
        return "prev"
    return "other"


def live_roots(kvm) -> list:
    """Roots on `kvm.arch.tdp_mmu_roots`, then roots not yet freed (`tdp_mmu_live`)."""
    a = kvm.arch
    seen, out = set(), []
    for r in list(getattr(a, "tdp_mmu_roots", [])) + list(getattr(a, "tdp_mmu_live", {})
                                                             .values()):
        if id(r) not in seen:
            seen.add(id(r))
            out.append(r)
    return out


def draw_roots(kvm, *, highlight: int | None = None, width: float = 6.4,
               max_roots: int = 12):
    """Draw the roots of `kvm` (a `tdxedu.kvm.kvm.Kvm` with the TDP MMU initialised).
    Bars have gid ``"root#<hpa>:<holder>"``; `highlight` is the hpa of the root a step
    touched."""
    roots = live_roots(kvm)[:max_roots]
    fig = new_figure(width, 0.9 + 0.3 * max(len(roots), 1))
    pol = getattr(getattr(kvm.arch, "tdp_mmu_policy", None), "name", "?")
    fig.text(0.01, 0.98, f"TDP MMU roots (policy {pol}): {len(roots)} live, "
             f"{getattr(kvm.arch, 'tdp_mmu_pages', 0)} page-table pages", fontsize=8, va="top")
    most = max([r.tdp_mmu_root_count for r in roots] + [sum(r.refs.values()) for r in roots]
               + [4])
    ax = Panel(fig, (0.42, 0.22, 0.56, 0.62), (0, most + 0.5), (max(len(roots), 1) - 0.5, -0.5))
    if not roots:
        ax.text(0, 0, "no roots (no vCPU has loaded its MMU yet, or all freed)", fontsize=7)
    kinds = set()
    for i, r in enumerate(roots):
        x = 0.0
        for holder, n in sorted(r.refs.items()):
            if n <= 0:
                continue
            k = holder_kind(holder)
            kinds.add(k)
            ax.add(Rectangle((x, i - 0.32), n, 0.64, facecolor=HOLDER_COLOURS[k],
                             edgecolor="#333333", linewidth=0.4,
                             hatch="//" if r.invalid else None), gid=f"root#{r.hpa}:{holder}")
            x += n
        if x != r.tdp_mmu_root_count:
            ax.line([r.tdp_mmu_root_count], [i], marker="|", color=ERROR, markersize=12,
                    gid=f"mismatch#{r.hpa}")
        flags = [f for f, on in (("invalid", r.invalid),
                                 ("to_zap", getattr(r, "tdp_mmu_scheduled_root_to_zap", False)),
                                 ("rcu", getattr(r, "rcu_pending", False)),
                                 ("freed", getattr(r, "freed", False)),
                                 ("off-list", not getattr(r, "on_list", True))) if on]
        hl = highlight == r.hpa
        ax.text(-0.1, i, f"{'> ' if hl else ''}root#{r.hpa} {r.role} count="
                f"{r.tdp_mmu_root_count}" + (f" [{', '.join(flags)}]" if flags else ""),
                fontsize=6.5, ha="right", va="center", gid=f"label#{r.hpa}",
                color="#999999" if r.invalid else "black", weight="bold" if hl else None)
    legend(fig, [(HOLDER_COLOURS[k], k) for k in sorted(kinds)], y=0.02, x0=0.42, step=0.1)
    return fig
