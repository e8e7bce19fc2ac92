"""`tdxedu explore`: run every interleaving of a named scenario and print the verdicts."""

from __future__ import annotations

import argparse
import json
import sys

from .scenarios.registry import load_all
from .sim import explore


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    p.add_argument("--list", action="store_true", help="name every scenario and stop")
    p.add_argument("--json", action="store_true", help="verdicts and witness traces as JSON")
    p.add_argument("--trace", metavar="CONDITION", action="append", default=[],
                   help="print the shortest run where CONDITION holds (repeatable); "
                   "default: every condition that is 'sometimes'")
    p.add_argument("--no-prune", action="store_true",
                   help="explore without state pruning (slower; same verdicts)")
    p.add_argument("--max-steps", type=int, default=None, help="step bound per run")


def run(args: argparse.Namespace) -> int:
    scenarios = load_all()
    if args.list or not args.scenario:
        w = max(len(n) for n in scenarios)
        for name in sorted(scenarios):
            print(f"{name:<{w}}  {scenarios[name].description}")
        if not args.list:
            print("\ntdxedu: name a scenario, e.g. `tdxedu explore busy-accept-no-retry`",
                  file=sys.stderr)
            return 2
        return 0
    sc = scenarios.get(args.scenario)
    if sc is None:
        print(f"tdxedu: unknown scenario {args.scenario!r}; `tdxedu explore --list` names "
              "them", file=sys.stderr)
        return 2
    steps = args.max_steps or sc.max_steps
    if steps < 1:
        print("tdxedu: --max-steps must be >= 1", file=sys.stderr)
        return 2
    ex = explore(sc.build, name=sc.name, max_steps=steps, prune=not args.no_prune)
    if args.json:
        print(ex.to_json())
        return 0
    print(sc.description)
    print(ex.to_text())
    wanted = args.trace or [c for c, v in ex.verdicts.items() if v.verdict == "sometimes"]
    for cond in wanted:
        if cond not in ex.verdicts:
            print(f"tdxedu: no condition {cond!r}; conditions: {', '.join(ex.verdicts)}",
                  file=sys.stderr)
            return 2
        w = ex.witness(cond)
        print(f"\nshortest run where {cond} ({w.steps} steps, outcome {w.outcome}):"
              if w else f"\n{cond} never holds")
        if w:
            print(w.trace.to_text())
            if w.violations:
                print("violations: " + json.dumps(w.violations))
    return 0
