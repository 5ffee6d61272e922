"""Named registries for methods, models, datasets, schedules, attacks, validators...

A registry maps a name to a factory and, optionally, to the typed config dataclass that the
factory's keyword arguments are validated against. Tests and the CLI iterate over registries,
so a new entry is exercised the day it is added.

:meth:`Registry.create` is the one construction path: it validates the options (against the
entry's config dataclass, or else against the factory's signature), fills defaults and builds.
:meth:`Registry.resolve` validates a ``{name: ..., **options}`` spec without building it and
returns it with every default filled; a config field declared with :func:`spec_field` holds
such a nested spec and is resolved the same way, recursively, whenever its dataclass is read
(:func:`gradversary.config.from_dict`).

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
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import from_dict, suggest, to_dict
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
        args: the factory's leading positional arguments, given to :meth:`create` as they are
            (a method's ``model``).
        context: keyword arguments that :meth:`create` passes to the factory as they are,
            not validated as options (a model's ``in_shape`` and ``num_classes``, a dataset's
            ``root``).
        pass_config: the factory takes the validated config object after the positional
            arguments (``factory(model, cfg)``) instead of its fields as keywords.
    """

    def __init__(self, kind: str, args: tuple[str, ...] = (), context: tuple[str, ...] = (),
                 pass_config: bool = False):
        self.kind = kind
        self.args = tuple(args)
        self.context = tuple(context)
        self.pass_config = pass_config
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

    def create(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Build the object registered as ``name``: ``args`` and the registry's ``context``
        keywords go to the factory as they are; the other ``kwargs`` are its options, validated
        and completed with their defaults.

        Raises:
            ConfigError: an unknown name, an unknown or missing option, a wrong type.
        """
        entry = self.get(name)
        ctx = {k: kwargs.pop(k) for k in self.context if k in kwargs}
        if len(args) != len(self.args):
            raise TypeError(f"{self.kind} {name}: expected the positional argument(s) "
                            f"{', '.join(self.args) or 'none'}, got {len(args)}")
        if entry.config is None:
            self._check_signature(entry, kwargs)
            return entry.factory(*args, **ctx, **kwargs)
        cfg = self.options(name, kwargs, f"{self.kind} {name}")
        if self.pass_config:
            return entry.factory(*args, cfg, **ctx)
        return entry.factory(*args, **ctx, **vars(cfg))

    def options(self, name: str, params: Mapping[str, Any], path: str = "") -> Any:
        """The validated options of ``name``: its config dataclass built from ``params`` (nested
        specs resolved), or ``params`` itself when the entry has no config dataclass."""
        entry = self.get(name)
        if entry.config is None:
            self._check_signature(entry, params)
            return dict(params)
        return from_dict(entry.config, params, path=path or f"{self.kind} {name}")

    def resolve(self, spec: Any, path: str = "", default: str | None = None,
                fill: bool = True) -> dict[str, Any]:
        """Validate ``{name: ..., **options}`` and return it resolved: every option with its
        default, nested specs resolved too (recursively).

        Args:
            spec: the mapping (``name`` may be left out when ``default`` is given).
            path: where the spec sits in the config, for error messages.
            default: the name used when ``spec`` has none.
            fill: ``False`` only checks the options and returns them as given (a spec of
                overrides, whose defaults come from elsewhere); a spec without a name is then
                returned unchecked.
        """
        where = path or self.kind
        if not isinstance(spec, Mapping) or ("name" not in spec and default is None and fill):
            raise ConfigError(f"{where}: expected a mapping with a 'name' key, got {spec!r}")
        spec = dict(spec)
        if "name" not in spec and default is None:
            return spec
        name = spec.pop("name", default)
        self.get(name)
        try:
            opts = self.options(name, spec, where)
        except ConfigError as e:
            raise ConfigError(f"{where} {name!r}: {e}") from None
        if not fill or self.get(name).config is None:
            return {"name": name, **spec}
        return {"name": name, **to_dict(opts)}

    def _check_signature(self, entry: Entry, params: Mapping[str, Any]) -> None:
        """Check ``params`` against the factory's parameters other than the registry's
        positional ``args`` and ``context`` keywords: unknown keys, missing required ones."""
        try:
            sig = inspect.signature(entry.factory).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            return
        names = [k for k, p in sig.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        free = [k for k in names[len(self.args):] if k not in self.context]
        where = f"{self.kind} {entry.name}"
        if not any(p.kind is p.VAR_KEYWORD for p in sig.values()):
            for key in params:
                if key not in free:
                    raise ConfigError(f"{where}: " + (suggest(str(key), free) if free
                                                      else f"takes no options, got {sorted(params)}"))
        missing = [k for k in free if sig[k].default is inspect.Parameter.empty and k not in params]
        if missing:
            raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")

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


def spec_field(registry: Registry, default: Mapping[str, Any] | None = None, *,
               name: str | None = None, fill: bool = True) -> Any:
    """A config dataclass field holding a nested ``{name: ..., **options}`` spec of
    ``registry`` (a schedule, an auxiliary model): :func:`gradversary.config.from_dict`
    resolves it with :meth:`Registry.resolve` (``name`` is the default name, ``fill`` as
    there), so the saved config holds its resolved form."""
    return field(default_factory=lambda: dict(default or {}),
                 metadata={"registry": registry, "default_name": name, "fill": fill})
