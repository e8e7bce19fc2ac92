"""`tdxedu check-mutants`: run every known-bad variant through its scenarios with the
explorer, say what caught it (an invariant, a condition or an outcome verdict) with the
shortest trace, then run the correct policies through the same scenarios: no alarm allowed.

Exit code 1 when a mutant escapes or a correct policy raises an alarm.

An *alarm* is a run that ends other than ``completed`` (``invariant_violated``, ``deadlock``,
``exception``, ``step_bound``) or one where a condition in the one alarm list
(`tdxedu.scenarios.alarms.ALARMS`) holds. Conditions such as ``root_freed`` describe correct
behaviour (`FACTS`) and are never alarms.

A mutant is *caught* only by a **named** check (`Alarm.check`): an alarm condition (with its
KVM_BUG_ON or WARN text), an invariant id (``inv6``, ``lockdep``, ``rcu``, a module invariant's
text) or the hung-task detector (``deadlock``). ``exception`` and ``step_bound`` are defects of
the model: they are reported, count as false alarms on a correct policy, and never as a catch.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field, replace

from ..scenarios.alarms import ALARMS, MODEL_DEFECTS, NAMED_OUTCOMES
from ..sim.engine import explore, replay
from . import Mutant, catalogue
from .scenarios import FACTORIES, Config

ALARM_OUTCOMES = (*NAMED_OUTCOMES, *MODEL_DEFECTS)
ALARM_CONDITIONS = tuple(ALARMS)


def check_name(condition: str, detail: str) -> str | None:
    """The named check behind an alarm, or None for a model defect (exception, step bound).
    An invariant violation is named by its rule id (``inv6``, ``lockdep``, ``rcu``, ``BUG``)
    when its text starts with one, else by the text itself."""
    if condition in MODEL_DEFECTS:
        return None
    if condition == "deadlock":
        return "hung_task"
    if condition == "invariant_violated":
        m = re.match(r"([A-Za-z][\w-]*):", detail)
        if m:
            return m.group(1)
        # a module or allocator invariant named by its text, addresses and KeyIDs left out
        return "invariant: " + re.sub(r"\b(0x[0-9a-f]+|\d+)\b", "N", detail)
    return condition


@dataclass
class Alarm:
    condition: str  # the condition or outcome that held
    verdict: str  # sometimes / always
    runs: str  # "true_runs/runs"
    witness: list[str]  # shortest schedule (actor per step)
    detail: str = ""  # first invariant violation / exception line / KVM_BUG_ON message

    @property
    def check(self) -> str | None:
        """The named check (None: a model defect, never a catch)."""
        return check_name(self.condition, self.detail)


@dataclass
class ScenarioRun:
    factory: str
    config: str
    executions: int
    complete: bool
    seconds: float
    alarms: list[Alarm] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)  # of the first alarm's shortest witness


def run_factory(name: str, cfg: Config, *, max_executions: int = 50_000) -> ScenarioRun:
    """Explore one factory under one config; collect every alarm with its shortest run."""
    f = FACTORIES[name]

    def build():
        return f.build(cfg)

    t0 = time.perf_counter()
    ex = explore(build, name=name, max_steps=f.max_steps, max_executions=max_executions)
    run = ScenarioRun(name, cfg.label(f.uses), ex.executions, ex.complete, 0.0)
    for cond in f.reaction:  # the kernel's reaction must hold in every run
        v = ex.verdicts.get(cond)
        if v is None or v.verdict != "always":
            wit = [] if v is None or v.counterexample is None else list(v.counterexample)
            run.alarms.append(Alarm("reaction_mismatch", "sometimes",
                                    "?" if v is None else f"{v.runs - v.true_runs}/{v.runs}",
                                    wit, f"reaction: {cond} expected in every run (what the "
                                    "kernel does here)"))
    for cond in (*ALARM_OUTCOMES, *ALARM_CONDITIONS):
        if cond in f.reaction:
            continue
        v = ex.verdicts.get(cond)
        if v is None or v.true_runs == 0:
            continue
        w = replay(ex.build, v.witness, max_steps=f.max_steps)
        detail = ""
        if w.violations:
            detail = w.violations[0]
        elif w.error:
            detail = w.error.strip().splitlines()[-1]
        else:
            bugs = [e for e in w.trace.events if e.op == "KVM_BUG_ON"]
            warns = [e for e in w.trace.events if e.op.startswith("WARN") or e.op == "BUG"]
            if bugs:
                detail = "KVM_BUG_ON: " + str(bugs[0].args[0])
            elif warns:
                detail = f"{warns[0].op}: {warns[0].args[0]}"
        run.alarms.append(Alarm(cond, v.verdict, f"{v.true_runs}/{v.runs}", list(v.witness),
                                detail))
        if not run.trace:
            run.trace = [e.to_text() for e in w.trace.events]
    run.seconds = time.perf_counter() - t0
    return run


def _matches(expected: str, alarm: Alarm) -> bool:
    """``invariant:<text>``: an invariant violation containing <text>; ``<rule>:<text>``
    (``lockdep:``, ``rcu:``, ``inv6:`` ...): a violation of that rule id containing <text>;
    otherwise a condition or outcome name."""
    if expected.startswith("invariant:"):
        return alarm.condition == "invariant_violated" and expected[10:] in alarm.detail
    rule, sep, text = expected.partition(":")
    if sep:
        return (alarm.condition == "invariant_violated" and alarm.check == rule
                and text.strip() in alarm.detail)
    return alarm.condition == expected


@dataclass
class MutantResult:
    mutant: Mutant
    runs: list[ScenarioRun]

    @property
    def caught(self) -> bool:
        """Caught by a named check (a step bound or an exception never counts)."""
        return any(a.check for r in self.runs for a in r.alarms)

    @property
    def model_defects(self) -> list[Alarm]:
        return [a for r in self.runs for a in r.alarms if a.check is None]

    @property
    def expected_seen(self) -> bool:
        return any(_matches(self.mutant.expected_catch, a) for r in self.runs for a in r.alarms)

    def first(self) -> tuple[ScenarioRun, Alarm] | None:
        """The run and alarm to show: the expected catch if seen, else the first alarm."""
        for want in (2, 1, 0):
            for r in self.runs:
                for a in r.alarms:
                    if (want == 2 and _matches(self.mutant.expected_catch, a)
                            or want == 1 and a.check or want == 0):
                        return r, a
        return None


def check_mutant(m: Mutant) -> MutantResult:
    cfg = replace(Config(), **m.config)
    return MutantResult(m, [run_factory(s, cfg) for s in m.scenarios])


def check_correct(factories: list[str]) -> list[ScenarioRun]:
    """Every factory under every combination of correct policies it reads."""
    return [run_factory(name, cfg) for name in factories
            for cfg in FACTORIES[name].correct_configs()]


def check_all(names: list[str] | None = None, *, baseline: bool = True) -> dict:
    cat = catalogue()
    if names:
        unknown = [n for n in names if n not in cat]
        if unknown:
            raise ValueError(f"unknown mutant(s) {', '.join(unknown)}; known: "
                             f"{', '.join(cat)}")
        cat = {n: cat[n] for n in names}
    results = [check_mutant(m) for m in cat.values()]
    used = list(dict.fromkeys(s for m in cat.values() for s in m.scenarios))
    correct = check_correct(used) if baseline else []
    return {"mutants": results, "correct": correct}


# --- output ----------------------------------------------------------------------------------

def summary(report: dict) -> dict:
    res, cor = report["mutants"], report["correct"]
    caught = sum(r.caught for r in res)
    false_alarms = [r for r in cor if r.alarms]
    return {"mutants": len(res), "caught": caught, "escaped": len(res) - caught,
            "expected_catch_seen": sum(r.expected_seen for r in res),
            "model_defects": sum(bool(r.model_defects) for r in res),
            "detection_rate": caught / len(res) if res else 1.0,
            "correct_runs": len(cor), "false_alarms": len(false_alarms),
            "ok": caught == len(res) and not false_alarms}


def to_json(report: dict) -> str:
    out = {"summary": summary(report), "mutants": [], "correct": []}
    for r in report["mutants"]:
        m = r.mutant
        first = r.first()
        out["mutants"].append({
            "name": m.name, "family": m.family, "description": m.description,
            "source": m.source, "expected_catch": m.expected_catch, "caught": r.caught,
            "expected_catch_seen": r.expected_seen,
            "caught_by": None if first is None or not first[1].check else {
                "scenario": first[0].factory, "condition": first[1].condition,
                "check": first[1].check,
                "verdict": first[1].verdict, "runs": first[1].runs, "detail": first[1].detail,
                "witness": first[1].witness},
            "trace": [] if first is None else first[0].trace,
            "scenarios": [_run_dict(s) for s in r.runs]})
    out["correct"] = [_run_dict(s) for s in report["correct"]]
    return json.dumps(out, indent=1, sort_keys=True)


def _run_dict(s: ScenarioRun) -> dict:
    return {"scenario": s.factory, "config": s.config, "executions": s.executions,
            "complete": s.complete, "seconds": round(s.seconds, 3),
            "alarms": [{"condition": a.condition, "check": a.check, "verdict": a.verdict,
                        "runs": a.runs,
                        "detail": a.detail, "witness_steps": len(a.witness)}
                       for a in s.alarms]}


def to_text(report: dict, *, full_trace: bool = False, tail: int = 8) -> str:
    lines = []
    for r in report["mutants"]:
        m = r.mutant
        first = r.first()
        mark = "CAUGHT " if r.caught else "ESCAPED"
        if not r.caught and first is not None:
            lines.append(f"{mark} {m.family}/{m.name}: {m.description}")
            lines.append(f"        source: {m.source}")
            lines.append(f"        only a model defect ({first[1].condition}), no named check "
                         f"(expected {m.expected_catch})")
            continue
        lines.append(f"{mark} {m.family}/{m.name}: {m.description}")
        lines.append(f"        source: {m.source}")
        if first is None:
            lines.append(f"        no alarm in {', '.join(m.scenarios)} "
                         f"(expected {m.expected_catch})")
            continue
        run, a = first
        how = f"invariant [{a.check}]" if a.condition == "invariant_violated" else (
            "outcome" if a.condition in ALARM_OUTCOMES else "condition")
        lines.append(f"        caught by {how} {a.condition} ({a.verdict}, {a.runs} runs) in "
                     f"scenario {run.factory}" + (f": {a.detail}" if a.detail else ""))
        others = sorted({x.condition for s in r.runs for x in s.alarms} - {a.condition})
        if others:
            lines.append(f"        also: {', '.join(others)}")
        if not r.expected_seen:
            lines.append(f"        (expected {m.expected_catch}, not seen)")
        trace = run.trace if full_trace or len(run.trace) <= tail else (
            [f"     ... {len(run.trace) - tail} earlier events (--full-trace)"]
            + run.trace[-tail:])
        # scheduler steps (actor turns) and events are different counts: say both
        lines.append(f"        shortest trace: {len(a.witness)} scheduler steps "
                     f"({' '.join(_compress(a.witness))}), {len(run.trace)} events:")
        lines += [f"          {t}" for t in trace]
    if report["correct"]:
        lines.append("")
        lines.append("correct policies through the same scenarios:")
        for s in report["correct"]:
            flag = "ok   " if not s.alarms else "ALARM"
            lines.append(f"  {flag} {s.factory:<24} {s.config:<58} {s.executions:>5} runs"
                         + "".join(f"  [{a.condition}: {a.detail or a.verdict}]"
                                   for a in s.alarms))
    sm = summary(report)
    lines.append("")
    lines.append(f"detection rate: {sm['caught']}/{sm['mutants']} mutants caught "
                 f"({100 * sm['detection_rate']:.0f}%), expected catch seen for "
                 f"{sm['expected_catch_seen']}/{sm['mutants']}; correct policies: "
                 f"{sm['false_alarms']} false alarms in {sm['correct_runs']} scenario runs")
    return "\n".join(lines)


def _compress(choices: list[str]) -> list[str]:
    """'zap zap zap vcpu0' -> 'zap*3 vcpu0'."""
    out: list[str] = []
    for c in choices:
        if out and out[-1].split("*")[0] == c:
            name, _, n = out[-1].partition("*")
            out[-1] = f"{name}*{int(n or 1) + 1}"
        else:
            out.append(c)
    return out


# --- CLI -------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("mutant", nargs="*", help="check only these mutants (default: all)")
    p.add_argument("--list", action="store_true", help="name every mutant and stop")
    p.add_argument("--json", action="store_true", help="full report as JSON")
    p.add_argument("--full-trace", action="store_true",
                   help="print every event of each shortest trace (default: the last 8)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip running the correct policies through the scenarios")


def run(args: argparse.Namespace) -> int:
    cat = catalogue()
    if args.list:
        w = max(len(n) for n in cat)
        for n, m in cat.items():
            print(f"{n:<{w}}  {m.family:<8}  {m.description}")
        return 0
    try:
        report = check_all(args.mutant or None, baseline=not args.no_baseline)
    except ValueError as e:
        print(f"tdxedu: {e}", file=sys.stderr)
        return 2
    print(to_json(report) if args.json else to_text(report, full_trace=args.full_trace))
    return 0 if summary(report)["ok"] else 1
