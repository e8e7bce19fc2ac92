"""Lesson 02 (Secure-EPT removal and TLB tracking): the answers to its predictions, generated
by running the model, so the epochs, refcounts and statuses the text names are the ones the
module produces.

* `epoch_answer()`: TD_EPOCH and REFCOUNT after BLOCK and after TRACK, and REMOVE before the
  kick.
* `removal_answer(presets)`: every preset order of the removal widget, its last status, and
  what each one teaches (`TEACHES`, statuses and counters filled in from the run).

The exercises are in `sept_removal_and_tlb_exercises`.
"""

from __future__ import annotations

from .prose import Reveal, code_block


def _state(src) -> dict:
    c = src.module.tds[src.tdr].tdcs
    return {"epoch": c.td_epoch, "refcount": list(c.refcount), "page": src.page_state(),
            "in_guest": len(src.in_guest())}


def _errors(src) -> list[tuple[str, str]]:
    return [(e.op, str(e.status)) for e in src.trace
            if e.source == "tdx-module" and e.op != "td_exit" and e.status
            and e.status != "TDX_SUCCESS"]


def epoch_answer() -> Reveal:
    """Section 1: what BLOCK and TRACK do to the epoch counters, and REMOVE before the kick."""
    from ..steps import RemovalSource

    src = RemovalSource(["block", "track", "remove"])
    start = _state(src)
    src.step()
    blocked = _state(src)
    src.step()
    tracked = _state(src)
    src.step()
    errs = _errors(src)
    status = errs[-1][1] if errs else "TDX_SUCCESS"
    old = blocked["epoch"]
    return Reveal(
        "Show the answer",
        f"Both vCPUs entered in epoch {start['epoch']}: `TD_EPOCH` = {start['epoch']}, "
        f"`REFCOUNT` = {start['refcount']}. BLOCK leaves them alone (the page is now "
        f"{blocked['page']}, its `BEPOCH` = {old}); TRACK makes `TD_EPOCH` = "
        f"{tracked['epoch']} and leaves `REFCOUNT` = {tracked['refcount']}: "
        f"`REFCOUNT[{old} & 1]` = {tracked['refcount'][old & 1]} still counts the two vCPUs of "
        f"the block epoch. So REMOVE before the kick gets `{status}`.")


# What each preset order of the removal widget teaches. Placeholders are filled in from the
# run: {status} the last SEAMCALL status, {epoch} TD_EPOCH, {refcount} REFCOUNT, {left} the
# REFCOUNT of the block epoch, {page} the page's S-EPT state.
TEACHES = {
    "KVM 6.16: block, track, kick, remove": (
        "the page is {page}: blocked, tracked, every vCPU kicked out, removed, its cache lines "
        "written back (`{status}`)."),
    "no BLOCK": (
        "`{status}`: in a `RUNNABLE` TD, REMOVE takes only a blocked entry. Without it a vCPU "
        "could create a new translation after the check."),
    "no TRACK": (
        "`{status}`: `BEPOCH == TD_EPOCH` (= {epoch}), the epoch never moved."),
    "no kick": (
        "`{status}` again: the epoch moved (`TD_EPOCH` = {epoch}), but `REFCOUNT` of the block "
        "epoch is still {left}, because both vCPUs are still in the guest with possibly stale "
        "TLBs."),
    "kick before TRACK": (
        "the kick empties the guest, but the vCPUs re-enter *in the block epoch* and count "
        "themselves there again; TRACK then moves `TD_EPOCH` to {epoch} with `REFCOUNT` of the "
        "block epoch back at {left}, so REMOVE gets `{status}`. The IPI must come *after* "
        "TRACK: only then does it wait out the vCPUs of the old epoch."),
    "TRACK twice, no kick": (
        "`{status}` (from the second TRACK): the module will not start a new epoch while "
        "vCPUs of the previous one still run. KVM's IPI after every TRACK (with "
        "`KVM_REQ_OUTSIDE_GUEST_MODE`'s *wait*) is what keeps the next TRACK from failing."),
    "kick, vCPUs re-enter, then remove": (
        "harmless: the page is {page}. The vCPUs re-enter in the new epoch (`REFCOUNT` = "
        "{refcount}) and flush their TLB first."),
}


def preset_runs(presets: dict) -> dict[str, dict]:
    """{preset: state after the run, with `last` = (call, status) of its last SEAMCALL}."""
    from ..steps import RemovalSource

    out = {}
    for name, ops in presets.items():
        src = RemovalSource(ops)
        start = _state(src)["epoch"]  # the vCPUs entered, and the page is blocked, in it
        while not src.done:
            src.step()
        last = [e for e in src.trace if e.source == "tdx-module" and e.op != "td_exit"][-1]
        errs = _errors(src)
        st = _state(src)
        st["last"] = (last.op, str(last.status))
        st["status"] = errs[-1][1] if errs else str(last.status)
        st["block_epoch"] = start
        out[name] = st
    return out


def removal_answer(presets: dict) -> Reveal:
    """Every preset's run as a table, then what each one teaches (values from the run)."""
    missing = sorted(set(presets) - set(TEACHES))
    if missing:
        raise KeyError(f"no lesson text for the preset(s) {', '.join(missing)}")
    runs = preset_runs(presets)
    width = max(len(n) for n in presets)
    lines = []  # two lines per run, so that no line wraps
    for name, r in runs.items():
        lines += [f"{name:<{width}}  page {r['page']}",
                  f"    last SEAMCALL: {r['last'][0]} -> {r['last'][1]}"]
    bullets = []
    for name, r in runs.items():
        fill = dict(status=r["status"], epoch=r["epoch"], refcount=r["refcount"],
                    left=r["refcount"][r["block_epoch"] & 1], page=r["page"])
        bullets.append(f"* **{name}** → " + TEACHES[name].format(**fill))
    return Reveal("Show every run, and what each one teaches",
                  code_block("\n".join(lines)) + "\n\nRead them against the module's rules "
                  "(module 1.5 `tdh_mem_page_remove.c` and `is_tlb_tracked` in `helpers.h`, "
                  "[M15]):\n\n" + "\n".join(bullets))


__all__ = ["epoch_answer", "TEACHES", "preset_runs", "removal_answer"]
