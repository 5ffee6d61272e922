"""Config files that inherit: a YAML file may name the file(s) it extends under ``base:``.

``base`` is a path relative to the file (or a list of them, applied in order); the file's own
keys are merged over the base: mappings merge key by key, anything else replaces. A component
spec whose ``name`` changes (``method: {name: erm}`` over a ``dann`` base) replaces the base's
spec whole, since the other keys belong to the old component. The result is the raw config
that :func:`~gradversary.engine.config.resolve_config` validates, so a config resolves to the
same thing however it is spelt.

Example:
    >>> merge({"method": {"name": "dann", "gamma": 10}, "train": {"steps": 5}},
    ...       {"method": {"name": "erm"}, "train": {"seed": 1}})
    {'method': {'name': 'erm'}, 'train': {'steps': 5, 'seed': 1}}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import read_yaml
from .errors import ConfigError

__all__ = ["merge", "read_config_file"]


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base`` (neither is changed)."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        same_component = not (isinstance(value, Mapping) and isinstance(old, Mapping)
                              and "name" in value and value.get("name") != old.get("name"))
        if isinstance(value, Mapping) and isinstance(old, Mapping) and same_component:
            out[key] = merge(old, value)
        else:
            out[key] = value
    return out


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The raw config of a YAML file, its ``base`` files merged in.

    Raises:
        ConfigError: a missing file, invalid YAML, a top level that is not a mapping, or a
            cycle of bases.
    """
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: base files form a cycle")
    raw = read_yaml(path)  # missing, not UTF-8, not YAML: a ConfigError naming the file
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping")
    bases = raw.get("base", [])
    out: dict[str, Any] = {}
    for b in [bases] if isinstance(bases, str) else bases:
        out = merge(out, read_config_file(path.parent / b, (*_seen, path.resolve())))
    return merge(out, {k: v for k, v in raw.items() if k != "base"})
