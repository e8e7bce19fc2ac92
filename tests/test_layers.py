"""Every import in `tdxedu/` points down the stack ("dependencies point downwards only", the
Layout section of README.md): a learner reading a layer never needs the layers above it, and the
model below the
lessons never depends on a notebook helper or a widget.

Imports are read with `ast`, including those inside functions (lazy imports are still
dependencies) and module paths written as strings (`importlib.import_module`, the scenario
registry's module list). Within one layer any import is allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tdxedu"

# Top to bottom. A module may import from its own layer or any layer below it. Every
# subpackage and top-level module of tdxedu must be listed (a new one has to be placed).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "cli", "explore_cmd", "teardown_cmd", "sources_cmd", "lab"),  # the command
    ("widgets",),  # ipywidgets front ends
    ("viz",),  # matplotlib renderers
    ("lessons",),  # per-lesson helpers and exercises
    ("steps",),  # step sources: the model driven one step at a time
    ("scenarios", "mutants"),  # RunningTd, explorer worlds, the registry; known-bad variants
    ("sim", "cost"),  # scheduler / explorer; cost model and bulk engine
    ("kvm",),  # the host kernel
    ("units",),  # sizes ("64M") to bytes
    ("tdx",),  # the TDX module
    ("trace", "sources", ""),  # events and the yield protocol; the bibliography; "" is the
    # package root (__version__)
)
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = ["tdxedu", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def imports(source: str, name: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported tdxedu module) for every import in `source`, the module `name`."""
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:  # `from . import explore_cmd` imports a module
                sub = f"{target}.{a.name}"
                out.append((node.lineno, sub if is_module(sub) else target))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node.value.startswith("tdxedu.") and " " not in node.value
              and is_module(node.value)):
            out.append((node.lineno, node.value))
    return [e for e in dict.fromkeys(out) if e[1] == "tdxedu" or e[1].startswith("tdxedu.")]


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward_edges(source: str, name: str, is_package: bool = False) -> list[str]:
    here = layer(name)
    bad = []
    for line, target in imports(source, name, is_package):
        there = layer(target)
        if there not in RANK:
            bad.append(f"{name}:{line} imports {target}, which is in no layer of LAYERS")
        elif RANK[there] < RANK[here]:
            bad.append(f"{name}:{line} -> {target} points up ({here} is below {there})")
    return bad


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer():
    unplaced = sorted({layer(module_name(p)) for p in MODULES} - set(RANK))
    assert not unplaced, f"place these in LAYERS: {unplaced}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    bad = upward_edges(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_lazy_relative_and_string_imports():
    src = (
        "from ..tdx import status\n"
        "def f():\n"
        "    from ..widgets import Stepper\n"
        "    from . import tdx\n"
        "    import tdxedu.lessons.exercises\n"
        "    return importlib.import_module('tdxedu.steps')\n"
    )
    bad = upward_edges(src, "tdxedu.kvm.teardown")
    assert [b.split(" -> ")[1].split()[0] for b in bad] == [
        "tdxedu.widgets", "tdxedu.lessons.exercises", "tdxedu.steps"]
    assert all(b.startswith("tdxedu.kvm.teardown:") for b in bad)
    assert upward_edges("from .. import __version__\n", "tdxedu.cli") == []
