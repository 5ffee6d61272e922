import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _threads():
    # Tests are small; one thread avoids oversubscribing CI's two cores when pytest runs
    # subprocesses next to the main process.
    torch.set_num_threads(1)
    yield


@pytest.fixture
def python_exe() -> str:
    return sys.executable


@pytest.fixture
def env_src() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
