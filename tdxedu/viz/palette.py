"""One palette for every picture of the package: the Okabe-Ito colours, chosen to stay apart
for the common colour-vision deficiencies ([OKABE-ITO]), with a marker shape per mark kind so
no kind relies on colour alone.

Meanings are shared across figures: green = in use and fine (SEAMCALL ok, a MAPPED S-EPT entry,
a guest page), orange = BUSY / contention, vermillion = error / BLOCKED, reddish purple = an
IPI or a PAMT page, blue = a lock hold or a page-table page, sky blue = the guest running.
"""

from __future__ import annotations

from dataclasses import dataclass

# Okabe-Ito (Color Universal Design), plus greys for "nothing here"
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"  # bluish green
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"  # reddish purple
GREY = "#999999"
DARK_GREY = "#555555"
LIGHT_GREY = "#DDDDDD"
WHITE = "#FFFFFF"
EDGE = "#333333"  # outline of boxes and marks
TEXT_DIM = "#444444"  # captions

SERIES = (BLUE, VERMILLION, GREEN, ORANGE, PURPLE, SKY_BLUE, BLACK, YELLOW)
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def series_style(i: int) -> dict:
    """Line style of the i-th curve of a plot: colour, dash and marker all differ, so curves
    that coincide stay visible and a grey-scale print still tells them apart."""
    return {"color": SERIES[i % len(SERIES)], "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "marker": MARKERS[i % len(MARKERS)]}


@dataclass(frozen=True)
class Mark:
    """How one kind of event is drawn on a timeline, and what its legend entry says."""

    colour: str
    marker: str  # matplotlib marker, or "band" / "bar" for spans
    label: str


# Timeline mark kinds, in legend order. Keys are the gids the timeline gives its artists.
MARKS = {
    "seamcall:ok": Mark(GREEN, "s", "SEAMCALL ok"),
    "seamcall:info": Mark(YELLOW, "s", "SEAMCALL, not an error"),
    "seamcall:busy": Mark(ORANGE, "D", "SEAMCALL BUSY"),
    "seamcall:error": Mark(VERMILLION, "X", "SEAMCALL error"),
    "seamcall:None": Mark(WHITE, "s", "TDX module event"),
    "ipi": Mark(PURPLE, "^", "IPI"),
    "lock": Mark(BLUE, "|", "lock / unlock"),
    "lock-hold": Mark(BLUE, "bar", "lock held"),
    "guest": Mark("#B3DCF5", "band", "vCPU in the guest"),  # SKY_BLUE at 45 % on white
    "kvm": Mark(GREY, "o", "KVM step"),
}

# Secure-EPT entry states (module 1.5.01 sept_state_lookup.c), by name
SEPT_STATES = {
    "FREE": WHITE,
    "REMOVED": LIGHT_GREY,
    "NL_MAPPED": SKY_BLUE,
    "NL_BLOCKED": BLUE,
    "MAPPED": GREEN,
    "BLOCKED": VERMILLION,
    "BLOCKEDW": ORANGE,
    "PENDING": YELLOW,
    "PENDING_BLOCKED": PURPLE,
    "PENDING_BLOCKEDW": "#E8B9D3",  # a light reddish purple
}
SEPT_OTHER = GREY  # export/import states, never reached by a KVM host

# PAMT page types (module 1.5.01 pamt_manager.h), by name
PAGE_TYPES = {
    "PT_NDA": "#F4F4F4",
    "PT_RSVD": DARK_GREY,
    "PT_REG": GREEN,
    "PT_TDR": VERMILLION,
    "PT_TDCX": ORANGE,
    "PT_TDVPR": YELLOW,
    "PT_EPT": BLUE,
    "PT_PAMT": PURPLE,
}
OWNERS = ("#F4F4F4", BLUE, VERMILLION, GREEN, ORANGE, PURPLE)  # 0 = no owner

# Who holds a TDP MMU root reference (tdxedu.kvm.tdp_mmu)
HOLDERS = {"tdp_mmu": BLUE, "root": GREEN, "prev": SKY_BLUE, "mirror": PURPLE,
           "tdp_mmu_zap_wq": ORANGE, "iter": VERMILLION, "other": GREY}

LIT = ORANGE  # the state a state machine is in
LIT_FILL = "#F8DDA0"  # a light orange: the box of the current state
DIM = "#F0F0F0"
HIGHLIGHT = BLACK  # the ring around what the last step touched

__all__ = ["BLACK", "ORANGE", "SKY_BLUE", "GREEN", "YELLOW", "BLUE", "VERMILLION", "PURPLE",
           "GREY", "DARK_GREY", "LIGHT_GREY", "WHITE", "EDGE", "TEXT_DIM", "SERIES",
           "series_style", "Mark", "MARKS", "SEPT_STATES", "SEPT_OTHER", "PAGE_TYPES",
           "OWNERS", "HOLDERS", "LIT", "LIT_FILL", "DIM", "HIGHLIGHT"]
