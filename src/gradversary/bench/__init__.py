"""Benchmarks: one runner over suites declared as data, and recipe comparisons."""

from . import dann, great  # noqa: F401 - register the suites' stages and tables
from .compare import run_comparison
from .recipes import RECIPES, Recipe

__all__ = ["RECIPES", "Recipe", "run_comparison"]
