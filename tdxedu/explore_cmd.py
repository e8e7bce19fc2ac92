"""`tdxedu explore`: run every interleaving of a named scenario and print the verdicts."""

from __future__ import annotations

import argparse
import json
import sys

from .scenarios.registry import load_all
from .sim import explore
from .sim.engine import Execution


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", help="scenario name (see --list)")
    p.add_argument("--list", action="store_true", help="name every scenario and stop")
    p.add_argument("--json", action="store_true", help="verdicts and witness traces as JSON")
    p.add_argument("--trace", metavar="CONDITION", action="append", default=[],
                   help="print the shortest run where CONDITION holds (repeatable); "
                   "default: every condition that is 'sometimes'")
    p.add_argument("--no-prune", action="store_true",
                   help="explore without state pruning (slower; same verdicts); "
                   "the same as --reduction none")
    p.add_argument("--reduction", choices=("none", "merge", "stutter"), default=None,
                   help="none: every interleaving; merge (default): a state already reached "
                   "is not explored again; stutter: merge, a step that changes nothing "
                   "being a loop, run lengths read off the state graph (same verdicts and "
                   "shortest witnesses, far fewer steps on retry loops)")
    p.add_argument("--compose", metavar="SPEC",
                   help="explore a composed scenario instead of a named one: key=value words, "
                   "e.g. 'vcpus=3 pages=2 packages=2 actors=run,run,run,mm,close', or @FILE "
                   "holding them (see tdxedu.scenarios.compose)")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="scheduler steps per run, at least 1 (default: the scenario's own)")


def run(args: argparse.Namespace) -> int:
    scenarios = load_all()
    if args.compose is not None and not args.list:
        sc = _composed(args)
        if sc is None:
            return 2
    elif args.list or not args.scenario:
        w = max(len(n) for n in scenarios)
        for name in sorted(scenarios):
            print(f"{name:<{w}}  {scenarios[name].description}")
        if not args.list:
            print("\ntdxedu: name a scenario, e.g. `tdxedu explore busy-accept-no-retry`",
                  file=sys.stderr)
            return 2
        return 0
    else:
        sc = scenarios.get(args.scenario)
    if sc is None:
        print(f"tdxedu: unknown scenario {args.scenario!r}; `tdxedu explore --list` names "
              "them", file=sys.stderr)
        return 2
    steps = sc.max_steps if args.max_steps is None else args.max_steps
    if steps < 1:
        print(f"tdxedu explore: --max-steps must be at least 1, got {steps}", file=sys.stderr)
        return 2
    reduction = args.reduction or ("none" if args.no_prune else "merge")
    if args.no_prune and reduction != "none":
        print(f"tdxedu explore: --no-prune contradicts --reduction {reduction}",
              file=sys.stderr)
        return 2
    ex = explore(sc.build, name=sc.name, max_steps=steps, reduction=reduction)
    if args.json:
        print(ex.to_json())
        return 0
    print(sc.description)
    print(ex.to_text())
    print(alarm_line(ex))
    wanted = args.trace or [c for c, v in ex.verdicts.items() if v.verdict == "sometimes"]
    for cond in wanted:
        if cond not in ex.verdicts:
            print(f"tdxedu: no condition {cond!r}; conditions: {', '.join(ex.verdicts)}",
                  file=sys.stderr)
            return 2
        w = ex.witness(cond)
        if w is None:
            print(f"\n{cond} never holds")
            continue
        print(f"\nshortest run where {cond}: {w.steps} scheduler steps, "
              f"{len(w.trace)} events, outcome {w.outcome}")
        print(numbered_trace(sc, w, ex.max_steps))
        if w.violations:
            print("violations: " + json.dumps(w.violations))
    return 0


def numbered_trace(sc, w, max_steps: int) -> str:
    """The witness's events, each under the scheduler step that recorded it ("step 3 zap"),
    and a line for each step that recorded none, so the step count and the event count both
    add up to the lines shown."""
    exe = Execution(sc.build(), max_steps)
    steps: list[tuple[str, int, int]] = []  # (actor, first event, end)
    for name in w.choices:
        mark = len(exe.world.trace)
        exe.step(name)
        steps.append((name, mark, len(exe.world.trace)))
    if len(exe.world.trace) != len(w.trace):  # cannot happen for a deterministic world
        return w.trace.to_text()
    lines = []
    for i, (name, a, b) in enumerate(steps, 1):
        head = f"step {i:>3}"
        if a == b:
            lines.append(f"{head}           {name:<12} (no event: ran to its next preemption "
                         "point)")
        for e in w.trace.events[a:b]:
            lines.append(f"{head}{e.to_text()}")
            head = " " * len(head)
    return "\n".join(lines)


def alarm_line(ex) -> str:
    """Which of the verdicts are alarms (the one alarm list, `tdxedu.scenarios.alarms`, and
    the outcomes that end a run badly), and whether any holds in some run."""
    from .scenarios.alarms import ALARMS, MODEL_DEFECTS, NAMED_OUTCOMES

    bad = [c for c, v in ex.verdicts.items()
           if v.true_runs and (c in ALARMS or c in NAMED_OUTCOMES or c in MODEL_DEFECTS)]
    if not bad:
        return "alarms: none in any run"
    return "alarms (in some run): " + ", ".join(bad)


def _composed(args: argparse.Namespace):
    """The `--compose` spec as a `Scenario`, or None after printing why it cannot be built."""
    from .scenarios.compose import ComposeError, parse, scenario

    if args.scenario:
        print("tdxedu explore: give a scenario name or --compose, not both", file=sys.stderr)
        return None
    text = args.compose
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            print(f"tdxedu explore: cannot read spec file {text[1:]!r}: {e.strerror}",
                  file=sys.stderr)
            return None
    try:
        spec = parse(text)
    except ComposeError as e:
        print(f"tdxedu explore --compose: {e}", file=sys.stderr)
        return None
    return scenario(spec)
