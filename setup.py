"""What pyproject.toml cannot say: the lessons ship inside the package.

The lessons live in notebooks/ at the top of the repository (the README, Binder and the
authors' tools point there); a wheel carries their .ipynb as the package data
tdxedu/notebooks/, where `tdxedu lab` finds them. Their jupytext .py twins are the lessons'
review copies, not modules, so they stay out of the wheel.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

LESSONS = "tdxedu.notebooks"


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        if package == LESSONS:
            return []
        return super().find_package_modules(package, package_dir)


setup(
    packages=[*find_packages(include=["tdxedu", "tdxedu.*"]), LESSONS],
    package_dir={LESSONS: "notebooks"},
    cmdclass={"build_py": BuildPy},
)
