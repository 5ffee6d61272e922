"""Benchmarks: one runner over suites declared as data, and recipe comparisons."""

from ..report import great_tables, uda_tables  # noqa: F401 - register the suites' tables
from . import dann, great  # noqa: F401 - register the suites' stages
from .compare import run_comparison
from .recipes import RECIPES, Recipe

__all__ = ["RECIPES", "Recipe", "run_comparison"]
