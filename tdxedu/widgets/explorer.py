"""`Explorer`: pick a scenario (a prepared one, or one composed from a spec as in
`tdxedu explore --compose`), explore every interleaving, read the verdicts, replay the
shortest witness of a condition step by step (herd7's Always / Sometimes / Never, with the
trace that shows it; [HERD7])."""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..scenarios import compose, registry
from ..sim.engine import explore
from ..steps import ExplorerSource
from .stepper import Stepper, fit_dropdown, mimebundle, plain_message, saved_view_style

COMPOSED = "composed…"  # the picker's entry for the spec typed in the composer box
#: the explorer's reductions a learner can compare (`explore(reduction=...)`); both give the
#: same verdicts and witness lengths (tests/kvm/test_reduction_all_scenarios.py)
REDUCTIONS = (("merge states", "merge"), ("merge + stutter loops", "stutter"))
COMPOSE_HELP = (
    "words key=value: " + ", ".join(f"{k} ({lo}-{hi})" for k, (lo, hi) in compose.LIMITS.items())
    + ", dpamt (on/off), teardown, busy; actors=" + ",".join(compose.VCPU_ACTORS
                                                              + compose.HOST_ACTORS))


class Explorer:
    """Attributes for tests: `scenario`, `spec` (the composer's Text box), `spec_message`
    (HTML: why a spec is refused), `reduction`, `explore_button`, `verdicts` (HTML),
    `condition`, `replay_button`, `stepper` (a `Stepper` with the timeline panel), `result`.

    Typing a spec picks the `COMPOSED` entry; a spec `compose.parse` refuses shows its
    message and disables Explore until it is fixed."""

    def __init__(self, scenarios=None, scenario: str | None = None, *,
                 spec: str = "", max_executions: int = 20_000):
        names = sorted(scenarios or registry.load_all())
        self.max_executions = max_executions
        self.scenario = widgets.Dropdown(
            options=[*names, COMPOSED],
            value=scenario or (COMPOSED if spec else names[0]), description="scenario")
        fit_dropdown(self.scenario)
        self.spec = widgets.Text(value=spec, placeholder=compose.EXAMPLE, description="compose",
                                 continuous_update=False, tooltip=COMPOSE_HELP,
                                 layout=widgets.Layout(width="560px"))
        self.spec_message = widgets.HTML()
        self.spec_message.add_class("tdxedu-message")
        self.spec_error = ""  # compose's message for the spec ("" when it parses)
        self._explored = None  # the Scenario the last Explore ran (replays rebuild it)
        self.reduction = fit_dropdown(widgets.Dropdown(
            options=REDUCTIONS, value="merge", description="reduction",
            tooltip="merge: a state reached before is not explored again; stutter: also, a "
            "step that changes nothing (a BUSY retry) leads back to its own state"))
        self.explore_button = widgets.Button(description="Explore", button_style="info")
        self.verdicts = widgets.HTML()
        self.condition = fit_dropdown(widgets.Dropdown(options=[], description="condition"))
        self.replay_button = widgets.Button(description="Replay witness", disabled=True,
                                            tooltip="step through the shortest run where the "
                                            "condition holds")
        self.result = None
        self.stepper = Stepper(None, panels=("timeline",), title="")
        g = self.stepper._guard
        self.explore_button.on_click(g(lambda _b: self.explore()))
        self.replay_button.on_click(g(lambda _b: self.replay()))
        self.scenario.observe(g(lambda _c: self._clear()), names="value")
        self.reduction.observe(g(lambda _c: self._clear()), names="value")
        self.spec.observe(g(lambda _c: self._spec_changed()), names="value")
        self.widget = widgets.VBox([
            saved_view_style(),
            widgets.HBox([self.scenario, self.reduction, self.explore_button],
                         layout=widgets.Layout(flex_flow="row wrap")),
            widgets.HBox([self.spec, widgets.HTML(f"<small>{html.escape(COMPOSE_HELP)}</small>")],
                         layout=widgets.Layout(flex_flow="row wrap")),
            self.spec_message, self.verdicts,
            widgets.HBox([self.condition, self.replay_button]), self.stepper.widget])
        self._clear()

    @property
    def message(self):
        return self.stepper.message

    def _spec_changed(self) -> None:
        if self.spec.value.strip() and self.scenario.value != COMPOSED:
            self.scenario.value = COMPOSED  # observed: clears and checks the spec
        else:
            self._clear()

    def picked(self) -> registry.Scenario:
        """The scenario Explore runs: the picked one, or the composed spec (ComposeError
        when `compose.parse` refuses it)."""
        if self.scenario.value == COMPOSED:
            return compose.scenario(compose.parse(self.spec.value))
        return registry.get(self.scenario.value)

    def _clear(self) -> None:
        self.result = None
        self._explored = None
        self.condition.options = []
        self.replay_button.disabled = True
        try:
            sc = self.picked()
        except compose.ComposeError as exc:
            self.spec_error = plain_message(exc)
            text = html.escape(self.spec_error, quote=False)
            self.spec_message.value = (f"<span style='color:#b35806'>&#9888; compose: {text} "
                                       "(Explore waits until this is fixed)</span>")
            self.explore_button.disabled = True
            self.verdicts.value = ""
            return
        self.spec_error = ""
        self.spec_message.value = ""
        self.explore_button.disabled = False
        self.verdicts.value = (f"<i>{html.escape(sc.description)}</i><br>Press Explore to run "
                               "every interleaving.")

    def explore(self) -> None:
        sc = self.picked()
        self.result = explore(sc.build, name=sc.name, max_steps=sc.max_steps,
                              max_executions=self.max_executions,
                              reduction=self.reduction.value)
        self._explored = sc
        self.verdicts.value = verdict_table(self.result)
        # only conditions that hold in some run have a witness to replay ("never" has none)
        self.condition.options = [(f"{c} ({v.verdict})", c)
                                  for c, v in self.result.verdicts.items()
                                  if v.witness is not None]
        self.condition.value = self.condition.options[0][1] if self.condition.options else None
        self.replay_button.disabled = not self.condition.options

    def replay(self) -> None:
        if self.result is None:
            raise ValueError("press Explore first")
        cond = self.condition.value
        if cond is None:
            raise ValueError("pick a condition to replay")
        v = self.result.verdicts[cond]
        if v.witness is None:
            raise ValueError(f"{cond!r} never holds: there is no witness to replay")
        self.stepper.load(ExplorerSource(self._explored, choices=v.witness))

    def _repr_mimebundle_(self, **kw):
        return mimebundle(self.widget, f"tdxedu Explorer: {self.scenario.value}", **kw)


