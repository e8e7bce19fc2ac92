"""Price a teardown workload, fit the free parameters to the measurements, predict with a
band. See `params.py` for every parameter's meaning and source.

Model (the per-page and per-TD steps of `tdxedu.kvm.teardown`, [K616], priced):

    T = runtime_chain * sum_leaf(share_leaf * n_leaf)           BLOCK, TRACK, REMOVE, WBINVD
      + kick_per_vcpu * kicks * (V_local + (1 + xpkg) * V_remote) all-vCPU kick after TRACK
      + reclaim * n_RECLAIM + clear * pages_cleared
      + vp_flush * n_VP.FLUSH + vpflushdone + cache_wb * n_CACHE.WB + key_freeid + fixed
      + pamt_remove * n_PAMT.REMOVE + pamt_put * puts             Dynamic PAMT host only

`calibrate()` solves the three fitted parameters by weighted non-negative least squares
(relative residuals) with the priors at their central values, then builds an ensemble: priors
drawn over their ranges and the measurements jittered by up to +-10%, refitted, and kept only
if the refit still reproduces all four original measurements within 10%. The band of a
prediction is the min..max over that ensemble and over every other model form's (`forms.py`:
structural uncertainty), so it widens where the forms disagree.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..tdx.pamt import PAGE_SHIFT
from .counts import Workload, workload
from .params import DEFAULT_PARAMS, RUNTIME_SPLIT, Param

CALIBRATION_CSV = Path(__file__).with_name("calibration.csv")
FITTED = tuple(n for n, p in DEFAULT_PARAMS.items() if p.kind == "fitted")
PRIORS = tuple(n for n, p in DEFAULT_PARAMS.items() if p.kind == "prior")
TOLERANCE = 0.10  # every ensemble member reproduces every measurement within 10%

OPS = {  # breakdown label -> what it prices
    "tdh_mem_range_block": "runtime chain share", "tdh_mem_track": "runtime chain share",
    "tdh_mem_page_remove": "runtime chain share", "tdh_phymem_page_wbinvd": "runtime chain share",
    "kick all vCPUs": "kvm_make_all_cpus_request after each TRACK",
    "tdh_phymem_page_reclaim": "PAGE.RECLAIM + tdx_reclaim_page",
    "page clear (MOVDIR64B)": "tdx_clear_page", "tdh_vp_flush (+IPI)": "per vCPU",
    "tdh_mng_vpflushdone": "once", "tdh_phymem_cache_wb": "per package",
    "tdh_mng_key_freeid": "once", "fixed (not modelled)": "once",
    "tdh_phymem_pamt_remove": "DPAMT: per 2 MB range emptied",
    "tdx_pamt_put (DPAMT refcount)": "DPAMT: per page given back",
}


PARAM_OF = {**dict.fromkeys(RUNTIME_SPLIT, "runtime_chain"), "kick all vCPUs": "kick_per_vcpu",
            "tdh_phymem_page_reclaim": "reclaim", "page clear (MOVDIR64B)": "clear",
            "tdh_vp_flush (+IPI)": "vp_flush", "tdh_mng_vpflushdone": "vpflushdone",
            "tdh_phymem_cache_wb": "cache_wb", "tdh_mng_key_freeid": "key_freeid",
            "fixed (not modelled)": "fixed", "tdh_phymem_pamt_remove": "pamt_remove",
            "tdx_pamt_put (DPAMT refcount)": "pamt_put"}


# --- pricing ------------------------------------------------------------------------------

def terms(w: Workload, p: dict) -> dict[str, float | np.ndarray]:
    """Seconds per operation. `p` maps parameter names to values (floats, or arrays for an
    ensemble: everything broadcasts)."""
    c = w.counts
    local = w.vcpus - w.remote_vcpus
    out = {leaf: p["runtime_chain"] * share * c.get(leaf, 0)
           for leaf, share in RUNTIME_SPLIT.items()}
    out["kick all vCPUs"] = p["kick_per_vcpu"] * w.kicks * (
        local + (1 + p["xpkg_kick_factor"]) * w.remote_vcpus)
    out["tdh_phymem_page_reclaim"] = p["reclaim"] * c.get("tdh_phymem_page_reclaim", 0)
    out["page clear (MOVDIR64B)"] = p["clear"] * w.cleared
    out["tdh_vp_flush (+IPI)"] = p["vp_flush"] * c.get("tdh_vp_flush", 0)
    out["tdh_mng_vpflushdone"] = p["vpflushdone"] * c.get("tdh_mng_vpflushdone", 0)
    out["tdh_phymem_cache_wb"] = p["cache_wb"] * c.get("tdh_phymem_cache_wb", 0)
    out["tdh_mng_key_freeid"] = p["key_freeid"] * c.get("tdh_mng_key_freeid", 0)
    out["tdh_phymem_pamt_remove"] = p["pamt_remove"] * c.get("tdh_phymem_pamt_remove", 0)
    out["tdx_pamt_put (DPAMT refcount)"] = p["pamt_put"] * w.pamt_puts
    out["fixed (not modelled)"] = p["fixed"] + 0 * p["reclaim"]
    return out


def total(w: Workload, p: dict):
    return sum(terms(w, p).values())


def fit_columns(w: Workload, p: dict) -> np.ndarray:
    """d(total)/d(fitted parameter): the row of the design matrix for this workload."""
    local = w.vcpus - w.remote_vcpus
    x = p["xpkg_kick_factor"]
    return np.array([
        sum(share * w.counts.get(leaf, 0) for leaf, share in RUNTIME_SPLIT.items()),
        w.kicks * (local + (1 + x) * w.remote_vcpus),
        w.counts.get("tdh_phymem_page_reclaim", 0),
    ], dtype=float)


def lock_holds(w: Workload, p: dict) -> dict[str, float]:
    """Seconds each lock is held ([K616], [TERM-V5]): guest_memfd close zaps every private
    page with mmu_lock held for write; tdx_lock covers VPFLUSHDONE .. KEY.FREEID; the
    terminate-vm flow also holds mmu_lock for write across CACHE.WB + KEY.FREEID."""
    t = terms(w, p)
    n = w.pages
    if w.runtime_path:
        zap = (p["runtime_chain"] * n + t["kick all vCPUs"]) + p["clear"] * (
            n if w.cleared else 0)
    else:
        zap = (p["reclaim"] + (p["clear"] if w.cleared else 0)) * n
    tdx = t["tdh_mng_vpflushdone"] + t["tdh_phymem_cache_wb"] + t["tdh_mng_key_freeid"]
    mmu = zap + (t["tdh_phymem_cache_wb"] + t["tdh_mng_key_freeid"]
                 if w.strategy == "terminate-vm" else 0.0)
    return {"mmu_lock (write)": float(np.max(mmu)), "tdx_lock": float(np.max(tdx))}


# --- calibration data ------------------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    vcpus: int
    td_gib: float
    path: str
    strategy: str
    seconds: float
    packages: int
    clear_pages: bool
    source: str

    @property
    def pages(self) -> int:
        return int(self.td_gib * (1 << 30)) >> PAGE_SHIFT

    def workload(self) -> Workload:
        return workload(self.pages, self.vcpus, self.strategy, packages=self.packages,
                        clear_pages=self.clear_pages)


def load_measurements(path: Path = CALIBRATION_CSV) -> list[Measurement]:
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
    return [Measurement(int(r["vcpus"]), float(r["td_gib"]), r["path"], r["strategy"],
                        float(r["seconds"]), int(r["packages"]), r["clear_pages"] == "1",
                        r["source"]) for r in rows]


# --- non-negative least squares -------------------------------------------------------------

def nnls(A: np.ndarray, b: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """min ||A x - b|| subject to x >= 0 (Lawson & Hanson active-set method; numpy only,
    scipy is not a dependency). Columns are scaled to unit norm internally."""
    A = np.asarray(A, float)
    b = np.asarray(b, float)
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    A = A / scale
    n = A.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, bool)
    for _ in range(3 * n + 10):
        g = A.T @ (b - A @ x)
        if passive.all() or g[~passive].max(initial=-np.inf) <= tol:
            break
        passive[np.argmax(np.where(passive, -np.inf, g))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if (z[passive] > tol).all():
                x = z
                break
            mask = passive & (z <= tol)
            alpha = np.min(x[mask] / (x[mask] - z[mask]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
    return x / scale


# --- calibration -------------------------------------------------------------------------------

@dataclass
class Calibration:
    params: dict[str, Param]
    measurements: list[Measurement]
    predicted: list[float]
    residuals: list[float]  # relative: predicted / measured - 1
    ensemble: dict[str, np.ndarray] = field(repr=False)  # parameter -> values per member
    tried: int = 0

    @property
    def values(self) -> dict[str, float]:
        return {n: p.value for n, p in self.params.items()}

    def describe(self) -> str:
        fmt = {"us": (1e6, "us"), "ms": (1e3, "ms"), "s": (1, "s"), "x": (1, "x")}
        lines = ["parameter          value        ensemble range         kind    prices"]
        for n, p in self.params.items():
            k, u = fmt[p.unit]
            e = self.ensemble[n]
            lines.append(f"{n:<18} {p.value * k:9.3f} {u:<2} [{e.min() * k:8.3f}, "
                         f"{e.max() * k:8.3f}] {u:<2} {p.kind:<7} {p.prices[:60]}")
        lines.append("")
        lines.append("measurement                          measured  model   residual")
        for m, pr, r in zip(self.measurements, self.predicted, self.residuals, strict=True):
            lines.append(f"{m.vcpus:>3} vCPUs {m.td_gib:>5g} GiB {m.path:<17} {m.seconds:7.0f} s "
                         f"{pr:7.1f} s {r:+7.1%}")
        lines.append(f"ensemble: {len(self.ensemble['reclaim'])} of {self.tried} parameter "
                     f"sets reproduce all {len(self.measurements)} measurements within "
                     f"{TOLERANCE:.0%}")
        return "\n".join(lines)


def _fit(rows: list[tuple[Workload, float]], prior: dict) -> np.ndarray:
    A = np.array([fit_columns(w, prior) for w, _ in rows])
    fixed_part = np.array([total(w, {**prior, **dict.fromkeys(FITTED, 0.0)}) for w, _ in rows])
    t = np.array([s for _, s in rows])
    wgt = 1.0 / t  # relative residuals: a 24 s row counts as much as a 517 s row
    return nnls(A * wgt[:, None], (t - fixed_part) * wgt)


def calibrate(measurements: list[Measurement] | None = None, *, samples: int = 400,
              seed: int = 0) -> Calibration:
    """Fit the fitted parameters (non-negative) with the priors at their values; report
    residuals; build the ensemble that makes the prediction band (seeded, deterministic)."""
    ms = measurements if measurements is not None else load_measurements()
    works = [m.workload() for m in ms]
    measured = np.array([m.seconds for m in ms])
    central = {n: p.value for n, p in DEFAULT_PARAMS.items()}
    theta = _fit(list(zip(works, measured, strict=True)), central)
    central.update(zip(FITTED, theta, strict=True))
    predicted = [float(total(w, central)) for w in works]
    residuals = [p / m - 1 for p, m in zip(predicted, measured, strict=True)]

    rng = np.random.default_rng(seed)
    members: list[dict] = [dict(central)]
    for _ in range(samples):
        prior = {n: (rng.uniform(DEFAULT_PARAMS[n].low, DEFAULT_PARAMS[n].high)
                     if DEFAULT_PARAMS[n].kind == "prior" else 0.0) for n in DEFAULT_PARAMS}
        jitter = measured * rng.uniform(1 - TOLERANCE, 1 + TOLERANCE, len(ms))
        th = _fit(list(zip(works, jitter, strict=True)), prior)
        prior.update(zip(FITTED, th, strict=True))
        fit = np.array([total(w, prior) for w in works])
        if np.all(np.abs(fit / measured - 1) <= TOLERANCE + 1e-12):
            members.append(prior)
    ensemble = {n: np.array([m[n] for m in members]) for n in DEFAULT_PARAMS}
    params = {n: p.with_value(central[n]) for n, p in DEFAULT_PARAMS.items()}
    return Calibration(params, ms, predicted, residuals, ensemble, samples + 1)


_CALIBRATION: Calibration | None = None


def default_calibration() -> Calibration:
    """The calibration every prediction uses unless told otherwise (computed once)."""
    global _CALIBRATION
    if _CALIBRATION is None:
        _CALIBRATION = calibrate()
    return _CALIBRATION


# --- predictions -----------------------------------------------------------------------------

@dataclass
class Prediction:
    workload: Workload
    seconds: float
    band: tuple[float, float]  # envelope over forms x priors x jitter (`forms.py`)
    breakdown: dict[str, float]
    locks: dict[str, float]
    structural: dict = field(default_factory=dict)  # `Structural.envelope()` of the query

    @property
    def extrapolation(self) -> dict:
        """{dimension: [query, nearest measured bound]} outside the measured range."""
        return self.structural.get("extrapolation", {})

    @property
    def upper_edge_form(self) -> str:
        return self.structural.get("upper_edge_form", "linear-kick")

    @property
    def by_parameter(self) -> dict[str, float]:
        """The breakdown summed per priced parameter (the four runtime leaves share one)."""
        out: dict[str, float] = {}
        for op, sec in self.breakdown.items():
            out[PARAM_OF[op]] = out.get(PARAM_OF[op], 0.0) + sec
        return out

    @property
    def dominant(self) -> str:
        """The parameter that contributes most seconds."""
        bp = self.by_parameter
        return max(bp, key=bp.get)

    def to_dict(self) -> dict:
        w = self.workload
        return {
            "strategy": w.strategy, "memory_bytes": w.pages << PAGE_SHIFT, "pages": w.pages,
            "vcpus": w.vcpus, "packages": w.packages, "clear_pages": bool(w.cleared) or False,
            "dynamic_pamt": w.dynamic_pamt, "build_counts": w.build_counts,
            "pamt_puts": w.pamt_puts,
            "counts": dict(sorted(w.counts.items())), "kicks": w.kicks,
            "cleared_pages": w.cleared,
            "predicted_seconds": self.seconds, "band_seconds": list(self.band),
            "breakdown_seconds": self.breakdown, "lock_hold_seconds": self.locks,
            "seconds_by_parameter": self.by_parameter, "dominant": self.dominant,
            "extrapolation": self.extrapolation, "upper_edge_form": self.upper_edge_form,
            "lower_edge_form": self.structural.get("lower_edge_form", "linear-kick"),
            "band_by_form_seconds": self.structural.get("per_form_seconds", {}),
        }


def predict(pages: int, vcpus: int, strategy: str, *, packages: int = 1,
            clear_pages: bool = True, stale_vcpus: int = 0, dynamic_pamt: bool = False,
            calibration: Calibration | None = None, structural=None) -> Prediction:
    """Central seconds and breakdown from `calibration` (the linear-kick form); the band is
    the envelope of this calibration's ensemble and every model form's (`forms.py`), so it
    opens up where the forms disagree, away from the measured range."""
    from .forms import structural_for

    cal = calibration or default_calibration()
    sc = structural or structural_for(cal.measurements)
    w = workload(pages, vcpus, strategy, packages=packages, clear_pages=clear_pages,
                 stale_vcpus=stale_vcpus, dynamic_pamt=dynamic_pamt)
    t = terms(w, cal.values)
    ens = total(w, cal.ensemble)
    env = sc.envelope(w)
    seconds = float(sum(t.values()))
    band = (min(float(np.min(ens)), env["band_seconds"][0], seconds),
            max(float(np.max(ens)), env["band_seconds"][1], seconds))
    env["band_seconds"] = list(band)
    return Prediction(w, seconds, band, {k: float(v) for k, v in t.items()},
                      lock_holds(w, cal.values), env)


def sweep(sizes, strategies, vcpus: int = 4, *, packages: int = 1, clear_pages: bool = True,
          calibration: Calibration | None = None, query=None,
          dynamic_pamt: bool = False) -> dict:
    """Predicted teardown time for every (size, strategy): the data of a cost-curve lesson.

    Returns {"sizes_bytes": [...], "vcpus", "packages", "clear_pages", "measured_range",
    "same_as": {strategy: an earlier strategy with identical curves (same flow, same counts)},
    "query_bytes" (the size asked about, if `query`),
    "strategies": {name: {"seconds": [...], "low": [...], "high": [...], "dominant": [...],
    "upper_edge_form": [...], "extrapolates": [...]}}}. `sizes` are bytes or strings like
    "64G"."""
    from ..units import parse_size
    from .forms import structural_for

    cal = calibration or default_calibration()
    byte_sizes = sorted({parse_size(s) for s in sizes})
    rng = structural_for(cal.measurements).measured_range
    out = {"sizes_bytes": byte_sizes, "vcpus": vcpus, "packages": packages,
           "clear_pages": clear_pages, "dynamic_pamt": dynamic_pamt, "strategies": {},
           "same_as": {},
           "measured_range": {k: list(v) for k, v in rng.items()}}
    if query is not None:
        out["query_bytes"] = parse_size(query)
    for s in strategies:
        rows = [predict(b >> PAGE_SHIFT, vcpus, s, packages=packages, clear_pages=clear_pages,
                        calibration=cal, dynamic_pamt=dynamic_pamt) for b in byte_sizes]
        cur = out["strategies"][s] = {
            "seconds": [r.seconds for r in rows], "low": [r.band[0] for r in rows],
            "high": [r.band[1] for r in rows], "dominant": [r.dominant for r in rows],
            "upper_edge_form": [r.upper_edge_form for r in rows],
            "extrapolates": [bool(r.extrapolation) for r in rows]}
        for other, o in out["strategies"].items():
            if other != s and all(np.allclose(cur[k], o[k], rtol=1e-9, atol=0)
                                  for k in ("seconds", "low", "high")):
                out["same_as"][s] = other
                break
    return out
