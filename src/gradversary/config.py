"""Typed configuration: dataclasses built from plain dicts, with strict key checking.

YAML files and ``key=value`` command-line overrides become nested dicts; :func:`from_dict`
turns a dict into a dataclass instance, converting scalars to the annotated types and
rejecting unknown keys with a suggestion of the closest valid one.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Opt:
    ...     lr: float = 0.01
    ...     momentum: float = 0.9
    >>> from_dict(Opt, {"lr": 1})
    Opt(lr=1.0, momentum=0.9)
    >>> from_dict(Opt, {"momentun": 0.5})
    Traceback (most recent call last):
    ...
    gradversary.errors.ConfigError: unknown key 'momentun'; did you mean 'momentum'? (valid keys: lr, momentum)
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError

__all__ = ["from_dict", "to_dict", "apply_overrides", "suggest", "parse_value", "ConfigLoader",
           "load_yaml", "read_yaml"]


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading every float spelling Python accepts as a float.

    PyYAML follows YAML 1.1, whose float needs a dot and a signed exponent: ``1e-3`` and
    ``1.0e3`` stay strings there. This loader adds YAML 1.2's form (an optional dot and an
    exponent with an optional sign, underscores between digits as Python allows). Integers
    (``10``) are still integers.

    Example:
        >>> load_yaml("{lr: 1e-3, a: 1.5E3, b: 10, c: .5}")
        {'lr': 0.001, 'a': 1500.0, 'b': 10, 'c': 0.5}
    """


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9][0-9_]*$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`ConfigLoader` (safe: plain data only)."""
    return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader subclass: plain data only


def read_yaml(path: str | os.PathLike, what: str = "config file") -> Any:
    """Read a YAML file; a missing file, text that is not UTF-8 or invalid YAML raise
    :class:`ConfigError` naming the file (``what`` says what it is)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {str(path)!r} is not UTF-8 text (byte 0x{data[e.start]:02x} at "
                          f"offset {e.start}); save it as UTF-8") from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML: {e}") from None


def suggest(key: str, valid: Iterable[str]) -> str:
    """An error fragment naming ``key`` as unknown and the closest of ``valid``."""
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{hint} (valid keys: {', '.join(valid)})"


def _where(path: str) -> str:
    return f" at {path!r}" if path else ""


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise ConfigError."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"invalid value {value!r}{_where(path)}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"invalid value {value!r}{_where(path)}; choose one of {', '.join(map(repr, choices))}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a mapping{_where(path)}, got {value!r}")
        return from_dict(tp, value, path)
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ConfigError(f"expected a list{_where(path)}, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"expected {len(args)} items{_where(path)}, got {len(value)}")
            items = [_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            inner = args[0] if args else Any
            items = [_convert(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a mapping{_where(path)}, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"expected true/false{_where(path)}, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"expected an integer{_where(path)}, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str):  # any spelling float() reads: "1e-3", "1_000.5", "inf"
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number{_where(path)}, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string{_where(path)}, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: Mapping[str, Any] | None, path: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError.

    Args:
        cls: a dataclass type.
        data: a mapping of field names to values (``None`` means all defaults).
        path: dotted location used in error messages.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping{_where(path)}, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError((f"{path}: " if path else "") + suggest(str(key), fields))
        sub = f"{path}.{key}" if path else key
        kwargs[key] = _convert(value, hints[key], sub)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing required key(s) {', '.join(missing)}{_where(path)}")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{e}{_where(path)}") from e
    _resolve_specs(obj, path)
    return obj


def _resolve_specs(obj: Any, path: str) -> None:
    """Resolve the nested ``{name: ...}`` specs (fields made by ``registry.spec_field``) of
    dataclass ``obj`` and of the dataclasses it holds, defaults included."""
    for f in dataclasses.fields(obj):
        value, sub = getattr(obj, f.name), f"{path}.{f.name}" if path else f.name
        if "registry" in f.metadata and value is not None:
            m = f.metadata
            setattr(obj, f.name, m["registry"].resolve(value, sub, m["default_name"], m["fill"]))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            _resolve_specs(value, sub)


def to_dict(obj: Any) -> Any:
    """A dataclass (possibly nested) as plain dicts, lists and scalars, ready for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def parse_value(text: str) -> Any:
    """Parse one override value with YAML rules (``0.1`` and ``1e-3`` -> float, ``[1, 2]`` ->
    list), as :class:`ConfigLoader` reads them."""
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict, returning a new dict.

    Intermediate mappings are created as needed; whether a key is valid is checked later,
    when the dict is turned into typed configs.
    """
    out = typing.cast(dict, _deepcopy(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r} has an empty key")
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a mapping")
            node = nxt
        node[parts[-1]] = parse_value(text)
    return out


def _deepcopy(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _deepcopy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deepcopy(v) for v in x]
    return x
