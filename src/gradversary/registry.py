"""Named registries for methods, models, datasets and schedules.

A registry maps a name to a factory and, optionally, to the typed config dataclass that the
factory's keyword arguments are validated against. Tests and the CLI iterate over registries,
so a new entry is exercised the day it is added.

Example:
    >>> from gradversary.registry import Registry
    >>> animals = Registry("animal")
    >>> @animals.register("cat")
    ... def make_cat(lives: int = 9):
    ...     return ("cat", lives)
    >>> animals.create("cat", lives=7)
    ('cat', 7)
    >>> animals.names()
    ['cat']
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One registered factory.

    Args:
        name: registry key.
        factory: callable building the object.
        config: dataclass whose fields are the factory's keyword arguments (or ``None``).
        summary: first line of the factory's docstring, shown by ``gradversary list``.
    """

    name: str
    factory: Callable[..., Any]
    config: type | None
    summary: str


class Registry:
    """A name -> factory map. Registering a name twice raises.

    Args:
        kind: what the registry holds, used in error messages ("method", "model", ...).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config: type | None = None) -> Callable:
        """Decorator registering ``factory`` under ``name``, with an optional config dataclass."""

        def deco(factory: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            doc = (factory.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(name, factory, config, doc[0] if doc else "")
            return factory

        return deco

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name raises with the closest valid names."""
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), list(self._entries), n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}{hint} (registered: {', '.join(self.names())})"
            )
        return self._entries[name]

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Build the object registered as ``name`` with ``kwargs``."""
        return self.get(name).factory(**kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """Registered entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
