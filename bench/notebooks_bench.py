"""Time to execute every lesson notebook with nbclient (target: each under 120 s).

    .venv/bin/python bench/notebooks_bench.py

Prints seconds per notebook, the total and the ratio to the target; asserts nothing.
Runs with PYTHONHASHSEED=0 like the test suite; kernel start-up is included.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TARGET_S = 120.0
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    os.environ["PYTHONHASHSEED"] = "0"
    total = 0.0
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(nb_path.parent)}}).execute()
        dt = time.perf_counter() - t0
        total += dt
        print(f"  {nb_path.name:<36} {dt:6.1f} s")
    print(f"all notebooks: {total:.1f} s (target {TARGET_S:.0f} s: {total / TARGET_S:.2f}x)")


if __name__ == "__main__":
    main()
