"""Step click -> new picture on screen, measured in Chromium, per lesson (median and p90).

The browser test (tests/browser) opens every lesson in JupyterLab started as `tdxedu lab`
starts it, runs it, then times several Step clicks of its first widget: from the click to
the moment the last picture the step changed is decoded and the next frame drawn. This
script runs that test and prints its table (also in test-artifacts/browser-step-latency.txt).
Target: median < 150 ms per click. A loaded machine inflates the figures: run it alone.

    .venv/bin/python bench/browser_step_latency.py            # all lessons
    .venv/bin/python bench/browser_step_latency.py -k 03_     # one lesson
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "test-artifacts" / "browser-step-latency.txt"


def main(argv: list[str]) -> int:
    TABLE.unlink(missing_ok=True)
    rc = subprocess.call([sys.executable, "-m", "pytest", "tests/browser", "-q",
                          "-k", "test_lesson_as_a_learner_meets_it", *argv], cwd=ROOT)
    if not TABLE.exists():
        print("no latency measured (is /usr/bin/chromium installed?)", file=sys.stderr)
        return rc or 1
    print("\nStep click -> new picture on screen, Chromium 1280x900:")
    print(TABLE.read_text(), end="")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
