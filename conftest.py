"""Root pytest configuration.

The jupytext twins ``notebooks/*.py`` are not test modules: the lessons run as notebooks
through nbval (``--nbval-lax``), so keep pytest from importing their twins.
"""

collect_ignore_glob = ["notebooks/*.py"]
