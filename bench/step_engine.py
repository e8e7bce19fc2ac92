"""Step engine and explorer benchmarks. Prints figures and ratios; asserts nothing.

    .venv/bin/python bench/step_engine.py            # 1 GiB teardown + every TDX scenario
    .venv/bin/python bench/step_engine.py --memory 256M --quick
"""

from __future__ import annotations

import argparse
import time

from tdxedu.scenarios import RunningTd
from tdxedu.scenarios.registry import load_all
from tdxedu.sim import explore


def teardown_rate(memory: str, vcpus: int, strategy: str) -> None:
    t0 = time.perf_counter()
    td = RunningTd(memory=memory, vcpus=vcpus, trace=False)
    build = time.perf_counter() - t0
    built_calls = sum(td.host.module.counts.values())
    t0 = time.perf_counter()
    report = td.teardown(strategy)
    dt = time.perf_counter() - t0
    n = sum(report.counts.values())
    print(f"{memory} TD, {vcpus} vCPUs, {strategy}: build {build:.1f} s ({built_calls:,} "
          f"SEAMCALLs, {built_calls / build:,.0f}/s); teardown {dt:.2f} s, {n:,} SEAMCALLs = "
          f"{n / dt:,.0f} SEAMCALLs/s (target 200,000/s: {n / dt / 200_000:.2f}x)")


def module_alone_rate(memory: str, vcpus: int) -> None:
    """The same four leaves per page (BLOCK, TRACK, REMOVE, WBINVD) called on the module
    directly, with no KVM code around them: the ceiling for the step engine's rate."""
    td = RunningTd(memory=memory, vcpus=vcpus, trace=False)
    kt, m = td.kt, td.host.module
    gpas = sorted(kt.mirror)
    t0 = time.perf_counter()
    for gpa in gpas:
        pa = kt.mirror[gpa]
        m.tdh_mem_range_block(kt.tdr_pa, gpa, 0, lp=0)
        m.tdh_mem_track(kt.tdr_pa, lp=0)
        m.tdh_mem_page_remove(kt.tdr_pa, gpa, 0, lp=0)
        m.tdh_phymem_page_wbinvd_hkid(kt.hkid, pa, lp=0)
    dt = time.perf_counter() - t0
    n = 4 * len(gpas)
    print(f"{memory} TD, module alone (no KVM glue): {n:,} SEAMCALLs = {n / dt:,.0f}/s "
          f"(target 200,000/s: {n / dt / 200_000:.2f}x)")


def pruning(names: list[str], cap: int) -> None:
    print(f"\n{'scenario':<34} {'pruned':>8} {'unpruned':>9} {'ratio':>7}  same verdicts")
    for name in names:
        sc = load_all()[name]
        a = explore(sc.build, name=name, max_steps=sc.max_steps)
        b = explore(sc.build, name=name, max_steps=sc.max_steps, prune=False, max_executions=cap)
        same = {c: v.verdict for c, v in a.verdicts.items()} == {
            c: v.verdict for c, v in b.verdicts.items()}
        more = "" if b.complete else "+"
        verdict = same if b.complete else "n/a (capped)"
        print(f"{name:<34} {a.executions:>8} {b.executions:>8}{more:1} "
              f"{b.executions / max(a.executions, 1):>6.1f}x  {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--vcpus", type=int, default=8)
    ap.add_argument("--strategy", default="v6.16")
    ap.add_argument("--cap", type=int, default=20_000, help="max unpruned executions")
    ap.add_argument("--quick", action="store_true", help="only the small scenarios")
    args = ap.parse_args()
    teardown_rate(args.memory, args.vcpus, args.strategy)
    module_alone_rate(args.memory, args.vcpus)
    names = sorted(n for n in load_all() if not n.startswith(("roots-", "pamt-")))
    if args.quick:
        names = [n for n in names if "retry-loop" not in n]
    pruning(names, args.cap)


if __name__ == "__main__":
    main()