_CELL = "padding:1px 14px 1px 0;text-align:left"


def verdict_table(ex) -> str:
    """HTML table of an `Exploration`'s verdicts, one padded column each (the front end's
    table style may be none), the witness length in scheduler steps."""
    colour = {"always": "#1a9850", "sometimes": "#fc8d59", "never": "#4575b4"}

    def cells(*xs, tag="td"):
        return "".join(f"<{tag} style='{_CELL}'>{x}</{tag}>" for x in xs)

    rows = "".join(
        "<tr>" + cells(f"<code>{html.escape(c)}</code>",
                       f"<b style='color:{colour[v.verdict]}'>{v.verdict}</b>",
                       f"{v.true_runs}/{v.runs}",
                       "-" if v.witness is None else len(v.witness)) + "</tr>"
        for c, v in ex.verdicts.items())
    head = (f"{html.escape(ex.name)}: {ex.executions} executions, {ex.pruned} pruned, "
            f"{ex.steps:,} steps executed ({ex.reduction})"
            + ("" if ex.complete else " (INCOMPLETE)"))
    return (f"<b>{head}</b><table style='border-collapse:collapse'><tr>"
            + cells("condition", "verdict", "runs where it holds",
                    "shortest witness (scheduler steps)", tag="th")
            + f"</tr>{rows}</table>")
