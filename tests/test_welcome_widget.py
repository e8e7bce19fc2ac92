"""Headless tests of the welcome widget: drive it with .click(), assert on visible state."""

from tdxedu.widgets.welcome import BUILD_STEPS, WelcomeDemo, summary_table


def _png(demo: WelcomeDemo) -> str:
    (out,) = demo.picture.outputs
    assert out["output_type"] == "display_data"
    return out["data"]["image/png"]


def test_step_changes_status_and_picture():
    demo = WelcomeDemo()
    status0, png0 = demo.status.value, _png(demo)
    assert "Nothing issued yet" in status0

    demo.step_button.click()

    assert demo.done == 1
    assert demo.status.value != status0
    assert "tdh_mng_create" in demo.status.value
    assert _png(demo) != png0


def test_walks_every_step_then_refuses_politely_and_resets():
    demo = WelcomeDemo()
    pictures = {_png(demo)}
    for i, step in enumerate(BUILD_STEPS, 1):
        demo.step_button.click()
        assert f"Step {i}/{len(BUILD_STEPS)}" in demo.status.value
        assert step.seamcall in demo.status.value
        pictures.add(_png(demo))
    assert len(pictures) == len(BUILD_STEPS) + 1  # one distinct picture per state

    demo.step_button.click()  # one click too many: a message, not a traceback
    assert demo.done == len(BUILD_STEPS)
    assert "press Reset" in demo.status.value

    demo.reset_button.click()
    assert demo.done == 0
    assert "Nothing issued yet" in demo.status.value


def test_rendering_is_deterministic():
    assert _png(WelcomeDemo()) == _png(WelcomeDemo())


def test_button_labels_are_what_the_browser_test_clicks():
    demo = WelcomeDemo()
    assert demo.step_button.description == "Step"
    assert demo.reset_button.description == "Reset"


def test_summary_table_lists_every_step_in_order():
    lines = summary_table().splitlines()
    assert lines[0].split()[:3] == ["#", "SEAMCALL", "wrapper"]
    assert [ln.split()[1] for ln in lines[1:]] == [s.seamcall for s in BUILD_STEPS]
