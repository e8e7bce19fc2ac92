"""`tdxedu teardown`: SEAMCALL counts, predicted time with its band, and where the time goes,
for a TD of any size up to 1 TiB and beyond (counts: the flows of `tdxedu.kvm.teardown`, [K616];
prices:
`tdxedu.cost.params`, calibrated to [AH-RFC] in `tdxedu/cost/calibration.csv`)."""

from __future__ import annotations

import argparse
import json
import sys

from .kvm.tdx import TEARDOWN_POLICIES
from .tdx.pamt import PAGE_SHIFT
from .units import format_size

# The most vCPUs x86 KVM lets a VM have: KVM_MAX_VCPUS (arch/x86/include/asm/kvm_host.h), set
# by CONFIG_KVM_MAX_NR_VCPUS since 6.9, whose Kconfig range ends at 4096.
MAX_VCPUS = 4096
GIB = 1 << 30


def plot_sizes(query: int) -> list[int]:
    """Sizes for --plot: powers of two from 1 GiB (or the query, if smaller) up to 1 TiB (or
    twice the query, if larger), the two measured sizes and the query itself."""
    lo = min(GIB, query)
    hi = max(1 << 40, 2 * query)
    sizes = {query, 18 * GIB, 107 * GIB}
    b = 1 << max(0, lo.bit_length() - 1)
    while b <= hi:
        if b >= lo:
            sizes.add(b)
        b <<= 1
    return sorted(sizes)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory", default="64G",
                   help="TD private memory, e.g. 400G, 1.5T, 64GiB (K, M, G, T, P: powers of "
                   "1024; default 64G)")
    p.add_argument("--vcpus", default="4",
                   help=f"vCPUs, 1 to {MAX_VCPUS} (KVM_MAX_VCPUS; default 4)")
    p.add_argument("--packages", default="1", help="CPU packages the vCPUs spread over")
    p.add_argument("--strategy", default="v6.16",
                   help=f"teardown strategy: {', '.join(TEARDOWN_POLICIES)}")
    p.add_argument("--no-clear", action="store_true",
                   help="6.18+: skip the MOVDIR64B clear (CPUs without X86_BUG_TDX_PW_MCE)")
    p.add_argument("--dpamt", action="store_true",
                   help="a Dynamic PAMT host: PAMT.REMOVE per 2 MB range emptied, a refcount "
                        "put per page (priors: no published measurement)")
    p.add_argument("--compare", action="store_true", help="every strategy side by side")
    p.add_argument("--plot", metavar="FILE.png", help="draw time vs TD size per strategy")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--calibration", action="store_true",
                   help="print the fitted parameters, priors and residuals")
    p.add_argument("--validate", action="store_true",
                   help="leave-one-out over the published rows, and fit on the 4-vCPU pair "
                        "to predict the 32-vCPU pair: each error, per model form")


def _fail(msg: str) -> int:
    print(f"tdxedu teardown: {msg}", file=sys.stderr)
    return 2


