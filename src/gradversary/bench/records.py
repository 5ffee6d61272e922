"""Run records: the small part of a finished benchmark run worth keeping with the results.

A benchmark at full size costs more CPU hours than one working session has, and run
directories (checkpoints, logs) live on one machine. A *record* keeps what the results table
needs of one run, its summary, beside the resolved config that made it and the commit and
command that ran it, as one small JSON file under ``docs/results/<stem>_runs/``:

    <records>/<variant>/<row>/<cell>.json       {"config", "summary", "commit", "command", ...}
    <records>/<variant>/<row>/<name>.json       a stage's file (a grid search's cache, an
                                                evaluation), verbatim

A record is reused only for the same resolved config (:func:`same_config`). Records are
written atomically and a record is never replaced by a run of another config: a changed config
starts a fresh record only when its run has finished.

The matching rule, so that records outlive new options: **a key missing from a record matches
when today's value of that key is its default.** A record made before ``selection.validators``
or ``train.divergence`` existed still matches a config that leaves them at their defaults, and
no longer matches one that sets them otherwise. The same holds inside nested ``{name: ...}``
specs (a schedule's new option). It is implemented by resolving the record's config again with
today's code (which fills each missing key with its default, recursively) and comparing it with
today's resolved config; keys that set only how fast a run goes, or where its directory goes by
default (``out_dir``: a benchmark always names the run directory itself), are left out of the
comparison.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..engine.config import resolve_config
from ..io import atomic_write_text

__all__ = ["RunRecords", "canonical_config", "same_config"]


def canonical_config(cfg: Any) -> dict:
    """A config (``Config`` or a dict as saved) as a plain dict, re-resolved and without the
    keys that set how fast a run goes or where it is written, not what it computes (the progress
    bar, the thread count: ``train.threads`` became ``auto`` by default after most records were
    made; ``out_dir``, the default parent of a run directory, which a benchmark never uses).

    Raises:
        ValueError: a saved config that no longer resolves.
    """
    d = cfg if isinstance(cfg, dict) else cfg.to_dict()
    d = resolve_config(yaml.safe_load(yaml.safe_dump(d, sort_keys=False)), []).to_dict()
    d = yaml.safe_load(yaml.safe_dump(d, sort_keys=False))
    for key in ("progress", "threads"):
        d.get("train", {}).pop(key, None)
    d.pop("out_dir", None)
    return d


def same_config(saved: Any, cfg: Any) -> bool:
    """Whether ``saved`` (a config, a dict, or a run directory's ``config.yaml`` path) is the
    resolved config ``cfg``: the one "is this the same config?" test of the benchmarks. A key
    missing from ``saved`` matches when ``cfg`` has that key's default (see the module's
    docstring). A missing, unreadable or no longer valid config is not a match."""
    try:
        if isinstance(saved, Path):
            saved = yaml.safe_load(saved.read_text())
        return canonical_config(saved) == canonical_config(cfg)
    except Exception:  # noqa: BLE001 - an unreadable or outdated config is simply not a match
        return False


class RunRecords:
    """The records of one benchmark, under ``root`` (``None``: records are off)."""

    def __init__(self, root: str | Path | None):
        self.root = None if root is None else Path(root)

    def path(self, variant: str, row: str, name: str) -> Path | None:
        """Where a record or a stage's file ``name`` (without ``.json``) lives."""
        return None if self.root is None else self.root / variant / row / f"{name}.json"

    def get(self, variant: str, row: str, cell: str, cfg: Any) -> dict | None:
        """The recorded summary of ``cell`` if it was made with the same resolved config as
        ``cfg``, annotated with ``record`` (commit, command, path); else ``None``."""
        rec = self.read(variant, row, cell)
        if rec is None or "config" not in rec or not same_config(rec["config"], cfg):
            return None
        origin = {k: rec.get(k) for k in ("commit", "command", "imported")}
        return {**rec["summary"], "record": {**origin, "path": str(self.path(variant, row, cell))}}

    def put(self, variant: str, row: str, cell: str, cfg: Any, summary: dict, commit: str,
            command: str, **extra: Any) -> None:
        """Record a finished run (its summary without any ``record`` annotation)."""
        clean = {k: v for k, v in summary.items() if k != "record"}
        self.write(variant, row, cell, {"commit": commit, "command": command, **extra,
                                        "config": canonical_config(cfg), "summary": clean})

    def read(self, variant: str, row: str, name: str) -> dict | None:
        """A recorded JSON file, or ``None`` (records off, missing or unreadable)."""
        path = self.path(variant, row, name)
        try:
            return json.loads(path.read_text()) if path is not None else None
        except (OSError, ValueError):
            return None

    def write(self, variant: str, row: str, name: str, data: dict) -> None:
        """Record ``data`` as ``name`` (replacing an older copy); nothing when records are off."""
        path = self.path(variant, row, name)
        if path is not None and self.read(variant, row, name) != data:
            atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")
