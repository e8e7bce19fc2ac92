"""Structural uncertainty: several model forms that each fit the four published rows
([AH-RFC]) and differ in how the runtime path scales. The band of a prediction is the envelope
over forms x priors x measurement jitter, so it is narrow inside the measured range and opens
up where the forms disagree: far from 4..32 vCPUs and 18..107 GiB.

Four rows identify three numbers per form. The runtime rows differ in vCPUs (4, 32) *and* in
size (18, 107 GiB), so "the kick grows with vCPUs" and "each page costs more in a bigger TD"
explain the same two numbers: the forms below are the readings the data cannot tell apart.

* ``linear-kick``: the central model (`model.py`). After every TDH.MEM.TRACK KVM requests
  KVM_REQ_OUTSIDE_GUEST_MODE from every vCPU (`tdx_track`, [K616]); the request loop visits
  each vCPU once (`kvm_make_all_cpus_request`, [K-KICK]), so the cost is linear in vCPUs.
* ``superlinear-kick``: the same kick, but the per-vCPU cost grows with the vCPU count
  (cost ~ V^2, normalised at 4 vCPUs): when vCPUs are in guest mode the requester IPIs every
  one and waits for all acknowledgements ([K-KICK] `kvm_kick_many_cpus` with wait), and the
  acknowledgements contend on the same lines. Pessimistic; the data cannot exclude it.
* ``size-growth``: no vCPU term; each removed page costs more in a bigger TD, by a fitted
  amount per doubling above 18 GiB. BLOCK and REMOVE walk the Secure EPT ([M15]) and touch
  the page's 16-byte PAMT entry ([M15-PAMT]): 8 + 16 bytes per 4 KiB page is ~108 MiB for an
  18 GiB TD, about the 105 MB last-level cache of a Xeon 8480+ ([XEON-SPR]), and ~640 MiB for
  107 GiB, so the bigger TD's walks miss in the LLC (and the TLB) where the smaller one's
  mostly hit. The reclaim path touches only the PAMT and its measured per-page cost does not
  grow (4.8-5.1 us), so it stays flat in this form.
* ``cross-package``: the linear kick, but the 32-vCPU rows ran on two packages (16 vCPUs
  remote): [AH-RFC] does not state the hosts' packages, and a kick that crosses packages pays
  an inter-socket round trip ([K-KICK]; factor 1..3 of a local kick, a prior).

Each form is fitted as `model.py` fits the central one: weighted non-negative least squares,
then an ensemble with the priors drawn over their ranges and the measurements jittered by
+-10%, keeping the members that reproduce every training row within 10%. When the training
rows cannot identify a form (e.g. fitting on the 4-vCPU pair only), the members spread over
every non-negative fit that is equally good (random convex combinations of the optimal
vertices), so the band shows what the data leaves open instead of one arbitrary answer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ..tdx.pamt import PAGE_SHIFT
from .counts import Workload, workload
from .model import TOLERANCE, Measurement, load_measurements, terms
from .params import DEFAULT_PARAMS

V_REF = 4  # vCPUs: the superlinear kick is normalised at the smallest measured TD
GIB_PAGES = (1 << 30) >> PAGE_SHIFT
SIZE_REF_PAGES = 18 * GIB_PAGES  # size-growth starts above the smallest measured TD
TIE = 1e-4  # residuals closer than this (relative) are equally good fits
AGREE = 0.02  # edges within 2% of each other: no form "sets" the edge
ALL_AGREE = "all forms agree"
SIZE_GROWTH_LABEL = "size growth (S-EPT/PAMT working set)"


@dataclass(frozen=True)
class Form:
    """One reading of the data: which parameters it fits and how the runtime path scales."""

    name: str
    fitted: tuple[str, ...]
    argument: str  # the physical argument, one line
    sources: tuple[str, ...]  # [TAG]s in tdxedu/sources.py
    kick_exponent: float = 1.0
    size_growth: bool = False
    remote_measured: bool = False  # the 32-vCPU rows ran on two packages
    priors: dict = field(default_factory=dict)  # name -> (low, high, central) overrides

    def prior_range(self, name: str) -> tuple[float, float, float]:
        p = DEFAULT_PARAMS[name]
        return self.priors.get(name, (p.low, p.high, p.value))

    def measured_workload(self, m: Measurement) -> Workload:
        packages = 2 if self.remote_measured and m.vcpus > 16 else m.packages
        return workload(m.pages, m.vcpus, m.strategy, packages=packages,
                        clear_pages=m.clear_pages)


FITTED3 = ("runtime_chain", "kick_per_vcpu", "reclaim")
FORMS: tuple[Form, ...] = (
    Form("linear-kick", FITTED3,
         "the kick after each TRACK visits every vCPU once: cost linear in vCPUs",
         ("K616", "K-KICK")),
    Form("superlinear-kick", FITTED3,
         "vCPUs in guest mode are IPI'd and waited for; acknowledgements contend: cost ~ V^2",
         ("K-KICK",), kick_exponent=2.0),
    Form("size-growth", ("runtime_chain", "size_growth", "reclaim"),
         "S-EPT walk and PAMT entries outgrow the LLC/TLB: per-page cost grows per doubling "
         "of TD size",
         ("M15", "M15-PAMT", "XEON-SPR"), size_growth=True),
    Form("cross-package", FITTED3,
         "the 32-vCPU rows spanned two packages: remote kicks cost 1-3x a local one",
         ("K-KICK", "AH-RFC"), remote_measured=True,
         priors={"xpkg_kick_factor": (1.0, 3.0, 2.0)}),
)
FORM_NAMES = tuple(f.name for f in FORMS)
PARAM_NAMES = (*DEFAULT_PARAMS, "size_growth")


def form_named(name: str) -> Form:
    for f in FORMS:
        if f.name == name:
            return f
    raise ValueError(f"unknown model form {name!r}; allowed: {', '.join(FORM_NAMES)}")


def size_doublings(pages) -> float:
    """log2(pages / 18 GiB), 0 below it: how many doublings past the smallest measured TD."""
    return max(0.0, float(np.log2(max(pages, 1) / SIZE_REF_PAGES)))


def form_terms(form: Form, w: Workload, p: dict) -> dict:
    """`model.terms` priced under `form` (values may be arrays over an ensemble)."""
    out = terms(w, p)
    if form.kick_exponent != 1.0:
        out["kick all vCPUs"] = out["kick all vCPUs"] * (w.vcpus / V_REF) ** (
            form.kick_exponent - 1)
    removed = w.counts.get("tdh_mem_page_remove", 0)
    out[SIZE_GROWTH_LABEL] = p.get("size_growth", 0.0) * removed * size_doublings(w.pages) \
        if form.size_growth else 0.0 * p["reclaim"]
    return out


def form_total(form: Form, w: Workload, p: dict):
    return sum(form_terms(form, w, p).values())


# --- fitting (batched over ensemble members) -------------------------------------------------

def _design(form: Form, works: list[Workload], prior: dict) -> tuple[np.ndarray, np.ndarray]:
    """(A, fixed): total = A @ theta + fixed for each row; `prior` values are arrays over
    members, so A is (members, rows, fitted) and fixed is (members, rows)."""
    zero = {**prior, **dict.fromkeys(form.fitted, 0.0)}
    fixed = np.stack([np.broadcast_to(form_total(form, w, zero), prior["reclaim"].shape)
                      for w in works], axis=-1)
    cols = []
    for name in form.fitted:
        unit = {**zero, name: 1.0}
        cols.append(np.stack([np.broadcast_to(form_total(form, w, unit), fixed.shape[:-1])
                              for w in works], axis=-1) - fixed)
    return np.stack(cols, axis=-1), fixed


def batched_nnls(A: np.ndarray, b: np.ndarray, rng: np.random.Generator | None = None):
    """min ||A x - b||, x >= 0, for a stack of small problems A (m, r, k), b (m, r).

    The optimum is the least-squares solution on some support with non-negative
    coefficients, so every support (2^k of them, k <= 3 here) is tried at once. When several
    supports are equally optimal (the rows do not identify every parameter), the answer is
    a random convex combination of them (`rng`), or their mean without one: every such point
    is an optimum too (the optimal set is convex). "Equally" means within `TIE` of the
    right-hand side's norm: a few unrelated pages (control pages, one WBINVD) make the columns
    only nearly dependent, and a 0.01% better residual is no evidence at 1% precision."""
    m, r, k = A.shape
    best_res = np.linalg.norm(b, axis=1)  # the empty support: x = 0
    sols, ress = [np.zeros((m, k))], [best_res]
    for n in range(1, k + 1):
        for support in itertools.combinations(range(k), n):
            sub = A[:, :, support]
            z = np.einsum("mkr,mr->mk", np.linalg.pinv(sub), b)
            x = np.zeros((m, k))
            x[:, support] = z
            res = np.linalg.norm(np.einsum("mrk,mk->mr", A, x) - b, axis=1)
            ok = (z >= -1e-15).all(axis=1)
            x = np.clip(x, 0.0, None)
            res = np.where(ok, res, np.inf)
            sols.append(x)
            ress.append(res)
            best_res = np.minimum(best_res, res)
    sols, ress = np.stack(sols, axis=1), np.stack(ress, axis=1)  # (m, supports, k), (m, s)
    scale = np.linalg.norm(b, axis=1) + 1e-300
    tied = ress <= best_res[:, None] + TIE * scale[:, None]
    if rng is None:
        wgt = tied.astype(float)
    else:
        wgt = rng.exponential(size=tied.shape) * tied  # Dirichlet(1) over the tied vertices
    wgt /= wgt.sum(axis=1, keepdims=True)
    return np.einsum("ms,msk->mk", wgt, sols)


@dataclass
class FormFit:
    form: Form
    central: dict[str, float]
    ensemble: dict[str, np.ndarray]  # parameter -> values per accepted member
    tried: int

    @property
    def members(self) -> int:
        return len(self.ensemble["reclaim"])

    def total(self, w: Workload, central: bool = False):
        return form_total(self.form, w, self.central if central else self.ensemble)


def _draw_priors(form: Form, rng, n: int) -> dict[str, np.ndarray]:
    out = {}
    for name, p in DEFAULT_PARAMS.items():
        if p.kind == "prior":
            lo, hi, _ = form.prior_range(name)
            out[name] = rng.uniform(lo, hi, n)
        else:
            out[name] = np.zeros(n)
    out["size_growth"] = np.zeros(n)
    return out


def fit_form(form: Form, measurements: list[Measurement], *, samples: int = 400,
             seed: int = 0) -> FormFit:
    """Central fit (priors at their central values) and the accepted ensemble of `form`."""
    works = [form.measured_workload(m) for m in measurements]
    t = np.array([m.seconds for m in measurements])
    central = {n: np.array([form.prior_range(n)[2] if p.kind == "prior" else 0.0])
               for n, p in DEFAULT_PARAMS.items()}
    central["size_growth"] = np.array([0.0])
    A, fixed = _design(form, works, central)
    theta = batched_nnls(A / t[:, None], (t - fixed) / t)[0]
    cen = {n: float(v[0]) for n, v in central.items()}
    cen.update(zip(form.fitted, map(float, theta), strict=True))

    rng = np.random.default_rng(seed)
    prior = _draw_priors(form, rng, samples)
    jit = t * rng.uniform(1 - TOLERANCE, 1 + TOLERANCE, (samples, len(t)))
    A, fixed = _design(form, works, prior)
    th = batched_nnls(A / jit[:, :, None], (jit - fixed) / jit, rng)
    for j, name in enumerate(form.fitted):
        prior[name] = th[:, j]
    fits = np.stack([np.broadcast_to(form_total(form, w, prior), (samples,)) for w in works],
                    axis=-1)
    keep = np.all(np.abs(fits / t - 1) <= TOLERANCE + 1e-12, axis=1)
    ens = {n: np.concatenate([[cen[n]], v[keep]]) for n, v in prior.items()}
    cen_fit = np.array([form_total(form, w, cen) for w in works])
    if not np.all(np.abs(cen_fit / t - 1) <= TOLERANCE + 1e-12):  # keep the band honest
        ens = {n: v[1:] for n, v in ens.items()} if keep.any() else ens
    return FormFit(form, cen, ens, samples + 1)


# --- the structural ensemble and its envelope -------------------------------------------------

@dataclass
class Structural:
    fits: dict[str, FormFit]
    measurements: list[Measurement]

    @property
    def measured_range(self) -> dict[str, tuple[float, float]]:
        v = [m.vcpus for m in self.measurements]
        g = [m.td_gib for m in self.measurements]
        p = [m.packages for m in self.measurements]
        return {"vcpus": (min(v), max(v)), "memory_gib": (min(g), max(g)),
                "packages": (min(p), max(p))}

    def extrapolation(self, w: Workload) -> dict[str, list[float]]:
        """{dimension: [query, nearest measured bound]} for every dimension outside the
        measured range (empty inside it)."""
        q = {"vcpus": w.vcpus, "memory_gib": round((w.pages << PAGE_SHIFT) / (1 << 30), 3),
             "packages": w.packages}
        out = {}
        for k, (lo, hi) in self.measured_range.items():
            if q[k] > hi:
                out[k] = [q[k], hi]
            elif q[k] < lo:
                out[k] = [q[k], lo]
        if w.dynamic_pamt:  # [AH-RFC] measured static PAMT: DPAMT's costs are priors only
            out["dynamic_pamt"] = [True, False]
        return out

    def describe(self) -> str:
        """Each form's fitted values (central) and how many ensemble members it kept."""
        lines = [f"{'model form':<18} {'fitted (central)':<75} members  sources"]
        for name, f in self.fits.items():
            vals = ", ".join(f"{n} {f.central[n] * 1e6:.3f} us"
                             + ("/doubling" if n == "size_growth" else "")
                             for n in f.form.fitted)
            lines.append(f"{name:<18} {vals:<75} {f.members:>3}/{f.tried:<4} "
                         f"[{'] ['.join(f.form.sources)}]")
        return "\n".join(lines)

    def per_form(self, w: Workload) -> dict[str, tuple[float, float]]:
        out = {}
        for name, f in self.fits.items():
            v = np.atleast_1d(f.total(w))
            out[name] = (float(v.min()), float(v.max()))
        return out

    def envelope(self, w: Workload) -> dict:
        """The band over every form's ensemble, which form sets each edge, and whether the
        query extrapolates."""
        pf = self.per_form(w)
        lo_form = min(pf, key=lambda n: pf[n][0])
        hi_form = max(pf, key=lambda n: pf[n][1])
        lo, hi = pf[lo_form][0], pf[hi_form][1]
        if all(b[1] >= hi * (1 - AGREE) for b in pf.values()):
            hi_form = ALL_AGREE
        if all(b[0] <= lo * (1 + AGREE) for b in pf.values()):
            lo_form = ALL_AGREE
        return {"band_seconds": [lo, hi], "upper_edge_form": hi_form,
                "lower_edge_form": lo_form,
                "per_form_seconds": {n: list(b) for n, b in pf.items()},
                "extrapolation": self.extrapolation(w)}


