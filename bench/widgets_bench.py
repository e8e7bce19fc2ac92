"""Median time of one Step + redraw per panel (target < 50 ms). Prints figures, asserts nothing.

    .venv/bin/python bench/widgets_bench.py [repeats]
"""

from __future__ import annotations

import statistics
import sys
import time

from tdxedu.viz import figure_png
from tdxedu.widgets import removal_stepper, roots_stepper, seamcall_stepper, td_life_stepper
from tdxedu.widgets.panels import PANELS

TARGET_MS = 50.0


def bench_panels(name, build, repeats):
    st = build()
    src = st.source
    per_panel: dict[str, list[float]] = {p: [] for p in st.images}
    steps: list[float] = []
    for _ in range(repeats):
        if src.done:
            src.reset()
        t0 = time.perf_counter()
        info = src.step()
        steps.append(time.perf_counter() - t0)
        for p in per_panel:
            _key, draw = PANELS[p](src, info)
            t0 = time.perf_counter()
            figure_png(draw())
            per_panel[p].append(time.perf_counter() - t0)
    rows = [(f"{name}: model step", statistics.median(steps) * 1e3)]
    rows += [(f"{name}: redraw {p}", statistics.median(v) * 1e3) for p, v in per_panel.items()]
    # what a click costs end to end (only changed panels are redrawn)
    clicks = []
    st.reset_button.click()
    for _ in range(repeats):
        if st.source.done:
            st.reset_button.click()
        t0 = time.perf_counter()
        st.step_button.click()
        clicks.append(time.perf_counter() - t0)
    rows.append((f"{name}: Step click (all panels)", statistics.median(clicks) * 1e3))
    return rows


def main(argv):
    repeats = int(argv[1]) if len(argv) > 1 else 15
    rows = []
    for name, build in [("td-life", lambda: td_life_stepper("64K", 2)),
                        ("seamcalls", seamcall_stepper), ("removal", removal_stepper),
                        ("roots", roots_stepper)]:
        rows += bench_panels(name, build, repeats)
    w = max(len(r[0]) for r in rows)
    print(f"median of {repeats} (target {TARGET_MS:.0f} ms per panel redraw)")
    for label, ms in rows:
        print(f"  {label:<{w}}  {ms:7.1f} ms  ({ms / TARGET_MS:4.2f} x target)")


if __name__ == "__main__":
    main(sys.argv)