def _positive_int(name: str, text: str, maximum: int | None = None) -> int:
    try:
        v = int(text)
    except ValueError:
        raise ValueError(f"--{name} must be a whole number, got {text!r}") from None
    if v < 1:
        raise ValueError(f"--{name} must be at least 1, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"--{name} must be at most {maximum}, got {v}")
    return v


def _fmt_s(s: float) -> str:
    if s < 120:
        return f"{s:,.1f} s"
    if s < 2 * 3600:
        return f"{s:,.0f} s ({s / 60:,.1f} min)"
    if s < 2 * 86400:
        return f"{s:,.0f} s ({s / 3600:,.1f} h)"
    return f"{s:,.0f} s ({s / 86400:,.1f} days)"


def _text(pred) -> str:
    d = pred.to_dict()
    lo, hi = d["band_seconds"]
    lines = [f"{d['strategy']}: {format_size(d['memory_bytes'])} "
             f"({d['pages']:,} pages), {d['vcpus']} vCPUs, {d['packages']} package(s), "
             f"{'pages cleared' if d['cleared_pages'] else 'no clear (6.18+)'}"
             f"{', Dynamic PAMT' if d['dynamic_pamt'] else ''}",
             f"predicted {_fmt_s(d['predicted_seconds'])}, band {_fmt_s(lo)} .. {_fmt_s(hi)}",
             f"band: every model form x prior x jitter that fits the published rows within "
             f"10%; upper edge set by {d['upper_edge_form']}, lower by {d['lower_edge_form']}",
             _extrapolation_line(d["extrapolation"]),
             f"dominated by: {d['dominant']}", "", "SEAMCALLs per leaf:"]
    lines += [f"  {leaf:<28} {n:>14,}" for leaf, n in d["counts"].items()]
    lines += [f"  {'(' + leaf + ' at build)':<28} {n:>14,}"
              for leaf, n in d["build_counts"].items()]
    if d["dynamic_pamt"]:
        lines.append(f"  {'(tdx_pamt_put calls)':<28} {d['pamt_puts']:>14,}")
    lines += [f"  {'(all-vCPU kicks)':<28} {d['kicks']:>14,}",
              f"  {'(pages cleared)':<28} {d['cleared_pages']:>14,}", "", "time by operation:"]
    tot = d["predicted_seconds"] or 1.0
    for op, s in sorted(d["breakdown_seconds"].items(), key=lambda kv: -kv[1]):
        if s > 0:
            lines.append(f"  {op:<28} {s:>12,.2f} s  {s / tot:6.1%}")
    lines += ["", "lock hold times:"]
    lines += [f"  {k:<28} {v:>12,.2f} s" for k, v in d["lock_hold_seconds"].items()]
    return "\n".join(lines)


def _extrapolation_line(ex: dict) -> str:
    if not ex:
        return "inside the measured range (4..32 vCPUs, 18..107 GiB, 1 package)"

    def show(k, v):
        return format_size(round(v * GIB)) if k == "memory_gib" else f"{v:,}"

    parts = [f"{k.replace('_gib', '')} {show(k, q)} (measured {'up to' if q > b else 'from'} "
             f"{show(k, b)})" for k, (q, b) in ex.items() if k != "dynamic_pamt"]
    if "dynamic_pamt" in ex:
        parts.append("Dynamic PAMT (measured on static PAMT: its costs are priors)")
    return "EXTRAPOLATES: " + ", ".join(parts) + ": the forms disagree here, so trust the band"


def _validate(as_json: bool) -> int:
    from .cost.validate import describe, validate

    rows = validate()
    if as_json:
        print(json.dumps({"validation": [r.to_dict() for r in rows]}, indent=2))
    else:
        print(describe(rows))
    return 0


def plot_data(args: argparse.Namespace, size: int, vcpus: int, packages: int,
              clear: bool) -> dict:
    """What --plot draws: every strategy at the query's vCPUs, packages and clear setting,
    over sizes around the query (`plot_sizes`)."""
    from .cost import sweep

    return sweep(plot_sizes(size), TEARDOWN_POLICIES, vcpus, packages=packages,
                 clear_pages=clear, query=size, dynamic_pamt=getattr(args, "dpamt", False))


def run(args: argparse.Namespace) -> int:
    from .cost import default_calibration, predict
    from .units import parse_size

    try:
        size = parse_size(args.memory)
        vcpus = _positive_int("vcpus", args.vcpus, MAX_VCPUS)
        packages = _positive_int("packages", args.packages)
    except (ValueError, TypeError) as e:
        return _fail(str(e))
    if args.strategy not in TEARDOWN_POLICIES:
        return _fail(f"unknown strategy {args.strategy!r}; allowed: "
                     f"{', '.join(TEARDOWN_POLICIES)}")
    clear = not args.no_clear
    if args.validate:
        return _validate(args.json)
    strategies = TEARDOWN_POLICIES if args.compare else (args.strategy,)
    preds = [predict(size >> PAGE_SHIFT, vcpus, s, packages=packages, clear_pages=clear,
                     dynamic_pamt=args.dpamt) for s in strategies]
    if args.plot:
        from .viz import RENDER_DPI, sweep_figure

        fig = sweep_figure(plot_data(args, size, vcpus, packages, clear))
        try:
            fig.savefig(args.plot, dpi=RENDER_DPI)
        except OSError as e:
            return _fail(f"cannot write {args.plot}: {e}")
    if args.json:
        if args.compare:
            obj = {"strategies": {p.workload.strategy: p.to_dict() for p in preds}}
        else:
            obj = preds[0].to_dict()
        if args.plot:
            obj["plot"] = args.plot
        print(json.dumps(obj, indent=2))
        return 0
    if args.calibration:
        from .cost.forms import default_structural

        print(default_calibration().describe() + "\n")
        print(default_structural().describe() + "\n")
    if args.compare:
        w = max(len(s) for s in strategies)
        print(f"{format_size(size)}, {vcpus} vCPUs, {packages} package(s), "
              f"{'pages cleared' if clear else 'no clear (6.18+)'}")
        print(f"{'strategy':<{w}}  {'predicted':>12}  {'band':>25}  {'SEAMCALLs':>12}  "
              f"dominant / band's upper edge")
        for p in preds:
            d = p.to_dict()
            lo, hi = d["band_seconds"]
            print(f"{d['strategy']:<{w}}  {d['predicted_seconds']:>10,.0f} s  "
                  f"{lo:>10,.0f} .. {hi:>8,.0f} s  {sum(d['counts'].values()):>12,}  "
                  f"{d['dominant']} / {d['upper_edge_form']}")
        print(_extrapolation_line(preds[0].extrapolation))
    else:
        print(_text(preds[0]))
    if args.plot:
        print(f"\nplot written to {args.plot}")
    return 0