def structural(measurements: list[Measurement] | None = None, *, forms=FORMS,
               samples: int = 400, seed: int = 0) -> Structural:
    ms = measurements if measurements is not None else load_measurements()
    return Structural({f.name: fit_form(f, ms, samples=samples, seed=seed + i)
                       for i, f in enumerate(forms)}, ms)


_STRUCTURAL: Structural | None = None


def default_structural() -> Structural:
    """Every form fitted to all four rows (computed once)."""
    global _STRUCTURAL
    if _STRUCTURAL is None:
        _STRUCTURAL = structural()
    return _STRUCTURAL


_FOR_MEASUREMENTS: dict[tuple, Structural] = {}


def structural_for(measurements: list[Measurement]) -> Structural:
    """The forms fitted to `measurements` (a calibration's own rows), computed once per set:
    a band must come from the same data as the central value it surrounds."""
    key = tuple(measurements)
    if key == tuple(load_measurements()):
        return default_structural()
    if key not in _FOR_MEASUREMENTS:
        _FOR_MEASUREMENTS[key] = structural(measurements)
    return _FOR_MEASUREMENTS[key]


__all__ = ["Form", "FORMS", "structural_for", "FORM_NAMES", "form_named", "form_terms",
           "form_total",
           "fit_form", "FormFit", "Structural", "structural", "default_structural",
           "batched_nnls", "size_doublings"]
