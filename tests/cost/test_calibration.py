"""The calibrated cost model reproduces Adrian Hunter's four measurements within 10% with
non-negative parameters ([AH-RFC]), says which numbers
are fitted and which are priors, and predicts with a band."""

import dataclasses

import numpy as np
import pytest

from tdxedu.cost import DEFAULT_PARAMS, calibrate, nnls, predict, sweep
from tdxedu.cost.model import FITTED, PRIORS, TOLERANCE, load_measurements
from tdxedu.kvm.tdx import TEARDOWN_POLICIES

TIB = 1 << 28  # 4K pages


@pytest.fixture(scope="module")
def cal():
    return calibrate()


def test_calibration_table_is_the_four_measurements_of_the_rfc():
    ms = load_measurements()
    got = {(m.vcpus, m.td_gib, m.path): m.seconds for m in ms}
    assert got == {(4, 18, "runtime-removal"): 72, (4, 18, "teardown-reclaim"): 24,
                   (32, 107, "runtime-removal"): 517, (32, 107, "teardown-reclaim"): 134}
    assert {m.source for m in ms} == {"AH-RFC"}


def test_reproduces_every_measurement_within_10_percent_with_non_negative_parameters(cal):
    assert max(abs(r) for r in cal.residuals) <= TOLERANCE
    assert all(p.value >= 0 for p in cal.params.values())
    for name, values in cal.ensemble.items():
        assert (values >= 0).all(), name


def test_fitted_and_prior_parameters_are_declared(cal):
    assert set(FITTED) == {"runtime_chain", "kick_per_vcpu", "reclaim"}
    assert set(FITTED) | set(PRIORS) == set(DEFAULT_PARAMS)
    for n in PRIORS:  # priors stay at their stated values in the central fit
        assert cal.params[n].value == DEFAULT_PARAMS[n].value
        assert DEFAULT_PARAMS[n].source
    for n in FITTED:  # fitted values come from the data, not from the defaults
        assert cal.params[n].value != DEFAULT_PARAMS[n].value


def test_ensemble_members_each_fit_within_10_percent(cal):
    from tdxedu.cost.model import total
    works = [m.workload() for m in cal.measurements]
    measured = np.array([m.seconds for m in cal.measurements])
    fits = np.array([total(w, cal.ensemble) for w in works])  # (rows, members)
    assert fits.shape[1] >= 100
    assert np.all(np.abs(fits / measured[:, None] - 1) <= TOLERANCE + 1e-9)


def test_fit_follows_the_data():
    """Doubling the runtime-path measurements roughly doubles what the runtime path costs;
    the reclaim fit does not move (the fit is not hard-coded)."""
    ms = load_measurements()
    doubled = [dataclasses.replace(m, seconds=m.seconds * (2 if m.strategy == "v6.16" else 1))
               for m in ms]
    a, b = calibrate(ms, samples=20), calibrate(doubled, samples=20)
    assert b.params["reclaim"].value == pytest.approx(a.params["reclaim"].value)
    assert b.params["runtime_chain"].value > 1.8 * a.params["runtime_chain"].value
    assert max(abs(r) for r in b.residuals) <= TOLERANCE


def test_per_page_figures_match_the_reference_arithmetic(cal):
    """[AH-RFC]'s totals per 4 KiB page: runtime ~15.3 and ~18.4 us/page, reclaim ~5.1 and ~4.8
    us/page."""
    for m, pred in zip(cal.measurements, cal.predicted, strict=True):
        us = pred / m.pages * 1e6
        ref = {(4, "v6.16"): 15.3, (32, "v6.16"): 18.4, (4, "terminate-vm"): 5.1,
               (32, "terminate-vm"): 4.8}[(m.vcpus, m.strategy)]
        assert us == pytest.approx(ref, rel=TOLERANCE)


def test_clear_prior_is_consistent_with_up_to_40_percent(cal):
    """[AH-clear] 'up to 40%': skipping the clear saves at most 40% on the reclaim path."""
    for v, pages in ((4, 18 << 18), (32, 107 << 18)):
        with_clear = predict(pages, v, "terminate-vm", calibration=cal).seconds
        without = predict(pages, v, "terminate-vm", clear_pages=False, calibration=cal).seconds
        assert 0 < 1 - without / with_clear <= 0.40 + 1e-9


def test_nnls_matches_a_brute_force_search():
    rng = np.random.default_rng(1)
    for _ in range(30):
        A = rng.normal(size=(5, 3))
        b = rng.normal(size=5)
        x = nnls(A, b)
        assert (x >= 0).all()
        best = min((np.linalg.norm(A[:, list(s)] @ np.clip(np.linalg.lstsq(
            A[:, list(s)], b, rcond=None)[0], 0, None) - b) if s else np.linalg.norm(b))
            for s in [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
            if not s or (np.linalg.lstsq(A[:, list(s)], b, rcond=None)[0] >= 0).all())
        assert np.linalg.norm(A @ x - b) <= best + 1e-9


def test_predictions_are_ordered_and_banded(cal):
    up = predict(TIB, 64, "v6.16", calibration=cal)
    term = predict(TIB, 64, "terminate-vm", calibration=cal)
    assert term.seconds < up.seconds  # [AH-RFC]: the reclaim path is 3-4x faster
    for p in (up, term):
        assert p.band[0] <= p.seconds <= p.band[1]
        assert sum(p.breakdown.values()) == pytest.approx(p.seconds)
    assert up.dominant in ("runtime_chain", "kick_per_vcpu")
    assert term.dominant == "reclaim"
    # More vCPUs cost more on the runtime path only (one kick per page), spanning packages more.
    assert predict(TIB, 8, "v6.16", calibration=cal).seconds < up.seconds
    assert predict(TIB, 64, "v6.16", packages=2, calibration=cal).seconds > up.seconds
    assert predict(TIB, 8, "terminate-vm", calibration=cal).seconds == pytest.approx(
        term.seconds, rel=1e-3)
    # The 6.18 skip saves exactly the clear term.
    nc = predict(TIB, 64, "v6.16", clear_pages=False, calibration=cal)
    assert up.seconds - nc.seconds == pytest.approx(up.breakdown["page clear (MOVDIR64B)"])


def test_sweep_shape_and_monotonic(cal):
    sizes = ["1G", "4G", "16G", "64G", "128G", "256G", "512G", "1T"]
    d = sweep(sizes, TEARDOWN_POLICIES, vcpus=8, calibration=cal)
    assert d["sizes_bytes"][-1] == 1 << 40
    for s in TEARDOWN_POLICIES:
        row = d["strategies"][s]
        assert len(row["seconds"]) == len(sizes)
        assert all(a < b for a, b in zip(row["seconds"], row["seconds"][1:], strict=False))
        assert all(lo <= v <= hi for lo, v, hi in zip(row["low"], row["seconds"], row["high"],
                                                     strict=True))


def test_plot_helper_returns_a_figure(cal):
    from matplotlib.figure import Figure

    from tdxedu.viz import sweep_figure
    fig = sweep_figure(sweep(["1G", "1T"], TEARDOWN_POLICIES, calibration=cal))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == len(TEARDOWN_POLICIES)
    assert ax.get_legend() is not None


def test_stale_vcpu_fault_uses_the_bulk_engine_and_prices_the_leak():
    p = predict(1 << 16, 4, "v6.16", stale_vcpus=1)
    assert not p.workload.ok
    assert "tdh_mng_key_freeid" not in p.workload.counts
