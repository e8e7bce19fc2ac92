"""Random clicks and values for a `Stepper`, shared by the widget tests (1,000 random
clicks and values per widget never raise and never show a traceback)."""

from __future__ import annotations


def random_clicks(st, rng, values: dict, n: int = 1000, extra=()) -> None:
    """`n` random Step / Reset / Run clicks (plus `extra` callables) and control values;
    a control without options takes a value from `values[name]`. Fails on a traceback."""
    actions = [st.step_button.click] * 6 + [st.reset_button.click] * 2 + [
        st.run_button.click] + list(extra)
    controls = list(st.controls.items())
    for _ in range(n):
        if controls and rng.random() < 0.3:
            name, w = rng.choice(controls)
            options = getattr(w, "options", None)
            w.value = rng.choice(list(options) if options else values[name])
        else:
            rng.choice(actions)()
        assert "Traceback" not in st.message.value and "Traceback" not in st.status.value
