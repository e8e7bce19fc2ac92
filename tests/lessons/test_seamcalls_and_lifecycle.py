"""Lesson 01 (SEAMCALLs and the TD lifecycle): each exercise checker rejects a wrong answer
and accepts the hidden solution."""

from tdxedu.lessons.seamcalls_and_lifecycle_exercises import (
    SOLUTIONS,
    check_build_order,
    check_decode,
)


def test_decode():
    for key in ("decode_sept_busy", "decode_state"):
        value, name = SOLUTIONS[key]
        assert check_decode(int(value, 16), name)
        assert not check_decode(int(value, 16), name.split(" | ")[0])
        assert not check_decode(int(value, 16), "TDX_SUCCESS")


def test_build_order():
    assert check_build_order(SOLUTIONS["build_order"])
    wrong = check_build_order(["tdh_mng_create", "tdh_mng_init"])
    assert not wrong and "TDX_TD_KEYS_NOT_CONFIGURED" in wrong.message
    assert not check_build_order(SOLUTIONS["build_order"][:-1])
    assert not check_build_order(["nope"])
