"""Every kernel function a flow names exists in the kernel (or series) the flow is labelled
with (`tdxedu.kvm.kernel_names`).

Runs every teardown strategy of a TD's life under each kernel ("v6.16", "v6.19"), with and
without Dynamic PAMT, every registered explorer scenario of a TDX or PAMT world, and the
removal step source; collects the names of the call chains (the "issued by" line and its
"why?") and of the KVM trace events, and checks each against the table. Lessons: a line of
notebooks/*.py that speaks of one kernel version only may name only functions of that kernel.
Sources: [K616-TDX] [K619-TDX] [S20] [S0] [AH-clear].
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tdxedu.kvm.kernel_names import MODEL_NAMES, NAMES, UPSTREAM, exists, labels_of
from tdxedu.kvm.tdx import TEARDOWN_POLICIES
from tdxedu.scenarios import registry
from tdxedu.sources import lookup
from tdxedu.steps.explorer import ExplorerSource
from tdxedu.steps.removal import REMOVAL_WHY
from tdxedu.steps.step import Finished
from tdxedu.steps.td_life import TdLifeSource
from tdxedu.trace import MODULE_SOURCE

ROOT = Path(__file__).resolve().parents[2]
TAG = re.compile(r"\[([A-Z][A-Za-z0-9.-]+)\]")


def _drain(src, cap: int = 5000) -> set[str]:
    """Names a step source shows: call-chain frames and KVM trace events."""
    names = set()
    for _ in range(cap):
        try:
            info = src.step()
        except Finished:
            break
        names |= {f.name for f in info.chain}
        names |= {e.op for e in info.events if e.source != MODULE_SOURCE}
        if getattr(src, "done", False):
            break
    return names


def _bad(names, labels) -> list[str]:
    return sorted(n for n in names if not exists(n, labels))


@pytest.mark.parametrize("kernel", UPSTREAM)
@pytest.mark.parametrize("strategy", TEARDOWN_POLICIES)
@pytest.mark.parametrize("dpamt", [False, True], ids=["static-pamt", "dpamt"])
def test_td_life_names_exist_in_its_kernel(kernel, strategy, dpamt):
    src = TdLifeSource("16K", 2, strategy)
    src.td_options = {"kernel": kernel, "dynamic_pamt": dpamt}
    src.reset()
    names = _drain(src)
    labels = labels_of(src.td.kt)
    assert kernel in labels and ("dpamt" in labels) == dpamt
    assert not _bad(names, labels), f"{strategy} on {kernel}: {_bad(names, labels)}"


def test_kernel_specific_names_show_up_under_their_kernel_only():
    """The zap path's names follow the kernel: 6.16's helpers, 6.19's macro."""
    shown = {}
    for kernel in UPSTREAM:
        src = TdLifeSource("16K", 2, "v6.16")
        src.td_options = {"kernel": kernel}
        src.reset()
        shown[kernel] = _drain(src)
    assert {"tdx_sept_zap_private_spte", "tdx_sept_drop_private_spte", "tdx_clear_page"} <= shown[
        "v6.16"
    ]
    assert "tdx_quirk_reset_page" in shown["v6.19"]
    assert not shown["v6.19"] & {
        "tdx_sept_zap_private_spte",
        "tdx_sept_drop_private_spte",
        "tdx_no_vcpus_enter_start",
        "tdx_clear_page",
    }
    assert "tdh_do_no_vcpus" not in shown["v6.16"]


def _world_labels(world):
    kt = getattr(world, "kt", None)
    if kt is not None:
        return labels_of(kt)
    if getattr(getattr(world, "host", None), "pamt", None) is not None:
        return frozenset({"v6.16", "dpamt"})
    return None  # TDP MMU roots worlds carry their own policy labels (not in this table)


SCENARIOS = sorted(registry.load_all())


@pytest.mark.parametrize("name", SCENARIOS)
def test_explorer_scenario_names_exist(name):
    src = ExplorerSource(name, seed=1)
    labels = _world_labels(src.world)
    if labels is None:
        pytest.skip("a TDP MMU roots world: labelled by its roots policy")
    names = _drain(src, cap=src.scenario.max_steps)
    assert not _bad(names, labels), f"{name} ({sorted(labels)}): {_bad(names, labels)}"


def test_removal_why_texts_name_616_functions():
    """The removal step source (lesson 02) is 6.16's `tdx_sept_remove_private_spte`."""
    for _leaf, func, _why in REMOVAL_WHY.values():
        assert exists(func, {"v6.16"}), func


def test_table_sources_resolve_and_names_are_not_both_kinds():
    for entry in NAMES.values():
        tags = TAG.findall(entry.source)
        assert tags, entry
        for t in tags:
            lookup(t)
        assert entry.labels, entry
    assert not set(NAMES) & set(MODEL_NAMES)


VERSION = re.compile(r"(?<![\d.])(?:v|Linux |kernel )?6\.(16|19)(?![\d])")
TICKED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)")


def notebook_violations() -> list[str]:
    """Lines of the lessons that speak of exactly one of 6.16 / 6.19 and name, in backticks,
    a kernel function the table says that kernel lacks."""
    out = []
    for nb in sorted((ROOT / "notebooks").glob("*.py")):
        for i, line in enumerate(nb.read_text().splitlines(), 1):
            vers = {f"v6.{m}" for m in VERSION.findall(line)}
            if len(vers) != 1:
                continue
            for name in TICKED.findall(line):
                if name in NAMES and not exists(name, vers):
                    out.append(f"{nb.name}:{i}: {name} under {vers.pop()}: {line.strip()}")
                    vers = {f"v6.{m}" for m in VERSION.findall(line)}
    return out


def test_lessons_name_functions_of_the_version_they_speak_of():
    assert not notebook_violations(), "\n".join(notebook_violations())
