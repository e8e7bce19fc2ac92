"""Fixtures for the TDX module model: a 2-package platform and a TD builder.

`td_at(stage, vcpus=, pages=)` builds a TD with real SEAMCALLs (tdxedu.tdx.testing.TdBuilder)
and returns a `World` (tdx_cases.py) bundling the module, the builder and the TD's addresses.
"""

from __future__ import annotations

import pytest
from tdx_cases import World, build_world, new_module


@pytest.fixture
def module():
    return new_module()


@pytest.fixture
def td_at(module):
    def make(stage: str = "finalized", **kw) -> World:
        return build_world(module, stage, **kw)

    return make
