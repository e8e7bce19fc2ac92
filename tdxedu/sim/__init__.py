"""Engines: actors as generators, a scheduler (scripted / seeded / exhaustive), verdicts."""

from .engine import (
    Execution,
    Exploration,
    RunResult,
    Verdict,
    World,
    explore,
    replay,
    run_script,
    run_seeded,
)

__all__ = ["World", "Execution", "RunResult", "Exploration", "Verdict", "explore", "replay",
           "run_script", "run_seeded"]
