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
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tdxedu import __version__

TOUR_NOTEBOOKS = ("00_tour.ipynb",)  # opened at start-up when it exists


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


def find_notebooks_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Where the lessons live: --notebooks DIR, $TDXEDU_NOTEBOOKS, or next to the package
    in a source checkout (``<repo>/notebooks`` beside ``<repo>/tdxedu``)."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    elif os.environ.get("TDXEDU_NOTEBOOKS"):
        candidates.append(Path(os.environ["TDXEDU_NOTEBOOKS"]))
    else:
        candidates.append(Path(__file__).resolve().parent.parent / "notebooks")
        candidates.append(Path.cwd() / "notebooks")
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def lab_command(notebooks: Path, extra: Sequence[str] = ()) -> list[str]:
    """The JupyterLab command line `tdxedu lab` runs (separate so tests can check it)."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={notebooks}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")  # containers and CI machines often run as root
    cmd.extend(extra)
    for name in TOUR_NOTEBOOKS:
        if (notebooks / name).is_file():
            cmd.append(str(notebooks / name))  # JupyterLab opens it at start-up
            break
    return cmd


def _lab_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--notebooks",
        metavar="DIR",
        help="folder with the lessons (default: notebooks/ of the source checkout, "
        "or $TDXEDU_NOTEBOOKS)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the JupyterLab command instead of running it"
    )


def cmd_lab(args: argparse.Namespace) -> int:
    notebooks = find_notebooks_dir(args.notebooks)
    if notebooks is None:
        where = args.notebooks or os.environ.get("TDXEDU_NOTEBOOKS") or "next to the package"
        _err(
            f"cannot find the lessons folder notebooks/ ({where}). Run from a source checkout "
            "(git clone ...; python3 dev.py lab) or pass --notebooks DIR."
        )
        return 2
    cmd = lab_command(notebooks, args.extra)
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    print(f"tdxedu: JupyterLab on {notebooks} (Ctrl-C twice to stop)", file=sys.stderr)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130


# --------------------------------------------------------------------- registry

COMMANDS: list[Command] = [
    Command(
        "lab",
        cmd_lab,
        "open the lessons in JupyterLab (extra arguments go to JupyterLab)",
        examples=("tdxedu lab", "tdxedu lab --no-browser --port 8899"),
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
        p.set_defaults(_command=c)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command: Command | None = getattr(args, "_command", None)
    if command is None:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        parser.print_help()
        return 2
    if extra and extra[0] == "--":
        extra = extra[1:]
    if extra and not command.passthrough:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = list(extra)
    try:
        return command.run(args)
    except BrokenPipeError:  # `tdxedu explore ... | head`: the reader left, not an error
        sys.stdout = None
        return 0


if __name__ == "__main__":
    sys.exit(main())
