"""Explorer benchmark: today's algorithm (state merging) against the stutter reduction
(tdxedu/sim/reduce.py: a step that changes nothing is a loop; runs read off the state graph),
on every registered scenario, measured in one run. Prints figures and ratios; asserts nothing.

    .venv/bin/python bench/explore_bench.py                 # every registered scenario
    .venv/bin/python bench/explore_bench.py busy-accept-retry-loop hkid-release-v6.16
    .venv/bin/python bench/explore_bench.py --no-composed --no-registered \
        --compose "vcpus=3 pages=2 packages=2 actors=run,run,run,mm,close"

Per scenario and reduction: steps executed (scheduler steps, replays of prefixes included),
executions (distinct finished runs), seconds and peak memory (the maximum resident set of a
forked process that runs only that exploration: the pages it touched, not the parent's
it never wrote). Targets: >= 5x fewer steps and less wall time
with the reduction on every scenario taking >= 1 s today; verdicts and shortest witnesses equal
(checked by tests/kvm/test_reduction_all_scenarios.py, shown here as "same"); composed
scenarios up to three vCPUs x two pages x two packages, among them a three-vCPU HKID-release
race with two pages, explored exhaustively in < 60 s and < 2 GiB.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

from tdxedu.scenarios.compose import build, parse
from tdxedu.scenarios.registry import load_all
from tdxedu.sim import explore

REDUCTIONS = ("merge", "stutter")
#: composed scenarios (tdxedu.scenarios.compose), up to 3 vCPUs x 2 pages x 2 packages
COMPOSED = (
    "vcpus=2 pages=2 packages=2 actors=run,migrate,zap",
    "vcpus=3 pages=2 packages=2 actors=run,run,run,mm,close",
    "vcpus=3 pages=2 packages=2 teardown=terminate-vm actors=run,run,run,mm,close",
)


def _measure(name: str, reduction: str, conn) -> None:
    if name.startswith("compose:"):
        spec = parse(name[len("compose:"):])
        build_fn, steps = (lambda: build(spec)), spec.steps
    else:
        sc = load_all()[name]
        build_fn, steps = sc.build, sc.max_steps
    t0 = time.perf_counter()
    e = explore(build_fn, name=name, max_steps=steps, reduction=reduction)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    answer = {c: (v.verdict, None if v.witness is None else len(v.witness),
                  None if v.counterexample is None else len(v.counterexample))
              for c, v in e.verdicts.items()}
    conn.send((e.steps, e.executions, dt, rss, e.complete, answer))
    conn.close()


def measure(name: str, reduction: str):
    """One exploration in a forked process, so its peak memory is its own."""
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_measure, args=(name, reduction, b))
    p.start()
    out = a.recv()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", help="scenario names (default: all registered)")
    ap.add_argument("--compose", action="append", default=[], metavar="SPEC",
                    help="also a composed scenario (repeatable)")
    ap.add_argument("--no-registered", action="store_true", help="skip registered scenarios")
    ap.add_argument("--no-composed", action="store_true", help="skip the built-in composed ones")
    args = ap.parse_args()
    names = [] if args.no_registered else (args.scenarios or sorted(load_all()))
    names += [f"compose:{c}" for c in [*([] if args.no_composed else COMPOSED), *args.compose]]
    w = max(38, *(len(n) for n in names))
    print(f"{'scenario':<{w}} {'reduction':<8} {'steps':>9} {'execs':>6} {'seconds':>8} "
          f"{'peak MiB':>9}   steps ratio  time ratio  same")
    slow = []
    for name in names:
        rows = {r: measure(name, r) for r in REDUCTIONS}
        base = rows["merge"]
        for r in REDUCTIONS:
            steps, execs, dt, rss, complete, _ = rows[r]
            tail = ""
            if r == "stutter":
                same = rows["stutter"][5] == base[5]
                tail = (f"   {base[0] / max(steps, 1):9.2f}x {base[2] / max(dt, 1e-9):9.2f}x"
                        f"  {'yes' if same else 'NO'}")
            print(f"{name:<{w}} {r:<8} {steps:>9,} {execs:>6} {dt:>8.2f} {rss / 2**20:>9.0f}"
                  f"{'' if complete else ' INCOMPLETE'}{tail}", flush=True)
        if base[2] >= 1.0:
            slow.append((name, base[0] / max(rows["stutter"][0], 1), base[2] / rows["stutter"][2]))
    if slow:
        print("\nscenarios taking >= 1 s with merging alone (target: >= 5x fewer steps, "
              "less time):")
        for name, sr, tr in slow:
            print(f"  {name:<38} steps {sr:.2f}x fewer, time {tr:.2f}x")


if __name__ == "__main__":
    main()
