"""What one learner's kernel needs: peak memory (RSS) and CPU time of a fresh Python kernel
running each lesson from top to bottom, as Run All does.

    .venv/bin/python bench/kernel_rss.py [LESSON ...]     (e.g. 04 or 04_td_teardown)

For each lesson a fresh kernel (nbclient, PYTHONHASHSEED=0, the lesson's folder as working
directory) runs every cell, then one cell appended here reads the kernel's own
/proc/self/status (VmHWM = peak RSS, VmRSS = RSS at the end) and its CPU time (user + system,
resource.getrusage). An empty kernel is measured the same way, as the baseline. On a hub each
learner also runs a single-user server: the RSS of a JupyterLab server (`jupyter lab`, idle, no
browser) is printed too. The last line is the sizing hint docs/teaching.md uses: the largest
kernel peak, its ratio to the baseline, and kernel + server.
Targets: none (a learner's kernel should fit a 1 GiB container with room to spare);
asserts nothing. Numbers move by a few MiB between runs and machines.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PROBE = """\
import json, resource
_st = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
_ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"hwm_kib": int(_st["VmHWM"].split()[0]), "rss_kib": int(_st["VmRSS"].split()[0]),
                  "cpu_s": _ru.ru_utime + _ru.ru_stime}))
"""


def measure(nb, workdir: Path) -> dict:
    """Run `nb` in a fresh kernel in `workdir`, then the probe; its numbers and the wall time."""
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    t0 = time.perf_counter()
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    ).execute()
    wall = time.perf_counter() - t0
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    facts = json.loads(out.strip().splitlines()[-1])
    facts["wall_s"] = wall
    return facts


def server_rss_kib(workdir: Path) -> int:
    """RSS of an idle JupyterLab server (as a hub's single-user server runs it), once ready."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={workdir}",
    ]
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(workdir / ".runtime"))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    try:
        import urllib.request

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=5).read()
                break
            except OSError:
                time.sleep(0.5)
        time.sleep(2)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main(argv: list[str]) -> int:
    os.environ["PYTHONHASHSEED"] = "0"
    lessons = sorted(NOTEBOOKS.glob("*.ipynb"))
    if argv:
        lessons = [
            p for p in lessons if any(p.stem == a or p.stem.startswith(a + "_") for a in argv)
        ]
        if not lessons:
            print(f"no lesson matches {argv}", file=sys.stderr)
            return 2
    print(f"{'kernel':36} {'peak RSS':>10} {'RSS at end':>11} {'CPU':>8} {'wall':>8}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = measure(nbformat.v4.new_notebook(), Path(tmp))
        rows.append(("empty kernel (baseline)", base))
        print(_line(*rows[-1]), flush=True)
        for path in lessons:
            # A copy in a scratch folder: whatever a lesson writes stays out of notebooks/.
            work = Path(tmp) / path.stem
            work.mkdir()
            nb = nbformat.read(path, as_version=4)
            rows.append((path.stem, measure(nb, work)))
            print(_line(*rows[-1]), flush=True)
        server = server_rss_kib(Path(tmp))
    print(f"{'JupyterLab server (idle)':36} {server / 1024:7.0f} MiB")
    worst_name, worst = max(rows[1:], key=lambda r: r[1]["hwm_kib"], default=rows[0])
    print(
        f"largest kernel peak: {worst['hwm_kib'] / 1024:.0f} MiB ({worst_name}), "
        f"{worst['hwm_kib'] / base['hwm_kib']:.1f}x the empty kernel's "
        f"{base['hwm_kib'] / 1024:.0f} MiB; with the server "
        f"{(worst['hwm_kib'] + server) / 1024:.0f} MiB; CPU for all lessons "
        f"{sum(r['cpu_s'] for _, r in rows[1:]):.0f} s"
    )
    return 0


def _line(name: str, r: dict) -> str:
    return (
        f"{name:36} {r['hwm_kib'] / 1024:7.0f} MiB {r['rss_kib'] / 1024:8.0f} MiB "
        f"{r['cpu_s']:6.1f} s {r['wall_s']:6.1f} s"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
