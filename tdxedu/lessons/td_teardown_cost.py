"""Lesson 04, "How far to trust the cost model": held-out validation and the model forms
(`tdxedu.cost.validate`, `tdxedu.cost.forms`) as text the notebook prints. Every number in
that section comes from here."""

from __future__ import annotations

from ..tdx.pamt import PAGE_SHIFT
from ..units import parse_size


def validation_table() -> str:
    """`tdxedu teardown --validate`: each held-out row of [AH-RFC], per model form."""
    from ..cost.validate import describe, validate

    return describe(validate())


def validation_summary() -> str:
    """Three sentences a reader can check against the table above it."""
    from ..cost.validate import validate

    rows = validate()
    fast = max(abs(r.error) for r in rows if r.measurement.strategy == "terminate-vm")
    hard = next(r for r in rows if r.split.startswith("fit on")
                and r.measurement.strategy == "v6.16")
    lo, hi = min(hard.per_form.values()), max(hard.per_form.values())
    inside = sum(r.inside for r in rows)
    return (f"Reclaim path (terminate-vm): every held-out row within {fast:.0%}.\n"
            f"Runtime path (v6.16) fitted on the 4-vCPU pair only: the central model is off "
            f"by {hard.error:+.0%} at 32 vCPUs; the forms say anything from {lo:,.0f} s to "
            f"{hi:,.0f} s (measured: {hard.measurement.seconds:,.0f} s).\n"
            f"The band covers the measurement in {inside} of {len(rows)} held-out rows.")


def validation_answer():
    """The answer to the section's Predict prompt, collapsed until asked (`Reveal`)."""
    from .prose import reveal_text

    return reveal_text("Show the held-out predictions", validation_table(),
                       after=validation_summary().replace("\n", "  \n"))


def forms_table(memory="1T", vcpus: int = 128, strategy: str = "v6.16") -> str:
    """Each model form: its physical argument, sources, and what it predicts for one query;
    then the band (their envelope), the form that sets its upper edge, and the
    extrapolation flags."""
    from ..cost import predict
    from ..cost.forms import FORMS, default_structural
    from ..units import format_size

    size = parse_size(memory)
    pred = predict(size >> PAGE_SHIFT, vcpus, strategy)
    st = default_structural()
    lines = [f"{strategy}, {format_size(size)}, {vcpus} vCPUs:",
             f"{'form':<17} {'central':>10} {'its band':>23}"]
    for f in FORMS:
        fit = st.fits[f.name]
        c = float(fit.total(pred.workload, central=True))
        lo, hi = pred.structural["per_form_seconds"][f.name]
        lines.append(f"{f.name:<17} {c:>9,.0f}s {lo:>10,.0f}..{hi:<10,.0f}s")
        lines.append(f"    why: {f.argument} [{'] ['.join(f.sources)}]")
    lo, hi = pred.band
    lines.append(f"band {lo:,.0f} .. {hi:,.0f} s; upper edge set by {pred.upper_edge_form}")
    ex = pred.extrapolation
    lines.append("extrapolation: " + (", ".join(f"{k} {q:g} (measured to {b:g})"
                                                for k, (q, b) in ex.items()) or "none"))
    return "\n".join(lines)


__all__ = ["validation_table", "validation_summary", "validation_answer", "forms_table"]
