"""Pure plotting helper: a `sweep()` result -> a matplotlib Figure (no pyplot state, no
display side effects, like every renderer in `tdxedu.viz`). Each strategy is a line with its band
shaded."""

from __future__ import annotations

from matplotlib.figure import Figure

GIB = 1 << 30


def sweep_figure(data: dict, *, title: str | None = None) -> Figure:
    """Teardown time (minutes) vs TD size (GiB, log scale), one line + band per strategy."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = [b / GIB for b in data["sizes_bytes"]]
    styles = ("-", "--", ":", "-.")  # strategies with the same flow share a curve: keep both
    for i, (name, s) in enumerate(data["strategies"].items()):
        (line,) = ax.plot(x, [v / 60 for v in s["seconds"]], marker="o", label=name,
                          linestyle=styles[i % len(styles)], linewidth=2.5 - 0.4 * i)
        ax.fill_between(x, [v / 60 for v in s["low"]], [v / 60 for v in s["high"]],
                        color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("TD private memory (GiB)")
    ax.set_ylabel("predicted teardown time (min)")
    clear = "pages cleared" if data.get("clear_pages", True) else "no clear (6.18+)"
    ax.set_title(title or f"TD teardown: {data['vcpus']} vCPUs, {data['packages']} package(s), "
                 f"{clear}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="strategy (band: fits within 10%)")
    return fig


__all__ = ["sweep_figure"]
