"""docs/conformance.md sections 1-3 and the model's handlers stay in step.

The page has one `### <LEAF>` block per leaf: a line `leaf N · module `<file>` · handler
`<name>``, then a table `| # | check (module order) | status | modelled |` whose status cells
hold backticked kernel status names with an operand (`TDX_OPERAND_BUSY \\| RCX`; a lower-case
operand is a value and matches any operand id). This test checks that
* every leaf the dispatcher runs a handler for (`SEAMCALL_MODELLED`, and every TDCALL with a
  handler) has exactly one block, whose number, handler and module file are real;
* every status named is a status the model knows;
* every (leaf, status) of a `yes` row is produced by at least one case of
  tests/tdx/conformance_cases_*.py, and no case produces a status its leaf's block does not
  list -- so the table can neither promise a check the handler lacks nor hide one it makes;
* every leaf of the "Not modelled" table is refused by `seamcall()` the way the module's
  dispatcher (`tdx_vmm_dispatcher.c`) refuses an unknown leaf, and every leaf the `Leaf` enum
  knows is either modelled or listed there.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tdx_cases import build_world, new_module

from tdxedu.tdx import Leaf, TdcallLeaf, TdxModule
from tdxedu.tdx import status as st
from tdxedu.tdx.module import SEAMCALL_MODELLED

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "conformance.md"
OPERANDS = {k.removeprefix("TDX_OPERAND_ID_"): v for k, v in st.OPERAND_IDS.items()}
ANY = -1  # a lower-case operand: any operand id
BAD_RAX = st.TDX_OPERAND_INVALID | st.TDX_OPERAND_ID_RAX
META = re.compile(r"^leaf (\d+) · module `(src/[\w/]+\.c)` · handler `(\w+)`$")


@dataclass
class Block:
    name: str
    section: int
    meta: tuple | None = None
    rows: list = field(default_factory=list)  # (check, [(code, operand)], modelled)

    def statuses(self, modelled_only=False):
        return {s for _, ss, yes in self.rows if yes or not modelled_only for s in ss}


def parse_status(text: str) -> tuple[int, int]:
    name, _, operand = (p.strip() for p in text.replace("\\|", "|").partition("|"))
    assert name in st.STATUS_CODES, f"unknown status {name!r} in docs/conformance.md"
    if not operand:
        return st.STATUS_CODES[name], 0
    if operand[0].islower():
        return st.STATUS_CODES[name], ANY
    assert operand in OPERANDS, f"unknown operand {operand!r} in {text!r}"
    return st.STATUS_CODES[name], OPERANDS[operand]


def parse(doc: str) -> tuple[dict[str, Block], list[list[str]]]:
    blocks: dict[str, Block] = {}
    not_modelled: list[list[str]] = []
    section, block, in_not_modelled = 0, None, False
    for line in doc.splitlines():
        m = re.match(r"^## (\d)\. ", line)
        if m:
            section, block = int(m.group(1)), None
            continue
        if section not in (1, 2, 3):
            continue
        if line.startswith("### "):
            name = line[4:].strip()
            block = None if name == "Not modelled" else Block(name, section)
            if block is not None:
                assert name not in blocks, f"two blocks for {name}"
                blocks[name] = block
            in_not_modelled = name == "Not modelled"
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] if line.startswith("|") \
            else None
        if block is None:
            if cells and in_not_modelled and cells[0] not in ("leaf", "---"):
                not_modelled.append(cells)
            continue
        m = META.match(line)
        if m:
            block.meta = (int(m.group(1)), m.group(2), m.group(3))
        elif cells and cells[0] not in ("#", "---"):
            assert len(cells) == 4, f"{block.name}: row needs 4 cells: {line}"
            statuses = [parse_status(s) for s in re.findall(r"`([^`]+)`", cells[2])]
            assert statuses or cells[2] == "-", f"{block.name}: no status in {line}"
            verdict = cells[3].split(":")[0].strip()
            assert verdict in ("yes", "no"), f"{block.name}: modelled must be yes/no: {line}"
            block.rows.append((cells[1], statuses, verdict == "yes"))
    return blocks, not_modelled


BLOCKS, NOT_MODELLED = parse(DOC.read_text())


def _cases():
    out = []
    for path in sorted(HERE.glob("conformance_cases_*.py")):
        out += importlib.import_module(path.stem).CASES
    return out


CASES = _cases()
# A leaf is modelled when the dispatcher routes it or the module has a handler for it.
MODELLED = set(SEAMCALL_MODELLED) | {x for x in Leaf if hasattr(TdxModule, "_h_" + x.name.lower())}
TDCALLS_MODELLED = {t for t in TdcallLeaf if hasattr(TdxModule, "_h_" + t.name.lower())}
# Leaves whose rows sections 1-3 do not have yet (none left): a strict xfail, so adding a
# block makes the test fail until the leaf leaves this set.
AWAITING_ROWS: set[str] = set()


def _awaiting(name):
    return [pytest.mark.xfail(strict=True, reason="section 2-3 row not written yet")] \
        if name in AWAITING_ROWS else []


def _enum(name: str):
    key = name.replace(".", "_")
    return Leaf[key] if key in Leaf.__members__ else TdcallLeaf[key]


# --- the page itself ---------------------------------------------------------------------------
def test_every_block_names_a_real_leaf_file_and_handler():
    assert len(BLOCKS) >= 20
    for name, b in BLOCKS.items():
        assert b.meta, f"{name}: no 'leaf N · module `...` · handler `...`' line"
        number, path, handler = b.meta
        assert int(_enum(name)) == number, name
        assert handler == "seamcall" or hasattr(TdxModule, handler), (name, handler)
        assert Path(path).name.startswith(("tdh_", "tdg_", "td_")), path
        assert b.rows, f"{name}: no table rows"


@pytest.mark.parametrize("leaf", [pytest.param(x, marks=_awaiting(x.spelled), id=x.spelled)
                                  for x in sorted(MODELLED, key=int)])
def test_every_modelled_seamcall_has_a_block(leaf):
    assert leaf.spelled in BLOCKS
    assert BLOCKS[leaf.spelled].section in (1, 2)


@pytest.mark.parametrize("leaf", [
    pytest.param(x, marks=_awaiting(x.name.replace("_", ".")), id=x.name)
    for x in sorted(TDCALLS_MODELLED, key=int)])
def test_every_modelled_tdcall_has_a_block(leaf):
    name = leaf.name.replace("_", ".")
    assert name in BLOCKS and BLOCKS[name].section == 3


def test_not_modelled_leaves_are_refused_like_unknown_leaves():
    listed = {}
    for cells in NOT_MODELLED:
        leaf = _enum(cells[0])
        assert int(cells[1]) == int(leaf)
        assert [parse_status(s) for s in re.findall(r"`([^`]+)`", cells[2])] == \
            [(int(st.TDX_OPERAND_INVALID), 0)]
        listed[leaf] = cells
    assert listed, "section 1 has no 'Not modelled' table"
    m = new_module()
    w = build_world(m, "finalized")
    for leaf in listed:
        assert leaf not in MODELLED, f"{leaf.spelled} is modelled now: move its row"
        before = m.counts.copy()
        res = m.seamcall(int(leaf), w.tdr, w.vp, 0, 0)
        assert res.status == BAD_RAX, leaf.spelled
        assert {k: v for k, v in m.counts.items() if k != "seamcall"} == \
            {k: v for k, v in before.items() if k != "seamcall"}
    # every leaf number the enum knows is modelled or listed (no silent gap)
    assert set(Leaf) - MODELLED <= set(listed)
    assert not m.check_invariants()


# --- the cases ---------------------------------------------------------------------------------
def _run(stage, kw, action, expect):
    module_kw = {k: v for k, v in kw.items() if k in ("dynamic_pamt",)}
    build_kw = {k: v for k, v in kw.items() if k not in module_kw}
    w = build_world(new_module(**module_kw), stage, **build_kw)
    return w, action(w)


@pytest.mark.parametrize("stage,kw,action,expect", CASES)
def test_case(stage, kw, action, expect):
    w, res = _run(stage, kw, action, expect)
    assert res.status == expect, f"{res} != {expect}"
    assert not w.m.check_invariants()


def _matches(status: int, listed: set) -> bool:
    code, op = status & st.TDX_SEAMCALL_STATUS_MASK, status & 0xFFFF_FFFF
    return (code, op) in listed or (code, ANY) in listed


def test_table_and_cases_agree():
    produced: dict[str, set[int]] = {}
    for param in CASES:
        _, res = _run(*param.values)
        produced.setdefault(res.leaf, set()).add(int(res.status))
    problems = []
    for name, statuses in produced.items():
        block = BLOCKS.get(name)
        if block is None:
            continue  # a leaf without a block fails test_every_modelled_*_has_a_block
        for s in statuses:
            if s and not _matches(s, block.statuses()):
                problems.append(f"{name}: a case returns {st.Status(s)}, no row lists it")
    for name, block in BLOCKS.items():
        got = produced.get(name, set())
        for code, op in block.statuses(modelled_only=True):
            hit = any((s & st.TDX_SEAMCALL_STATUS_MASK) == code
                      and (op == ANY or (s & 0xFFFF_FFFF) == op) for s in got)
            if not hit:
                problems.append(f"{name}: no case produces {st.Status(code | max(op, 0))}"
                                f"{' | <any>' if op == ANY else ''}")
    assert not problems, "\n".join(problems)
