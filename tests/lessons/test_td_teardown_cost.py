"""Lesson 04's cost section: the measured column says what was measured and under which
kernel ([AH-RFC]: pages cleared, before 6.18), and the trust section's text comes from the
validation and the model forms."""

from tdxedu.cost.validate import validate
from tdxedu.lessons.td_teardown import MEASURED_ON, cost_table
from tdxedu.lessons.td_teardown_cost import forms_table, validation_summary


def test_cost_table_labels_the_measured_column():
    cleared, no_clear = cost_table(True), cost_table(False)
    for t in (cleared, no_clear):
        assert "measured*" in t.splitlines()[0] or "meas.*" in t.splitlines()[0]
        assert t.splitlines()[-1 if t is cleared else -2] == f"* {MEASURED_ON}"
    assert "[AH-RFC]" in MEASURED_ON and "pre-6.16" in MEASURED_ON and "cleared" in MEASURED_ON
    # without the clear, the measured numbers are still the cleared runs: said in the header
    assert "meas.* (cleared)" in no_clear.splitlines()[0]
    assert "predictions, not fits" in no_clear


def test_validation_summary_matches_the_held_out_rows():
    rows = validate()
    text = validation_summary()
    hard = next(r for r in rows if r.split.startswith("fit on") and r.measurement.vcpus == 32
                and r.measurement.strategy == "v6.16")
    assert f"{hard.error:+.0%}" in text
    assert f"in {sum(r.inside for r in rows)} of {len(rows)}" in text


def test_forms_table_names_every_form_and_flags_extrapolation():
    far, near = forms_table("1T", 128), forms_table("64G", 16)
    for name in ("linear-kick", "superlinear-kick", "size-growth", "cross-package"):
        assert name in far
    assert "upper edge set by superlinear-kick" in far
    assert "vcpus 128 (measured to 32)" in far and "extrapolation: none" in near
