"""`Stepper`: Step / Run / Reset over any step source, with pictures redrawn in place.

    st = teardown_stepper(memory="64K", vcpus=2, strategy="v6.16")
    st                      # in a notebook: buttons, pickers, status, pictures
    st.step_button.click()  # in a test

Pictures are `ipywidgets.Image` widgets whose `.value` (PNG bytes) is replaced on each
redraw: cheap to send, testable without a browser, and no Output widget to route
([NBVAL]: output routed through an Output widget is what nbval cannot compare). Every callback is
guarded: an exception becomes a
message in the widget (`message.value`), never a traceback.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable

import ipywidgets as widgets

from ..kvm.tdx import TEARDOWN_POLICIES
from ..steps import (
    KVM_BUILD_ORDER,
    KVM_REMOVAL,
    ExplorerSource,
    Finished,
    RemovalSource,
    SeamcallScriptSource,
    StepInfo,
    TdLifeSource,
)
from ..viz import DISPLAY_WIDTH, SCALE, figure_png, png_size
from .panels import PANELS, SHARED_KEYS

RUN_LIMIT = 5000
_SHARED_PNG: dict = {}  # (panel, key) -> PNG for panels whose key determines the picture


def _esc(s) -> str:
    return html.escape(str(s))


RUN_TO_START = "Run this cell to start the widget."

#: Opened before its cell runs, a lesson shows each widget as it was saved, and ipywidgets
#: marks every element of it "disconnected" with a red broken-link icon (a dozen per widget).
#: This rule, shipped inside each widget, draws one quiet line above the widget instead.
SAVED_VIEW_CSS = (
    ".jupyter-widgets-disconnected::before{content:none!important;display:none!important}"
    ".jp-OutputArea-output>.jupyter-widgets-disconnected::before{"
    f"content:'Saved view. {RUN_TO_START}'!important;display:block!important;"
    "font:italic 12px/1.4 var(--jp-ui-font-family,sans-serif)!important;"
    "color:var(--jp-ui-font-color2,#616161)!important;padding:0 0 6px 0!important}")


def saved_view_style() -> widgets.HTML:
    """An invisible widget carrying `SAVED_VIEW_CSS` (first child of a lesson widget)."""
    w = widgets.HTML(f"<style>{SAVED_VIEW_CSS}</style>",
                     layout=widgets.Layout(height="0px", margin="0px", overflow="hidden"))
    w.add_class("tdxedu-saved-view-style")
    return w


# Advance widths (em) of DejaVu Sans, the widest sans-serif a browser falls back to on Linux
# (Arial/Helvetica are narrower): sizing by it never clips a label in a narrower font.
_EM_NARROW = {c: 0.28 for c in "ijlI|'!"}
_EM = {**{c: 0.636 for c in "0123456789"}, **_EM_NARROW, " ": 0.318, ".": 0.318, ",": 0.318,
       ":": 0.337, ";": 0.337, "-": 0.361, "(": 0.39, ")": 0.39, "/": 0.337, "_": 0.5,
       "f": 0.352, "r": 0.411, "t": 0.392, "s": 0.521, "c": 0.55, "z": 0.525, "m": 0.974,
       "w": 0.818, "M": 0.863, "W": 0.989, "+": 0.838, "=": 0.838}
WIDGET_FONT_PX = 13  # JupyterLab's --jp-widgets-font-size (--jp-ui-font-size1)
LABEL_MARGIN_PX = 8  # ipywidgets: .widget-label margin-right (2 x --jp-widgets-inline-margin)
SELECT_CHROME_PX = 30  # ipywidgets select: 8px left padding, 20px arrow, 2 x 1px border
MIN_SELECT_PX = 96  # a short label ("v6.3") still gets a box that shows it whole


def label_px(text: str, font_px: float = WIDGET_FONT_PX) -> float:
    """Width of `text` in CSS px, by DejaVu Sans advance widths (upper case 0.75 em, other
    characters 0.65 em unless listed): an upper bound for the fonts a browser picks."""
    return font_px * sum(_EM.get(c, 0.75 if c.isupper() else 0.65) for c in str(text))


def dropdown_labels(dd: widgets.Dropdown) -> list[str]:
    return [o[0] if isinstance(o, tuple) else str(o) for o in dd.options] or [""]


def select_box_px(dd: widgets.Dropdown) -> int:
    """The width the select box of `dd` gets: its layout width less the description."""
    return (int(dd.layout.width.removesuffix("px"))
            - int(dd.style.description_width.removesuffix("px")) - LABEL_MARGIN_PX)


def fit_dropdown(dd: widgets.Dropdown, *, slack_px: int = 12):
    """Widen a Dropdown to its longest label, so no choice is clipped ("v6." for "v6.3",
    "...kick, rer"): the description gets its own width, the select box the longest option's
    plus the select's padding and arrow. Refits itself whenever its options change.
    Returns `dd`."""
    desc_px = int(label_px(dd.description)) + 8 if dd.description else 0
    text_px = max(map(label_px, dropdown_labels(dd)))
    box_px = max(MIN_SELECT_PX, int(text_px) + SELECT_CHROME_PX + slack_px)
    dd.style.description_width = f"{desc_px}px"
    dd.layout.width = f"{desc_px + LABEL_MARGIN_PX + box_px}px"
    dd.layout.max_width = "100%"
    if not getattr(dd, "_tdxedu_fitted", False):
        dd._tdxedu_fitted = True
        dd.observe(lambda _c: fit_dropdown(dd, slack_px=slack_px), names="options")
    return dd


def plain_message(exc: BaseException) -> str:
    """What a widget says about an exception: its words, never its class name. A KeyError's
    text is its key; an exception without words (a bug in the model) says so plainly."""
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(exc)
    if isinstance(exc, (ValueError, TypeError, KeyError, LookupError, Finished)):
        return text or "that did not work"
    return (f"the model stopped unexpectedly ({text or 'no details'}); press Reset to start "
            "again")


def mimebundle(widget, text: str, **kw) -> dict:
    """Display a lesson object as its ipywidget, with a short text/plain for front ends that
    cannot draw it (an untrusted notebook, a text viewer): what it is and what to do (nbval
    compares that text, so it must not be the widget's model id)."""
    data = widget._repr_mimebundle_(**kw)
    if isinstance(data, tuple):
        data = data[0]
    data = dict(data or {})
    data["text/plain"] = f"{text}. {RUN_TO_START}"
    return data

def picture() -> widgets.Image:
    """An Image widget for a panel: as wide as the notebook allows, never wider than the
    picture's CSS size (its PNG holds `SCALE` pixels per CSS px, so it is never stretched)."""
    return widgets.Image(format="png", layout=widgets.Layout(
        width="100%", max_width=f"{DISPLAY_WIDTH}px", height="auto"))


def fit_picture(img: widgets.Image) -> None:
    """Cap `img`'s displayed width at its PNG's CSS width (pixels / `SCALE`)."""
    try:
        w = png_size(img.value)[0] // SCALE
    except ValueError:  # not a PNG (a custom render): leave the layout alone
        return
    if img.layout.max_width != f"{w}px":
        img.layout.max_width = f"{w}px"


class Stepper:
    """Drive a step source built by `make_source(**control values)`.

    `controls` maps keyword names to value widgets (Dropdown, IntText, Text); changing one
    rebuilds the source. `panels` names entries of `PANELS` (default: the source's own).
    Attributes for tests: `step_button`, `run_button`, `reset_button`, `counter`, `status`,
    `message`, `images` (panel name -> Image), `source`, `last`, `errors` (messages shown)."""

    def __init__(self, make_source: Callable | None = None, *, controls: dict | None = None,
                 panels: tuple[str, ...] | None = None, title: str = "",
                 render: Callable = figure_png, run_limit: int = RUN_LIMIT):
        self.make_source = make_source
        self.controls = dict(controls or {})
        for w in self.controls.values():
            if isinstance(w, widgets.Dropdown):
                fit_dropdown(w)
        self.render = render
        self.run_limit = run_limit
        self.source = None
        self.last: StepInfo | None = None
        self.errors: list[str] = []
        self.invalid = ""  # the message of a setting the model refused ("" when all is well)
        self._keys: dict[str, object] = {}
        self.heading = widgets.HTML(f"<b>{_esc(title)}</b>" if title else "")
        self.step_button = widgets.Button(description="Step", button_style="primary",
                                          tooltip="one step: the next SEAMCALL or actor step")
        self.run_button = widgets.Button(description="Run", tooltip="run to the end")
        self.reset_button = widgets.Button(description="Reset", tooltip="start again")
        # what a bad setting disables (lesson widgets add theirs, e.g. "Next PAMT op")
        self.action_buttons = [self.step_button, self.run_button, self.reset_button]
        for b in self.action_buttons:
            b.layout = widgets.Layout(width="80px")
        self.counter = widgets.Label("step 0")
        self.status = widgets.HTML()
        self.status.add_class("tdxedu-status")
        self.message = widgets.HTML()
        self.message.add_class("tdxedu-message")
        self.step_help = widgets.HTML()  # what one Step is, for the source loaded
        self.step_help.add_class("tdxedu-step-help")
        self.step_button.on_click(self._guard(lambda _b: self.step()))
        self.run_button.on_click(self._guard(lambda _b: self.run()))
        self.reset_button.on_click(self._guard(lambda _b: self.reset()))
        for w in self.controls.values():
            w.observe(self._guard(lambda _change: self.rebuild()), names="value")
        self.images: dict[str, widgets.Image] = {}
        self.picture_box = widgets.VBox()
        self.widget = widgets.VBox([
            saved_view_style(), self.heading,
            widgets.HBox(list(self.controls.values()),
                         layout=widgets.Layout(flex_flow="row wrap")),
            widgets.HBox([self.step_button, self.run_button, self.reset_button, self.counter]),
            self.step_help, self.status, self.message, self.picture_box])
        self._fixed_panels = panels
        if make_source is not None:
            self._guard(self.rebuild)()
        else:
            self._show_status()

    # --- guarded callbacks ------------------------------------------------------------------
    def _guard(self, fn):
        @functools.wraps(fn)
        def wrapped(*args, **kw):
            try:
                self.message.value = ""
                return fn(*args, **kw)
            except Exception as exc:  # noqa: BLE001 - a widget shows misuse, never raises
                self._say(exc)
                return None
            finally:
                if self.invalid and not self.message.value:
                    self._warn(self.invalid)  # a bad setting stays in view until it is fixed
        return wrapped

    def _say(self, exc) -> None:
        self._warn(plain_message(exc))

    def _warn(self, text: str) -> None:
        self.errors.append(text)
        self.message.value = f"<span style='color:#b35806'>&#9888; {_esc(text)}</span>"

    def _set_invalid(self, text: str) -> None:
        """A setting the model refuses: say so, drop the old run (its pictures would show a
        TD the settings no longer describe) and disable the buttons until it is fixed."""
        self.invalid = text
        self.source = None
        self.last = None
        for b in self.action_buttons:
            b.disabled = True
        for img in self.images.values():
            img.value = b""
        self._keys = {}
        self._show_status()

    # --- actions ----------------------------------------------------------------------------
    def rebuild(self) -> None:
        """Build a new source from the current control values. A value the model refuses
        keeps its warning and disables Step / Run / Reset until a good value replaces it."""
        values = {k: w.value for k, w in self.controls.items()}
        try:
            source = self.make_source(**values)
        except Exception as exc:  # noqa: BLE001 - any refusal: never keep the old run on screen
            self._set_invalid(f"{plain_message(exc)} (Step and Run wait until this is fixed)")
            return
        self.invalid = ""
        for b in self.action_buttons:
            b.disabled = False
        self.load(source)

    def load(self, source) -> None:
        """Drive `source` from now on (the Explorer loads witness replays this way)."""
        self.source = source
        self.last = None
        names = self._fixed_panels or source.panels
        if list(self.images) != list(names):
            self.images = {n: picture() for n in names}
            for n, img in self.images.items():
                img.add_class(f"tdxedu-panel-{n}")
            self.picture_box.children = tuple(self.images.values())
            self._keys = {}
        self._redraw()

    def _need_source(self):
        if self.invalid:
            raise Finished(self.invalid)
        if self.source is None:
            raise Finished("nothing to step yet: " + (
                "fix the settings above" if self.make_source else "load a run first"))
        return self.source

    def step(self) -> None:
        src = self._need_source()
        self.last = src.step()
        self._redraw()

    def run(self) -> None:
        src = self._need_source()
        if src.done:
            raise Finished("the run is over: press Reset to start again")
        for _ in range(self.run_limit):
            if src.done:
                break
            self.last = src.step()
        self._redraw()

    def reset(self) -> None:
        src = self._need_source()
        src.reset()
        self.last = None
        self._redraw()

    # --- display ----------------------------------------------------------------------------
    def status_text(self) -> str:
        """The status line as plain text (what the HTML shows, without markup)."""
        src = self.source
        if self.invalid:
            return "Fix the setting above to start a run."
        if src is None:
            return "No run loaded."
        info = self.last
        if info is None:
            return f"Ready: {src.title}. Press Step."
        return f"Step {info.n}: {info.describe()}"

    def _show_status(self) -> None:
        src, info = self.source, self.last
        step_is = getattr(src, "STEP_IS", "")
        self.step_help.value = (f"<small><b>One Step:</b> <i>{_esc(step_is)}</i></small>"
                                if step_is else "")
        self.step_button.tooltip = f"One Step: {step_is}" if step_is else "one step"
        n = 0 if src is None else src.n
        self.counter.value = f"step {n}" + (" (finished)" if src is not None and src.done
                                            else "")
        parts = [_esc(self.status_text())]
        if info is not None and info.chain:
            chain = " &rarr; ".join(f"<code>{_esc(f.name)}</code>" for f in info.chain)
            inner = info.chain[-1]
            parts.append(f"<small>issued by {chain} <i>({_esc(inner.source)})</i></small>")
            if inner.why:
                parts.append(f"<details><summary><small>why?</small></summary><small>"
                             f"{_esc(inner.why)}</small></details>")
        if info is not None and len(info.events) > 1:
            parts.append(events_details(info))
        if info is not None and info.note and info.note != "finished":
            parts.append(f"<small><b>{_esc(info.note)}</b></small>")
        main = None if info is None else info.main
        if main is not None and main.source:
            parts.append(f"<small>source: {_esc(main.source)}</small>")
        if src is not None and src.done:
            parts.append("<pre style='font-size:11px;line-height:1.2'>"
                         f"{_esc(src.summary())}</pre>")
        self.status.value = "<br>".join(parts)

    def _redraw(self) -> None:
        self._show_status()
        if self.source is None:
            return
        for name, img in self.images.items():
            key, build = PANELS[name](self.source, self.last)
            if self._keys.get(name) == key:
                continue
            if name in SHARED_KEYS and self.render is figure_png:
                # the key is the whole picture (e.g. the lifecycle state): share across widgets
                png = _SHARED_PNG.get((name, key))
                if png is None:
                    png = _SHARED_PNG[(name, key)] = self.render(build())
                img.value = png
            else:
                img.value = self.render(build())
            fit_picture(img)
            self._keys[name] = key

    def _repr_mimebundle_(self, **kw):
        title = self.source.title if self.source else "-"
        return mimebundle(self.widget, f"tdxedu Stepper: {title}", **kw)


EVENTS_SHOWN = 20


def events_details(info: StepInfo, limit: int = EVENTS_SHOWN) -> str:
    """A collapsed list of every event of a Step, whose count matches the status line's
    ("this Step: 6 events ..."): all of them, or the first `limit` and how many more."""
    rows = [e.to_text() for e in info.events[:limit]]
    more = len(info.events) - len(rows)
    if more:
        rows.append(f"... and {more} more (the timeline shows them all)")
    return (f"<details><summary><small>the {len(info.events)} events of this Step"
            "</small></summary><pre style='font-size:11px;line-height:1.2;margin:0'>"
            + _esc("\n".join(rows)) + "</pre></details>")


# --- builders: one line in a notebook ---------------------------------------------------------
def td_life_stepper(memory: str = "64K", vcpus: int = 2, strategy: str = "v6.16", *,
                    phases=("build", "teardown"), panels=None) -> Stepper:
    """A TD's life (build and/or teardown) through KVM's code, one SEAMCALL per Step, with
    pickers for the teardown strategy, the memory size and the vCPU count."""
    controls = {
        "strategy": widgets.Dropdown(options=list(TEARDOWN_POLICIES), value=strategy,
                                     description="teardown"),
        "memory": widgets.Text(value=str(memory), description="memory",
                               continuous_update=False),
        "vcpus": widgets.IntText(value=vcpus, description="vCPUs"),
    }
    phases = tuple(phases)

    def make(strategy, memory, vcpus):
        return TdLifeSource(memory, vcpus, strategy, phases=phases)

    return Stepper(make, controls=controls, panels=panels,
                   title="A TD's life: " + " then ".join(phases))


def teardown_stepper(memory: str = "64K", vcpus: int = 2, strategy: str = "v6.16",
                     panels=None) -> Stepper:
    return td_life_stepper(memory, vcpus, strategy, phases=("teardown",), panels=panels)


def scenario_stepper(scenario: str = "busy-accept-kick-retry-once", seed: int = 0,
                     script: str = "", *, scenarios=None, panels=None) -> Stepper:
    """An explorer scenario run by a seed, or by a script of actor names (comma separated;
    the seed decides once the script runs out)."""
    from ..scenarios import registry

    names = sorted(scenarios or registry.load_all())
    controls = {
        "scenario": widgets.Dropdown(options=names, value=scenario, description="scenario"),
        "seed": widgets.IntText(value=seed, description="seed"),
        "script": widgets.Text(value=script, description="script", continuous_update=False,
                               placeholder="actor names, e.g. zap, vcpu0"),
    }

    def make(scenario, seed, script):
        return ExplorerSource(scenario, seed=seed, script=script)

    return Stepper(make, controls=controls, panels=panels, title="Run a scenario step by step")


ROOTS_KINDS = ("smm-storm", "memslot-update", "vm-destroy", "last-put-race",
               "memslot-update-td", "vm-destroy-td")


def roots_policies(scenario: str) -> list[str]:
    """The kernel-version policies registered for a roots scenario kind (`roots-<kind>-<p>`,
    `tdxedu.scenarios.roots`): the TD kinds exist only for kernels with TDX (v6.16)."""
    from ..kvm.mmu_role import POLICIES
    from ..scenarios.registry import SCENARIOS, load_all

    load_all()
    return [p for p in POLICIES if f"roots-{scenario}-{p}" in SCENARIOS]


def roots_stepper(scenario: str = "memslot-update", policy: str | None = "v6.6", seed: int = 0,
                  panels=None) -> Stepper:
    """A TDP MMU roots scenario under a kernel-version policy. The policy picker offers only
    the policies the scenario has; a policy it lacks (v6.6 for a TD scenario) becomes its
    newest one."""
    from ..steps import roots_source

    if scenario not in ROOTS_KINDS:
        raise ValueError(f"unknown roots scenario {scenario!r}; choose from "
                         f"{', '.join(ROOTS_KINDS)}")
    offered = roots_policies(scenario)
    pick = widgets.Dropdown(options=list(ROOTS_KINDS), value=scenario, description="scenario")
    policy_dd = widgets.Dropdown(options=offered,
                                 value=policy if policy in offered else offered[-1],
                                 description="policy")

    def follow(change):  # registered before the Stepper's own observer: runs first
        now = roots_policies(change["new"])
        keep = policy_dd.value if policy_dd.value in now else now[-1]
        if list(policy_dd.options) != now:
            policy_dd.options = now  # ipywidgets picks the first option here
        policy_dd.value = keep

    pick.observe(follow, names="value")
    controls = {"scenario": pick, "policy": policy_dd,
                "seed": widgets.IntText(value=seed, description="seed")}
    return Stepper(lambda scenario, policy, seed: roots_source(scenario, policy, seed=seed),
                   controls=controls, panels=panels, title="TDP MMU roots")


BUILD_PRESETS = {
    "KVM's order": ", ".join(KVM_BUILD_ORDER),
    "MNG.INIT before KEY.CONFIG": "tdh_mng_create, tdh_mng_addcx, tdh_mng_init, "
                                  "tdh_mng_key_config",
    "VP.CREATE before MNG.INIT": "tdh_mng_create, tdh_mng_key_config, tdh_mng_addcx, "
                                 "tdh_vp_create, tdh_mng_init",
    "VP.ENTER before MR.FINALIZE": "tdh_mng_create, tdh_mng_key_config, tdh_mng_addcx, "
                                   "tdh_mng_init, tdh_vp_create, tdh_vp_addcx, tdh_vp_init, "
                                   "tdh_vp_enter",
    # MR.FINALIZE needs an initialised vCPU (module tdh_mr_finalize.c: TDX_NO_VCPUS)
    "PAGE.ADD after MR.FINALIZE": "tdh_mng_create, tdh_mng_key_config, tdh_mng_addcx, "
                                  "tdh_mng_init, tdh_vp_create, tdh_vp_addcx, tdh_vp_init, "
                                  "tdh_mem_sept_add, tdh_mr_finalize, tdh_mem_page_add",
    "reclaim the TDR first": "tdh_mng_create, tdh_mng_key_config, tdh_mng_addcx, "
                             "tdh_mng_init, tdh_phymem_page_reclaim",
    # FREEID before VPFLUSHDONE, then before CACHE.WB: two different refusals (lesson 01)
    "free the HKID too early": "tdh_mng_create, tdh_mng_key_config, tdh_mng_addcx, "
                               "tdh_mng_init, tdh_mng_key_freeid, tdh_mng_vpflushdone, "
                               "tdh_mng_key_freeid, tdh_phymem_cache_wb, tdh_mng_key_freeid",
}


def _preset_controls(presets: dict, default: str):
    preset = fit_dropdown(widgets.Dropdown(options=list(presets), value=default,
                                           description="order"))
    text = widgets.Text(value=presets[default], description="or type",
                        continuous_update=False, layout=widgets.Layout(width="95%"))

    def follow(change):
        text.value = presets[change["new"]]

    preset.observe(follow, names="value")
    return preset, text


def seamcall_stepper(order: str = "KVM's order", *, panels=None) -> Stepper:
    """SEAMCALLs in an order you pick (a preset) or type (comma separated wrapper names)."""
    preset, text = _preset_controls(BUILD_PRESETS, order)
    st = Stepper(lambda calls: SeamcallScriptSource(calls), controls={"calls": text},
                 panels=panels, title="SEAMCALLs in your order")
    st.widget.children = (st.widget.children[0], preset) + st.widget.children[1:]
    st.preset = preset
    return st


REMOVAL_PRESETS = {
    "KVM 6.16: block, track, kick, remove": ", ".join(KVM_REMOVAL),
    "no BLOCK": "track, kick, remove",
    "no TRACK": "block, kick, remove",
    "no kick": "block, track, remove",
    "kick before TRACK": "block, kick, reenter, track, remove",
    "TRACK twice, no kick": "block, track, track",
    "kick, vCPUs re-enter, then remove": "block, track, kick, reenter, remove, wbinvd",
}


def removal_stepper(order: str = "KVM 6.16: block, track, kick, remove", vcpus: int = 2, *,
                    panels=None) -> Stepper:
    """Remove one private page from a running TD with the operations in your order."""
    preset, text = _preset_controls(REMOVAL_PRESETS, order)
    controls = {"ops": text, "vcpus": widgets.IntText(value=vcpus, description="vCPUs")}
    st = Stepper(lambda ops, vcpus: RemovalSource(ops, vcpus=vcpus), controls=controls,
                 panels=panels, title="Remove one private page from a running TD")
    st.widget.children = (st.widget.children[0], preset) + st.widget.children[1:]
    st.preset = preset
    return st
