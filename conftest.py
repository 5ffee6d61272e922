"""Repository-level pytest settings.

- One OpenMP thread: tests train small models, often next to subprocesses and other jobs;
  ``train.threads: auto`` honours ``OMP_NUM_THREADS`` as a cap (gradversary.engine.threads),
  and subprocesses inherit it. Set before anything imports torch; an explicit value is kept.
- Skip doctests of modules whose optional extra is missing.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import importlib.util  # noqa: E402

collect_ignore_glob = []
if importlib.util.find_spec("sklearn") is None:
    collect_ignore_glob.append("src/gradversary/sklearn.py")
