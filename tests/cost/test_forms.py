"""Structural uncertainty (`tdxedu.cost.forms`): every model form reproduces the four rows of
[AH-RFC] within 10%; the band is their envelope, it opens up away from the measured range
(4..32 vCPUs, 18..107 GiB), and predictions say when they extrapolate and which form sets the
band's upper edge."""

import numpy as np
import pytest

from tdxedu.cost import nnls, predict
from tdxedu.cost.counts import workload
from tdxedu.cost.forms import FORMS, TIE, batched_nnls, default_structural, form_total
from tdxedu.cost.model import TOLERANCE
from tdxedu.sources import lookup

GIB = 1 << 18  # 4K pages


@pytest.fixture(scope="module")
def st():
    return default_structural()


def test_every_form_fits_every_published_row_within_10_percent(st):
    assert len(st.fits) >= 4
    for name, fit in st.fits.items():
        assert fit.members >= 100, name
        for m in st.measurements:
            w = fit.form.measured_workload(m)
            got = np.atleast_1d(fit.total(w))
            assert np.all(np.abs(got / m.seconds - 1) <= TOLERANCE + 1e-9), (name, m)
            assert abs(fit.total(w, central=True) / m.seconds - 1) <= TOLERANCE, (name, m)
        for p, v in fit.ensemble.items():
            assert (v >= 0).all(), (name, p)


def test_every_form_has_an_argument_and_resolvable_sources():
    for f in FORMS:
        assert len(f.argument) > 30
        for tag in f.sources:
            assert lookup(tag).tag == tag


def test_the_forms_really_differ_in_how_they_scale(st):
    """Same four rows, different answers at 128 vCPUs and at 1 TiB: that is the point."""
    far = workload(1024 * GIB, 128, "v6.16")
    c = {n: float(f.total(far, central=True)) for n, f in st.fits.items()}
    assert c["superlinear-kick"] > 2 * c["linear-kick"]
    near = workload(64 * GIB, 16, "v6.16")
    cn = [float(f.total(near, central=True)) for f in st.fits.values()]
    assert max(cn) / min(cn) < 1.25


def _rel_width(p):
    return (p.band[1] - p.band[0]) / p.seconds


def test_band_widens_with_distance_from_the_measured_range():
    inside = predict(64 * GIB, 16, "v6.16")
    by_vcpus = [predict(107 * GIB, v, "v6.16") for v in (32, 64, 128, 256)]
    by_size = [predict(s * GIB, 4, "v6.16") for s in (107, 256, 1024, 4096)]
    for series in (by_vcpus, by_size):
        widths = [_rel_width(p) for p in series]
        assert widths == sorted(widths) and widths[-1] > 2 * widths[0], widths
    assert _rel_width(inside) < 0.5
    for p in (inside, *by_vcpus, *by_size):
        assert p.band[0] <= p.seconds <= p.band[1]


def test_extrapolation_is_reported_in_json_and_the_upper_edge_form_named():
    d = predict(1024 * GIB, 128, "v6.16").to_dict()
    assert d["extrapolation"] == {"vcpus": [128, 32], "memory_gib": [1024, 107]}
    assert d["upper_edge_form"] == "superlinear-kick"
    assert set(d["band_by_form_seconds"]) == {f.name for f in FORMS}
    assert predict(64 * GIB, 16, "v6.16").to_dict()["extrapolation"] == {}
    assert predict(GIB, 4, "v6.16").extrapolation == {"memory_gib": [1, 18]}
    assert predict(64 * GIB, 16, "v6.16", packages=2).extrapolation == {"packages": [2, 1]}
    # 4 vCPUs, 1 TiB: the vCPU forms agree, the working-set form sets the upper edge
    assert predict(1024 * GIB, 4, "v6.16").upper_edge_form == "size-growth"
    # the reclaim path has no vCPU or size term in any form: they agree
    assert predict(1024 * GIB, 128, "terminate-vm").upper_edge_form == "all forms agree"


def test_batched_nnls_matches_the_active_set_nnls_on_identified_problems():
    rng = np.random.default_rng(3)
    A = rng.uniform(0, 1, (200, 4, 3))
    b = rng.uniform(-0.5, 1, (200, 4))  # some with x = 0 as the optimum
    got = batched_nnls(A, b)
    for i in range(len(A)):
        want = nnls(A[i], b[i])
        best = np.linalg.norm(A[i] @ want - b[i])  # as good, up to TIE (equally good fits)
        assert np.linalg.norm(A[i] @ got[i] - b[i]) <= best + TIE * np.linalg.norm(b[i])
        assert (got[i] >= 0).all()


def test_unidentified_fits_spread_over_every_equally_good_split():
    """One runtime row cannot split per-page from per-vCPU cost: the members cover both."""
    from tdxedu.cost.forms import fit_form
    from tdxedu.cost.model import load_measurements
    small = [m for m in load_measurements() if m.vcpus == 4]
    fit = fit_form(FORMS[0], small, samples=200)
    kick = fit.ensemble["kick_per_vcpu"]
    assert kick.min() < 0.1 * kick.max()
    w = workload(107 * GIB, 32, "v6.16")
    assert form_total(FORMS[0], w, fit.ensemble).max() > 3 * form_total(
        FORMS[0], w, fit.ensemble).min()


def test_a_calibration_on_other_rows_gets_a_band_from_those_rows():
    """The band comes from the same data as the central value: doubling the runtime rows
    moves the runtime band with them."""
    import dataclasses

    from tdxedu.cost import calibrate
    from tdxedu.cost.model import load_measurements
    ms = load_measurements()
    doubled = [dataclasses.replace(m, seconds=m.seconds * (2 if m.strategy == "v6.16" else 1))
               for m in ms]
    cal = calibrate(doubled, samples=50)
    base = predict(64 * GIB, 16, "v6.16")
    p = predict(64 * GIB, 16, "v6.16", calibration=cal)
    assert p.band[0] > 1.6 * base.band[0] and p.band[1] > 1.6 * base.band[1]
    assert p.band[0] <= p.seconds <= p.band[1]


def test_calibration_flag_lists_every_form(capsys):
    from tdxedu.cli import main
    assert main(["teardown", "--calibration"]) == 0
    out = capsys.readouterr().out
    for f in FORMS:
        assert f.name in out
    assert "us/doubling" in out
