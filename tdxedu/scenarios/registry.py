"""Named scenarios for `tdxedu explore` and the lessons.

A scenario is a zero-argument builder returning a fresh `World`. The modules of
`tdxedu.scenarios` and `tdxedu.mutants.scenarios` register theirs with `@scenario(...)`;
`load_all()` imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from ..sim.engine import World


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    build: Callable[[], World]
    max_steps: int = 200


SCENARIOS: dict[str, Scenario] = {}
_MODULES = ("tdxedu.scenarios.td_races", "tdxedu.scenarios.roots",
            "tdxedu.scenarios.pamt", "tdxedu.mutants.scenarios")


def scenario(name: str, description: str, max_steps: int = 200):
    def deco(build: Callable[[], World]):
        SCENARIOS[name] = Scenario(name, description, build, max_steps)
        return build

    return deco


def load_all() -> dict[str, Scenario]:
    for mod in _MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name not in (mod, "tdxedu.scenarios"):
                raise
    return SCENARIOS


def get(name: str) -> Scenario:
    load_all()
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}")
    return SCENARIOS[name]
