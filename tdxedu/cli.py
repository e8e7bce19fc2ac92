"""The ``tdxedu`` console script (also ``python -m tdxedu``).

Adding a subcommand takes a function and one registration line::

    def cmd_explore(args: argparse.Namespace) -> int:
        ...                       # return the exit code
        return 0

    COMMANDS.append(Command("explore", cmd_explore, "every interleaving of a scenario",
                            examples=("tdxedu explore --scenario teardown-race",),
                            add_arguments=_explore_args))   # optional: def _explore_args(p)

``args.extra`` holds unrecognised arguments for commands registered with
``passthrough=True`` (``lab`` forwards them to JupyterLab).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tdxedu import __version__


@dataclass(frozen=True)
class Command:
    name: str
    run: Callable[[argparse.Namespace], int]
    help: str
    examples: Sequence[str] = ()
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    passthrough: bool = False  # forward unknown arguments in ``args.extra``
    aliases: Sequence[str] = field(default_factory=tuple)


def _err(msg: str) -> None:
    print(f"tdxedu: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------- lab


def _lab_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workspace",
        metavar="DIR",
        help="your copies of the lessons (default: $TDXEDU_WORKSPACE or ~/tdxedu-lessons); "
        "copies you already have are never overwritten",
    )
    p.add_argument(
        "--reset",
        metavar="LESSON",
        action="append",
        default=[],
        help='put a fresh copy of LESSON ("03", "03_operand_busy" or "all") in the workspace; '
        "your old copy moves to backups/",
    )
    p.add_argument(
        "--notebooks",
        metavar="DIR",
        help="where the shipped lessons are (default: $TDXEDU_NOTEBOOKS, the installed "
        "package, or notebooks/ of the source checkout)",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be done, do nothing")


def cmd_lab(args: argparse.Namespace) -> int:
    from . import lab

    try:
        plan = lab.make_plan(lab.find_lessons(args.notebooks), lab.find_workspace(args.workspace),
                             reset=args.reset, extra=args.extra)
        if not args.dry_run:
            lab.require_jupyterlab()
    except lab.LabError as exc:
        _err(str(exc))
        return 2
    if args.dry_run:
        print("tdxedu lab --dry-run: nothing is changed")
        print("\n".join(plan.describe()))
        return 0
    lab.apply(plan)
    for name, backup in plan.reset:
        print(f"tdxedu: fresh {name}; your old copy is {backup}", file=sys.stderr)
    if plan.kept:
        print(f"tdxedu: kept your edited {', '.join(plan.kept)} "
              "(`tdxedu lab --reset LESSON` gives a fresh copy)", file=sys.stderr)
    print(f"tdxedu: JupyterLab on your copies in {plan.workspace} (Ctrl-C twice to stop)",
          file=sys.stderr)
    try:
        return subprocess.call(plan.command, env=plan.env())
    except KeyboardInterrupt:
        return 130


# --------------------------------------------------------------------- registry

COMMANDS: list[Command] = [
    Command(
        "lab",
        cmd_lab,
        "open your copies of the lessons in JupyterLab (extra arguments go to JupyterLab)",
        examples=("tdxedu lab", "tdxedu lab --reset 03", "tdxedu lab --workspace ~/course",
                  "tdxedu lab --no-browser --port 8899"),
        add_arguments=_lab_args,
        passthrough=True,
    ),
]


def cmd_explore(args: argparse.Namespace) -> int:
    from . import explore_cmd

    return explore_cmd.run(args)


def _explore_args(p: argparse.ArgumentParser) -> None:
    from . import explore_cmd

    explore_cmd.add_arguments(p)


COMMANDS.append(Command(
    "explore", cmd_explore, "every interleaving of a scenario: verdicts and shortest traces",
    examples=("tdxedu explore --list", "tdxedu explore busy-accept-no-retry",
              "tdxedu explore hkid-release-v19-notifier --json"),
    add_arguments=_explore_args))


def cmd_teardown(args: argparse.Namespace) -> int:
    from . import teardown_cmd

    return teardown_cmd.run(args)


def _teardown_args(p: argparse.ArgumentParser) -> None:
    from . import teardown_cmd

    teardown_cmd.add_arguments(p)


COMMANDS.append(Command(
    "teardown", cmd_teardown, "how long tearing down a TD takes, and why (cost model)",
    examples=("tdxedu teardown --memory 400G --vcpus 64 --strategy v6.16",
              "tdxedu teardown --memory 1T --vcpus 64 --compare --no-clear",
              "tdxedu teardown --memory 1T --plot teardown.png --json"),
    add_arguments=_teardown_args))


def cmd_check_mutants(args: argparse.Namespace) -> int:
    from .mutants import check

    return check.run(args)


def _check_mutants_args(p: argparse.ArgumentParser) -> None:
    from .mutants import check

    check.add_arguments(p)


COMMANDS.append(Command(
    "check-mutants", cmd_check_mutants,
    "run every known-bad KVM variant through the explorer: caught by what, shortest trace; "
    "and the correct policies through the same scenarios (no false alarms)",
    examples=("tdxedu check-mutants", "tdxedu check-mutants --list",
              "tdxedu check-mutants skip-track no-retry --full-trace",
              "tdxedu check-mutants --json"),
    add_arguments=_check_mutants_args))


def cmd_sources(args: argparse.Namespace) -> int:
    from . import sources_cmd

    return sources_cmd.run(args)


def _sources_args(p: argparse.ArgumentParser) -> None:
    from . import sources_cmd

    sources_cmd.add_arguments(p)


COMMANDS.append(Command(
    "sources", cmd_sources, "the bibliography: what each [TAG] cited in code and lessons is",
    examples=("tdxedu sources", "tdxedu sources AH-RFC K616"), add_arguments=_sources_args))


def cmd_versions(args: argparse.Namespace) -> int:
    from .tdx.versions import format_versions

    print(format_versions())
    return 0


COMMANDS.append(Command(
    "versions", cmd_versions,
    "TDX module releases the model knows (1.5.01, 1.5.05) and the statuses that differ",
    examples=("tdxedu versions",)))


def build_parser() -> argparse.ArgumentParser:
    examples = "\n".join(f"  {ex}" for c in COMMANDS for ex in c.examples)
    parser = argparse.ArgumentParser(
        prog="tdxedu",
        description="Run how Linux KVM drives Intel TDX: simulator and Jupyter lessons.",
        epilog=f"examples:\n{examples}\n\n`tdxedu COMMAND --help` describes one command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tdxedu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for c in COMMANDS:
        p = sub.add_parser(
            c.name,
            aliases=list(c.aliases),
            help=c.help,
            description=c.help,
            epilog=("examples:\n" + "\n".join(f"  {ex}" for ex in c.examples))
            if c.examples
            else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if c.add_arguments:
            c.add_arguments(p)
        p.set_defaults(_command=c, _parser=p)
    return parser


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings (of every subcommand) that take a value, like ``--memory``."""
    out: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= {s for a in sub._actions if a.option_strings and a.nargs != 0
                        for s in a.option_strings}
    return out


_NEGATIVE = re.compile(r"-\.?\d")


def _join_negative_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--memory -5G`` -> ``--memory=-5G``: argparse takes a value starting with "-" for an
    option and answers "expected one argument"; joined, the value reaches the command, which
    says what is wrong with it ("memory must be positive")."""
    opts = _value_options(parser)
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            out += argv[i:]
            break
        if a in opts and i + 1 < len(argv) and _NEGATIVE.match(argv[i + 1]):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(_join_negative_values(parser, argv))
    command: Command | None = getattr(args, "_command", None)
    if command is None:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        parser.print_help()
        return 2
    if extra and extra[0] == "--":
        extra = extra[1:]
    if extra and not command.passthrough:
        # the command's own usage, not the top-level one
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = list(extra)
    try:
        return command.run(args)
    except BrokenPipeError:  # `tdxedu explore ... | head`: the reader left, not an error
        sys.stdout = None
        return 0


if __name__ == "__main__":
    sys.exit(main())
