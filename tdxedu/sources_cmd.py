"""`tdxedu sources [TAG ...]`: the bibliography offline (`tdxedu.sources`).

Without a tag: one line per source. With tags: each full entry (title, author, date, kind,
locator, web address, what it supports). An unknown tag exits 2 with the closest tags."""

from __future__ import annotations

import argparse
import sys

from .sources import KINDS, SOURCES, UnknownTag, lookup


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("tags", nargs="*", metavar="TAG", help="e.g. K616, AH-RFC, [M15]")
    p.add_argument("--kind", choices=sorted(KINDS), help="list only sources of this kind")


def run(args: argparse.Namespace) -> int:
    if not args.tags:
        items = [s for s in SOURCES if args.kind in (None, s.kind)]
        width = max(len(s.tag) for s in items) + 2
        for s in sorted(items, key=lambda s: s.tag.lower()):
            print(f"{'[' + s.tag + ']':<{width}} {s.kind:<6} {s.title}")
        return 0
    rc = 0
    for i, tag in enumerate(args.tags):
        try:
            entry = lookup(tag).entry()
        except UnknownTag as e:
            print(f"tdxedu sources: {e.message}", file=sys.stderr)
            rc = 2
            continue
        print(("\n" if i else "") + entry)
    return rc
