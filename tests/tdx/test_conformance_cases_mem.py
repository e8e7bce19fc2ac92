"""Every case of conformance_cases_mem.py (docs/conformance.md sections 2 and 3) returns the
status it states, and leaves the model consistent."""

import pytest
from conformance_cases_mem import CASES
from tdx_cases import run_case


@pytest.mark.parametrize("stage,kw,action,expect", CASES)
def test_case(td_at, stage, kw, action, expect):
    run_case(td_at, stage, kw, action, expect)
