"""The registry of bench tables: name -> ``fn(results, suite) -> list of Markdown lines``.

A suite's spec (``configs/bench/<suite>.yaml``) names its table; the runner renders the results
JSON through it, below the common provenance header. The tables themselves are in
:mod:`~gradversary.report.uda_tables` and :mod:`~gradversary.report.great_tables`.
"""

from __future__ import annotations

from ..registry import Registry

__all__ = ["TABLES"]

TABLES = Registry("bench table")
