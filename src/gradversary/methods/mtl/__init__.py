"""Multi-task methods: balancers of the task losses (one small file each) and GREAT-MTL.

``mtl_equal`` (equal weights), ``mtl_uncertainty`` (Kendall et al.), ``mtl_gradnorm`` (Chen et
al.) and ``great_mtl`` (Sinha et al.'s gradient alignment layers): the four rows of GREAT's
Table 4 (arXiv:1806.08028).
"""

from . import equal, gradnorm, great, uncertainty  # noqa: F401  (registers)
from .base import MultiTaskMethod

__all__ = ["MultiTaskMethod"]
