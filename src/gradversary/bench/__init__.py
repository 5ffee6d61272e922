"""Benchmarks: one runner over suites declared as data, and recipe comparisons."""

from . import dann  # noqa: F401 - registers the DANN suite's table and stages
from .compare import run_comparison
from .recipes import RECIPES, Recipe

__all__ = ["RECIPES", "Recipe", "run_comparison"]
