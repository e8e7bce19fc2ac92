"""ipywidgets front ends built on ``tdxedu.viz`` (no display side effects at import).

Each module exposes a builder that returns a widget tree; notebooks call it in one line and
tests drive it headlessly with ``.value = ...`` and ``.click()``.
"""
