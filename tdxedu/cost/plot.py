"""Pure plotting helper: a `sweep()` result -> a matplotlib Figure (no pyplot state, no
display side effects, like every renderer in `tdxedu.viz`). Each strategy is a line with its band
shaded; a strategy whose curve is identical to an earlier one (same flow, same SEAMCALLs) is
drawn dashed with hollow markers nudged sideways, and its legend entry says which it equals,
so neither hides the other. The measured size range is shaded, and the query marked."""

from __future__ import annotations

from matplotlib.figure import Figure

GIB = 1 << 30
OFFSET = 1.06  # x factor for a coinciding curve's markers (log axis: a small, even nudge)


def sweep_figure(data: dict, *, title: str | None = None) -> Figure:
    """Teardown time (minutes, log) vs TD size (GiB, log 2), one line + band per strategy."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = [b / GIB for b in data["sizes_bytes"]]
    same = data.get("same_as", {})
    for i, (name, s) in enumerate(data["strategies"].items()):
        colour = f"C{i % 10}"
        y = [v / 60 for v in s["seconds"]]
        twin = same.get(name)
        if twin is None:
            ax.plot(x, y, marker="o", label=name, linewidth=2.2, color=colour)
            ax.fill_between(x, [v / 60 for v in s["low"]], [v / 60 for v in s["high"]],
                            color=colour, alpha=0.15, linewidth=0)
        else:  # identical to `twin`: dashed, hollow markers nudged right, no second band
            ax.plot([v * OFFSET for v in x], y, marker="s", markerfacecolor="none",
                    linestyle=(0, (4, 3)), linewidth=1.6, color=colour,
                    label=f"{name} (= {twin}: same curve)")
    rng = data.get("measured_range", {}).get("memory_gib")
    if rng:
        ax.axvspan(rng[0], rng[1], color="0.5", alpha=0.12, linewidth=0,
                   label=f"measured sizes ({rng[0]:g}-{rng[1]:g} GiB)")
    if "query_bytes" in data:
        q = data["query_bytes"] / GIB
        ax.axvline(q, color="0.3", linestyle=":", linewidth=1.2, label=f"query: {q:g} GiB")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # seconds at 1 GiB and hours at 4 TiB on one picture
    ax.set_xlabel("TD private memory (GiB)")
    ax.set_ylabel("predicted teardown time (min)")
    clear = "pages cleared" if data.get("clear_pages", True) else "no clear (6.18+)"
    ax.set_title(title or f"TD teardown: {data['vcpus']} vCPUs, {data['packages']} package(s), "
                 f"{clear}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="band: every model form fitting within 10%", fontsize=8, title_fontsize=8)
    return fig


__all__ = ["sweep_figure"]
