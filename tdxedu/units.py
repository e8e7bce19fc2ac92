"""Sizes as people write them ("64M", "1.5T", "64GiB", 4096) turned into bytes, and bytes
turned back into words ("1.5 TiB"), for the CLI, the cost model, the scenario builders and the
lessons. Units are powers of 1024 (K, M, G, T, P; "KiB", "KB" and "k" mean the same)."""

from __future__ import annotations

import re
from fractions import Fraction

from .tdx.pamt import PAGE_SIZE

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
# A TD's private memory sits below the shared bit of its guest-physical address: bit 51 with the
# widest GPA a TD can ask for (52 bits, GPAW in TD_PARAMS, module tdh_mng_init.c), so no TD
# holds more than 2 PiB of private memory.
MAX_MEMORY = 1 << 51
SIZE_HINT = "use bytes or a size like 64K, 64M, 1.5G, 1T or 64GiB (K, M, G, T, P: powers of 1024)"
_SIZE = re.compile(r"\s*([-+]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGTP]?)(I?B)?\s*")


def parse_size(memory) -> int:
    """Bytes from an int or a string like "64M", "1.5T", "64GiB", "4096"; ValueError (with
    what to type instead) otherwise. The result is a positive multiple of 4 KiB, at most
    `MAX_MEMORY` (2 PiB)."""
    if isinstance(memory, bool):
        raise TypeError("memory must be an int (bytes) or a size string like '64M'")
    if isinstance(memory, int):
        size = shown = memory
    elif isinstance(memory, str):
        m = _SIZE.fullmatch(memory.upper())
        if not m or (m.group(4) == "IB" and not m.group(3)):
            raise ValueError(f"memory {memory!r} is not a size: {SIZE_HINT}")
        if m.group(1) == "-":
            raise ValueError(f"memory must be positive, got {memory.strip()!r}")
        exact = Fraction(m.group(2)) * _UNITS[m.group(3)]
        if exact.denominator != 1:
            raise ValueError(f"memory {memory.strip()!r} is not a whole number of bytes")
        size = int(exact)
        shown = memory.strip()
    else:
        raise TypeError(f"memory must be an int or str, got {type(memory).__name__}")
    if size <= 0:
        raise ValueError(f"memory must be positive, got {shown!r}")
    if size % PAGE_SIZE:
        raise ValueError(f"memory must be a whole number of 4 KiB pages (a multiple of 4096 "
                         f"bytes), got {shown!r}")
    if size > MAX_MEMORY:
        raise ValueError(f"memory {shown!r} is more than a TD can address: at most 2P "
                         "(private GPAs sit below bit 51, the shared bit of a 52-bit GPA)")
    return size


def format_size(size: int) -> str:
    """Bytes in words with the largest unit that keeps the number readable: 65536 ->
    "64 KiB", 3 << 39 -> "1.5 TiB", 1000 << 40 -> "1000 TiB" (never "1.024e+06 GiB")."""
    for unit in ("P", "T", "G", "M", "K"):
        scale = _UNITS[unit]
        if size >= scale:
            v = size / scale
            text = f"{v:.0f}" if v == int(v) else f"{v:.2f}".rstrip("0").rstrip(".")
            return f"{text} {unit}iB"
    return f"{size} B"


__all__ = ["parse_size", "format_size", "MAX_MEMORY", "SIZE_HINT"]
