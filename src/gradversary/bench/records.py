"""Run records: the small part of a finished benchmark run worth keeping with the results.

A benchmark such as ``bench dann`` at full size costs more CPU hours than one working session
has, and run directories (checkpoints, logs) live on one machine. A *record* keeps what the
results table needs of one run, its summary, beside the resolved config that made it and the
commit and command that ran it, as one small JSON file under ``docs/results/<stem>_runs/``:

    <records>/<variant>/<row>/<cell>.json      {"config", "summary", "commit", "command", ...}
    <records>/<grid variant>/<row>/<grid>.json  a hyper-parameter search's cache file, verbatim

The commit is that of the invocation that wrote the record: the one that made the run, for
runs made since records exist (a run directory from before is recorded when first tabulated).
A record is reused only for the same resolved config (re-resolved, as for run directories,
so an option added since then compares equal at its default), and the results file says how
many cells came from records and from which commits. Records are written atomically and a
record is never replaced by a run of another config: a changed config starts a fresh record
only when its run has finished.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..engine.config import resolve_config
from ..io import atomic_write_text

__all__ = ["RunRecords", "canonical_config"]


def canonical_config(cfg: Any) -> dict:
    """A config (``Config`` or a dict as saved) as a plain dict, re-resolved and without the
    keys that do not change a run's results (the progress bar).

    Raises:
        ValueError: a saved config that no longer resolves.
    """
    d = cfg if isinstance(cfg, dict) else cfg.to_dict()
    d = resolve_config(yaml.safe_load(yaml.safe_dump(d, sort_keys=False)), []).to_dict()
    d = yaml.safe_load(yaml.safe_dump(d, sort_keys=False))
    d.get("train", {}).pop("progress", None)
    return d


class RunRecords:
    """The records of one benchmark, under ``root`` (``None``: records are off)."""

    def __init__(self, root: str | Path | None):
        self.root = None if root is None else Path(root)

    def _path(self, variant: str, row: str, cell: str) -> Path:
        return self.root / variant / row / f"{cell}.json"

    def get(self, variant: str, row: str, cell: str, cfg: Any) -> dict | None:
        """The recorded summary of ``cell`` if it was made with the same resolved config as
        ``cfg``, annotated with ``record`` (commit, command, path); else ``None``."""
        if self.root is None:
            return None
        path = self._path(variant, row, cell)
        if not path.exists():
            return None
        try:
            rec = json.loads(path.read_text())
            same = canonical_config(rec["config"]) == canonical_config(cfg)
        except Exception:  # noqa: BLE001 - an unreadable or outdated record is simply not a match
            return None
        if not same:
            return None
        origin = {k: rec.get(k) for k in ("commit", "command", "imported")}
        return {**rec["summary"], "record": {**origin, "path": str(path)}}

    def put(self, variant: str, row: str, cell: str, cfg: Any, summary: dict, commit: str,
            command: str, **extra: Any) -> Path | None:
        """Record a finished run (its summary without any ``record`` annotation)."""
        if self.root is None:
            return None
        clean = {k: v for k, v in summary.items() if k != "record"}
        rec = {"commit": commit, "command": command, **extra, "config": canonical_config(cfg),
               "summary": clean}
        path = self._path(variant, row, cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(rec, indent=1, sort_keys=False) + "\n")
        return path

    def restore_file(self, variant: str, row: str, name: str, dest: Path) -> bool:
        """Copy a recorded file (a grid cache) to ``dest`` when ``dest`` is missing."""
        if self.root is None or dest.exists():
            return False
        src = self.root / variant / row / name
        if not src.exists():
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dest, src.read_text())
        return True

    def keep_file(self, variant: str, row: str, src: Path) -> None:
        """Record a file (a grid cache) verbatim, replacing an older copy."""
        if self.root is None or not src.exists():
            return
        dest = self.root / variant / row / src.name
        if dest.exists() and dest.read_text() == src.read_text():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dest, src.read_text())
