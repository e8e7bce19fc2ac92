"""How far to trust the cost model: predict published rows it was not fitted to.

* leave-one-out: fit every form on three of the four rows of [AH-RFC], predict the fourth;
* "4 -> 32 vCPUs": fit on the 4-vCPU pair only (18 GiB), predict the 32-vCPU pair (107 GiB):
  the extrapolation a reader of a small measurement makes.

Each held-out row gets the central model's prediction (the ``linear-kick`` form), its error,
every form's central prediction, and the structural band (`forms.Structural`) with whether
the measurement falls inside it. A fit on the 4-vCPU pair cannot tell a per-vCPU kick from a
per-page cost (one runtime row, two unknowns): its ensemble spreads over every equally good
split, which is what the band then shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .forms import FORMS, structural
from .model import Measurement, load_measurements

CENTRAL_FORM = "linear-kick"


@dataclass
class Held:
    """One held-out measurement and what the model fitted without it says."""

    split: str
    measurement: Measurement
    predicted: float  # central form, central parameters
    band: tuple[float, float]
    per_form: dict[str, float]  # each form's central prediction

    @property
    def error(self) -> float:
        return self.predicted / self.measurement.seconds - 1

    @property
    def inside(self) -> bool:
        return self.band[0] <= self.measurement.seconds <= self.band[1]

    def to_dict(self) -> dict:
        m = self.measurement
        return {"split": self.split, "vcpus": m.vcpus, "memory_gib": m.td_gib,
                "path": m.path, "strategy": m.strategy, "measured_seconds": m.seconds,
                "predicted_seconds": self.predicted, "error": self.error,
                "band_seconds": list(self.band), "inside_band": self.inside,
                "per_form_seconds": self.per_form,
                "per_form_error": {k: v / m.seconds - 1 for k, v in self.per_form.items()}}


def _label(m: Measurement) -> str:
    return f"{m.vcpus} vCPUs {m.td_gib:g} GiB {m.strategy}"


def splits(ms: list[Measurement]) -> list[tuple[str, list[Measurement], list[Measurement]]]:
    out = [(f"leave out {_label(m)}", [x for x in ms if x is not m], [m]) for m in ms]
    small = [m for m in ms if m.vcpus == min(x.vcpus for x in ms)]
    big = [m for m in ms if m not in small]
    out.append((f"fit on {small[0].vcpus} vCPUs, predict {big[0].vcpus} vCPUs", small, big))
    return out


def held_out(split: str, train: list[Measurement], test: list[Measurement], *,
             samples: int = 400, seed: int = 0) -> list[Held]:
    s = structural(train, samples=samples, seed=seed)
    out = []
    for m in test:
        per_form, lo, hi = {}, np.inf, -np.inf
        for f in FORMS:
            fit = s.fits[f.name]
            w = f.measured_workload(m)
            per_form[f.name] = float(fit.total(w, central=True))
            ens = np.atleast_1d(fit.total(w))
            lo, hi = min(lo, float(ens.min())), max(hi, float(ens.max()))
        c = per_form[CENTRAL_FORM]
        out.append(Held(split, m, c, (min(lo, c), max(hi, c)), per_form))
    return out


def validate(measurements: list[Measurement] | None = None, *, samples: int = 400,
             seed: int = 0) -> list[Held]:
    """Every split's held-out rows (leave-one-out first, then 4 -> 32 vCPUs)."""
    ms = measurements if measurements is not None else load_measurements()
    return [h for name, train, test in splits(ms)
            for h in held_out(name, train, test, samples=samples, seed=seed)]


SHORT = {"linear-kick": "linear", "superlinear-kick": "superlin", "size-growth": "size",
         "cross-package": "x-pkg"}


def describe(rows: list[Held]) -> str:
    forms = [f.name for f in FORMS]
    lines = ["Held-out rows of [AH-RFC]: fitted without the row, then asked to predict it.",
             f"{'held out':<32} {'measured':>8} {'model':>7} {'error':>7} {'band (s)':>14} "
             f"{'in?':>3}  error per form: " + " ".join(f"{SHORT.get(n, n):>8}" for n in forms)]
    split = None
    for h in rows:
        if h.split != split:
            split = h.split
            if split.startswith("fit on"):
                lines.append(f"-- {split} (the 32-vCPU pair never seen):")
        m = h.measurement
        lo, hi = h.band
        lines.append(
            f"{_label(m):<32} {m.seconds:>7.0f}s {h.predicted:>6.0f}s {h.error:>+7.0%} "
            f"{lo:>6.0f}..{hi:<6.0f} {'yes' if h.inside else 'NO':>3}  {'':16}"
            + " ".join(f"{h.per_form[n] / m.seconds - 1:>+8.0%}" for n in forms))
    worst = max(rows, key=lambda h: abs(h.error))
    lines.append(f"largest error of the central model: {worst.error:+.0%} "
                 f"({_label(worst.measurement)}, {worst.split})")
    return "\n".join(lines)


__all__ = ["Held", "validate", "describe", "splits", "held_out", "CENTRAL_FORM"]
