"""Small file helpers shared by the engine and the reports: atomic text writes, JSONL reads."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_text", "read_metrics", "default_mode", "git_commit"]


def default_mode() -> int:
    """The permissions a plain ``open(..., "w")`` would give (0o666 less the umask); temporary
    files from :func:`tempfile.mkstemp` are 0o600 and would otherwise keep that."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_metrics(path: str | os.PathLike, kind: str | None = None) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` (optionally only one ``kind``); a torn last line from a
    killed process is skipped."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or rec.get("kind") == kind:
            out.append(rec)
    return out


def git_commit() -> str:
    """The commit of the code this process runs (with ``-dirty`` when the tree had changes
    outside ``docs/results/``), or ``unknown``.

    Changes under ``docs/results/`` are outputs, not code: re-rendering several results files
    one after another at one commit leaves each of them credited to that commit.

    Read once per working directory and process, at the first call: a benchmark calls it when
    it starts, so the files it writes itself (plots, before the results header) cannot mark
    the tree dirty, and a commit made while it runs is not credited with its results.
    """
    return _commit_at(os.getcwd())


@functools.cache
def _commit_at(cwd: str) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, check=True, cwd=cwd).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":/", ":(top,exclude)docs/results"],
                               capture_output=True, text=True, check=True, cwd=cwd).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
