"""`Explorer`: pick a scenario, explore every interleaving, read the verdicts, replay the
shortest witness of a condition step by step (herd7's Always / Sometimes / Never, with the
trace that shows it; [HERD7])."""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..scenarios import registry
from ..sim.engine import explore
from ..steps import ExplorerSource
from .stepper import Stepper, mimebundle


class Explorer:
    """Attributes for tests: `scenario`, `explore_button`, `verdicts` (HTML), `condition`,
    `replay_button`, `stepper` (a `Stepper` with the timeline panel), `result`."""

    def __init__(self, scenarios=None, scenario: str | None = None, *,
                 max_executions: int = 20_000):
        names = sorted(scenarios or registry.load_all())
        self.max_executions = max_executions
        self.scenario = widgets.Dropdown(options=names, value=scenario or names[0],
                                         description="scenario")
        self.explore_button = widgets.Button(description="Explore", button_style="info")
        self.verdicts = widgets.HTML()
        self.condition = widgets.Dropdown(options=[], description="condition")
        self.replay_button = widgets.Button(description="Replay witness")
        self.result = None
        self.stepper = Stepper(None, panels=("timeline",), title="")
        g = self.stepper._guard
        self.explore_button.on_click(g(lambda _b: self.explore()))
        self.replay_button.on_click(g(lambda _b: self.replay()))
        self.scenario.observe(g(lambda _c: self._clear()), names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self.scenario, self.explore_button]), self.verdicts,
            widgets.HBox([self.condition, self.replay_button]), self.stepper.widget])
        self._clear()

    @property
    def message(self):
        return self.stepper.message

    def _clear(self) -> None:
        self.result = None
        self.condition.options = []
        desc = registry.get(self.scenario.value).description
        self.verdicts.value = (f"<i>{html.escape(desc)}</i><br>Press Explore to run every "
                               "interleaving.")

    def explore(self) -> None:
        sc = registry.get(self.scenario.value)
        self.result = explore(sc.build, name=sc.name, max_steps=sc.max_steps,
                              max_executions=self.max_executions)
        self.verdicts.value = verdict_table(self.result)
        self.condition.options = list(self.result.verdicts)

    def replay(self) -> None:
        if self.result is None:
            raise ValueError("press Explore first")
        cond = self.condition.value
        if cond is None:
            raise ValueError("pick a condition to replay")
        v = self.result.verdicts[cond]
        if v.witness is None:
            raise ValueError(f"{cond!r} never holds: there is no witness to replay")
        self.stepper.load(ExplorerSource(self.result.name, choices=v.witness))

    def _repr_mimebundle_(self, **kw):
        return mimebundle(self.widget, f"tdxedu Explorer: {self.scenario.value}", **kw)


def verdict_table(ex) -> str:
    """HTML table of an `Exploration`'s verdicts."""
    colour = {"always": "#1a9850", "sometimes": "#fc8d59", "never": "#4575b4"}
    rows = "".join(
        f"<tr><td><code>{html.escape(c)}</code></td><td style='color:{colour[v.verdict]}'>"
        f"<b>{v.verdict}</b></td><td>{v.true_runs}/{v.runs}</td>"
        f"<td>{'' if v.witness is None else len(v.witness)}</td></tr>"
        for c, v in ex.verdicts.items())
    head = (f"{html.escape(ex.name)}: {ex.executions} executions, {ex.pruned} pruned"
            + ("" if ex.complete else " (INCOMPLETE)"))
    return (f"<b>{head}</b><table><tr><th>condition</th><th>verdict</th><th>runs</th>"
            f"<th>shortest witness</th></tr>{rows}</table>")
