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


def test_every_preset_has_its_lesson_text_and_statuses_come_from_the_run():
    """Lesson 01's answer table: one explanation per preset of the widget, the statuses in it
    filled in from the run. Freeing the HKID before VPFLUSHDONE is a lifecycle error; after
    it but before CACHE.WB it is TDX_WBCACHE_NOT_COMPLETE (module tdh_mng_key_freeid.c,
    [M15])."""
    from tdxedu.lessons.seamcalls_and_lifecycle import (
        TEACHES,
        build_answer,
        errors_answer,
        preset_errors,
    )
    from tdxedu.widgets.stepper import BUILD_PRESETS

    assert set(TEACHES) == set(BUILD_PRESETS)
    errors = preset_errors(BUILD_PRESETS)
    assert errors["free the HKID too early"] == [
        ("tdh_mng_key_freeid", "TDX_LIFECYCLE_STATE_INCORRECT"),
        ("tdh_mng_key_freeid", "TDX_WBCACHE_NOT_COMPLETE")]
    text = str(errors_answer(BUILD_PRESETS))
    for name, errs in errors.items():
        for _op, status in errs:
            assert status in text.split(f"**{name}**", 1)[1].split("\n* ")[0]
    assert "Step 2, `tdh_mng_key_config`" in str(build_answer())
