"""Sizes as people write them ("64M", "1G", 4096) turned into bytes, for the CLI, the cost
model, the scenario builders and the lessons."""

from __future__ import annotations

import re

from .tdx.pamt import PAGE_SIZE

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(memory) -> int:
    """Bytes from an int or a string like "64M", "1G", "4096"; ValueError otherwise."""
    if isinstance(memory, bool):
        raise TypeError("memory must be an int (bytes) or a size string like '64M'")
    if isinstance(memory, int):
        size = memory
    elif isinstance(memory, str):
        m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", memory.upper())
        if not m:
            raise ValueError(f"memory {memory!r}: use bytes or a size like '64M', '1G'")
        size = int(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise TypeError(f"memory must be an int or str, got {type(memory).__name__}")
    if size <= 0 or size % PAGE_SIZE:
        raise ValueError(f"memory must be a positive multiple of 4096 bytes, got {size}")
    return size


__all__ = ["parse_size"]
