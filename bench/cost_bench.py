"""Cost-model benchmarks. Prints figures and ratios; asserts nothing.

    .venv/bin/python bench/cost_bench.py                  # step engine measured on 64 MiB
    .venv/bin/python bench/cost_bench.py --step-memory 1G # the same TD as the bulk run (slow)

(a) step vs bulk engine time per page on the same TD (target: bulk >= 100x faster);
(b) wall time and peak memory of a 1 TiB teardown in the bulk engine, static and Dynamic PAMT
    (target < 10 s, < 4 GiB);
(c) one cost sweep of 8 sizes x 4 strategies (target < 1 s);
(d) fitting every model form, and evaluating every form over its ensemble for 8 sizes x
    4 strategies (target < 2 s);
(e) bulk engine == step engine on every SEAMCALL count, Dynamic PAMT included, on seeded TDs.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

from tdxedu.cost import calibrate, sweep
from tdxedu.cost.bulk import BulkTd
from tdxedu.kvm.tdx import TEARDOWN_POLICIES
from tdxedu.scenarios import RunningTd
from tdxedu.units import parse_size


def step_vs_bulk(step_memory: str, bulk_memory: str, strategy: str) -> None:
    pages = parse_size(step_memory) >> 12
    t0 = time.perf_counter()
    td = RunningTd(memory=step_memory, vcpus=4, trace=False)
    t1 = time.perf_counter()
    td.teardown(strategy)
    t2 = time.perf_counter()
    step = (t2 - t0) / pages
    build, tear = t1 - t0, t2 - t1
    rates = {}
    for mem in dict.fromkeys((step_memory, bulk_memory)):
        bpages = parse_size(mem) >> 12
        b0 = time.perf_counter()
        BulkTd(bpages, 4).teardown(strategy)
        rates[mem] = (time.perf_counter() - b0) / bpages
    bulk = rates[step_memory]
    print(f"(a) {strategy}: step engine on {step_memory}: build {build:.2f} s + teardown "
          f"{tear:.2f} s = {step * 1e6:.2f} us/page; bulk engine on the same {step_memory}: "
          f"{bulk * 1e9:.1f} ns/page -> {step / bulk:,.0f}x faster (target 100x); bulk on "
          f"{bulk_memory}: {rates[bulk_memory] * 1e9:.1f} ns/page")


def one_tib(strategy: str, dynamic_pamt: bool = False) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    td = BulkTd(1 << 28, 64, packages=2, dynamic_pamt=dynamic_pamt)
    r = td.teardown(strategy)
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    host = "DPAMT" if dynamic_pamt else "static PAMT"
    print(f"(b) 1 TiB, 64 vCPUs, {strategy}, {host}: {dt:.2f} s "
          f"(target < 10 s: {10 / dt:.1f}x margin), "
          f"peak traced memory {peak / (1 << 30):.2f} GiB (target < 4 GiB: "
          f"{4 * (1 << 30) / peak:.1f}x margin); {sum(r.counts.values()):,} SEAMCALLs, "
          f"clean={r.ok}" + (f", {r.counts.get('tdh_phymem_pamt_remove', 0):,} PAMT.REMOVE"
                             if dynamic_pamt else ""))


def sweep_time() -> None:
    cal = calibrate()
    sizes = ["1G", "4G", "16G", "64G", "128G", "256G", "512G", "1T"]
    t0 = time.perf_counter()
    sweep(sizes, TEARDOWN_POLICIES, vcpus=8, calibration=cal)
    dt = time.perf_counter() - t0
    t0 = time.perf_counter()
    calibrate()
    dc = time.perf_counter() - t0
    print(f"(c) sweep 8 sizes x 4 strategies: {dt * 1e3:.1f} ms (target < 1 s: {1 / dt:,.0f}x "
          f"margin); calibrate() with its 400-member ensemble: {dc:.2f} s")


def forms_time() -> None:
    from tdxedu.cost import default_calibration, predict
    from tdxedu.cost.forms import structural

    t0 = time.perf_counter()
    st = structural()
    default_calibration()  # the central form's own ensemble (model.calibrate)
    fit = time.perf_counter() - t0
    members = sum(f.members for f in st.fits.values())
    sizes = [parse_size(s) >> 12 for s in
             ("1G", "4G", "16G", "64G", "128G", "256G", "512G", "1T")]
    t0 = time.perf_counter()
    for s in TEARDOWN_POLICIES:
        for p in sizes:
            predict(p, 64, s, structural=st)
    ev = time.perf_counter() - t0
    print(f"(d) {len(st.fits)} model forms: fit {fit:.2f} s ({members} ensemble members); "
          f"every form over its ensemble for 8 sizes x 4 strategies: {ev * 1e3:.0f} ms "
          f"(target < 2 s: {2 / ev:,.1f}x margin; {2 / (fit + ev):.1f}x with the fit)")


def bulk_equals_step() -> None:
    import random

    from tdxedu.cost.bulk import BulkTd as B

    rng = random.Random(16)
    same = total = 0
    for _ in range(6):
        pages, vcpus = rng.choice([1, 513, rng.randint(1, 3000)]), rng.randint(1, 4)
        for dpamt in (False, True):
            for s in TEARDOWN_POLICIES:
                step = RunningTd(memory=pages * 4096, vcpus=vcpus, trace=False,
                                 dynamic_pamt=dpamt)
                build = dict(step.host.module.counts)
                sr = step.teardown(s)
                br = B(pages, vcpus, dynamic_pamt=dpamt).teardown(s)
                ok = sr.counts == br.counts and (not dpamt or br.build_counts == {
                    k: v for k, v in build.items() if k == "tdh_phymem_pamt_add"})
                same += ok
                total += 1
    print(f"(e) bulk == step on every SEAMCALL count (PAMT.ADD at build, PAMT.REMOVE at "
          f"teardown on DPAMT hosts): {same}/{total} seeded TDs x strategies x PAMT kinds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step-memory", default="64M")
    ap.add_argument("--bulk-memory", default="1G")
    args = ap.parse_args()
    for s in ("v6.16", "terminate-vm"):
        step_vs_bulk(args.step_memory, args.bulk_memory, s)
    for s in ("v6.16", "terminate-vm"):
        one_tib(s)
    one_tib("v6.16", dynamic_pamt=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)
    print(f"    process max RSS {rss:.2f} GiB (includes the step engine run)")
    sweep_time()
    forms_time()
    bulk_equals_step()


if __name__ == "__main__":
    main()
