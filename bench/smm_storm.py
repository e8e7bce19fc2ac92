"""SMM-reset storm: TDP MMU root allocations vs number of SMI/RSM round trips, per policy.

The 2023 report ([JP-HV] [SC-Apr23-diag] [SC-Apr23]): with a reset of the MMU context on every
SMI/RSM, v6.3 frees the root at its last vCPU reference and allocates it again; from v6.4 the
TDP MMU's own reference keeps it ("15 with the patch vs 100k without", Sean Christopherson,
ZDhO02VeRcOMTQz0@google.com). Run: `.venv/bin/python bench/smm_storm.py [--max-n 100000]`.
Prints counts and ratios only (no timing assertions).
"""

from __future__ import annotations

import argparse

from tdxedu.kvm.mmu_role import POLICIES
from tdxedu.scenarios.roots import smm_storm


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-n", type=int, default=100_000)
    ap.add_argument("--vcpus", type=int, default=1)
    args = ap.parse_args(argv)
    if args.max_n < 1:
        ap.error("--max-n must be >= 1")
    ns = [n for n in (1, 10, 100, 1_000, 10_000, 100_000) if n < args.max_n] + [args.max_n]
    print(f"root allocations after N SMI/RSM round trips ({args.vcpus} vCPU(s))")
    print(f"{'N':>8} " + " ".join(f"{p:>10}" for p in POLICIES))
    last = {}
    for n in ns:
        row = {p: smm_storm(p, n, args.vcpus) for p in POLICIES}
        last = row
        print(f"{n:>8} " + " ".join(f"{row[p]['root_allocations']:>10}" for p in POLICIES))
    n = ns[-1]
    a63, a64 = last["v6.3"]["root_allocations"], last["v6.4"]["root_allocations"]
    print(f"\nN={n}: v6.3/v6.4 root allocation ratio = {a63}/{a64} = {a63 / a64:.0f}x")
    p63, p64 = (last[p]["page_table_pages_allocated"] for p in ("v6.3", "v6.4"))
    print(f"N={n}: page-table pages built   v6.3/v6.4 = {p63}/{p64} = {p63 / p64:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
