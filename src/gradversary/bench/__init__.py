"""Benchmarks and comparisons composed from the engine and reports."""

from .compare import run_comparison
from .recipes import RECIPES, Recipe

__all__ = ["RECIPES", "Recipe", "run_comparison"]
