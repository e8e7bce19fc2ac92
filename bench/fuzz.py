"""Long fuzz run of the module and KVM layers; tests/fuzz runs the bounded version.

    .venv/bin/python bench/fuzz.py                      # >= 100,000 SEAMCALLs, 10,000 interleavings
    .venv/bin/python bench/fuzz.py --seamcalls 1000000 --interleavings 50000 --flows 5000

Prints counts and figures: SEAMCALLs issued (register-level and wrapper-shaped) with the mix
of completion classes and the share of register-level calls that reach a handler's success
path (most register-level calls are aimed at live TDR/TDVPR/GPA values, `_aimed_call`),
seeded interleavings per outcome, random KVM flows and their ops,
Python exceptions and invariant violations under correct policies (both must be zero), and
calls per second. Exit code 1 if any problem was found (the first few are printed).
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from tdxedu.mutants.fuzz import (
    AIMED_SHARE,
    FuzzStats,
    fuzz_interleaving,
    fuzz_kvm_flow,
    fuzz_seamcalls,
)
from tdxedu.scenarios.registry import load_all


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seamcalls", type=int, default=100_000)
    p.add_argument("--per-module", type=int, default=500, help="SEAMCALLs per fresh module")
    p.add_argument("--interleavings", type=int, default=10_000)
    p.add_argument("--flows", type=int, default=2_000, help="random KVM flows on RunningTd")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    total = FuzzStats()

    t0 = time.perf_counter()
    seed = a.seed
    while total.seamcalls < a.seamcalls:  # SEAMCALLs proper; guest TD exits come on top
        n = min(a.per_module, a.seamcalls - total.seamcalls)
        total.merge(fuzz_seamcalls(random.Random(seed), n))
        seed += 1
    t_sc = time.perf_counter() - t0
    modules = seed - a.seed

    t0 = time.perf_counter()
    names = sorted(load_all())
    for i in range(a.interleavings):
        total.merge(fuzz_interleaving(names[i % len(names)], a.seed * 1_000_003 + i))
    t_il = time.perf_counter() - t0

    t0 = time.perf_counter()
    for i in range(a.flows):
        total.merge(fuzz_kvm_flow(random.Random(a.seed * 7919 + i), ops=16))
    t_fl = time.perf_counter() - t0

    exceptions = sum(1 for x in total.problems if "exception" in x)
    print(f"module layer: {total.seamcalls:,} SEAMCALLs + {total.td_exits:,} TD exits on "
          f"{modules:,} fresh modules in {t_sc:.1f} s "
          f"({(total.seamcalls + total.td_exits) / t_sc:,.0f} calls/s), invariants checked "
          f"after every call")
    if total.reg_calls:
        print(f"  register-level SEAMCALLs: {total.reg_calls:,} (operands aimed at live "
              f"TDR/TDVPR/GPA values for {100 * AIMED_SHARE:.0f}%), deep success (TDX_SUCCESS):"
              f" {100 * total.reg_deep / total.reg_calls:.1f}% "
              f"({100 * total.reg_deep_writes / total.reg_calls:.1f}% by leaves that change "
              f"state)")
    top = sorted(total.statuses.items(), key=lambda kv: -kv[1])[:8]
    print("  completion classes (RAX >> 32): " + ", ".join(f"{k}: {v:,}" for k, v in top)
          + f" ... ({len(total.statuses)} distinct)")
    print(f"scenario interleavings: {total.interleavings:,} seeded runs over {len(names)} "
          f"registered scenarios in {t_il:.1f} s ({total.interleavings / t_il:,.0f} runs/s); "
          "outcomes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(total.outcomes.items())))
    print(f"KVM flows: {total.kvm_flows:,} random RunningTd lives ({total.kvm_ops:,} ops: "
          f"map/zap/run/migrate/accept, then a correct teardown) in {t_fl:.1f} s")
    print(f"python exceptions: {exceptions}; invariant violations / unclean teardowns under "
          f"correct policies: {len(total.problems) - exceptions}")
    for prob in total.problems[:5]:
        print("  " + prob.replace("\n", "\n  "))
    return 1 if total.problems else 0


if __name__ == "__main__":
    sys.exit(main())
