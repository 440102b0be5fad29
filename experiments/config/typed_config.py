"""Typed configs: nested dataclasses parsed from plain data, with one-line errors that name the key path.

``parse(Cls, data, "vae.settings")`` builds ``Cls`` from a dict, recursing into fields typed as dataclasses,
lists, dicts, unions and ``Literal``. The dataclass defaults are the only defaults. An unknown key at any
depth is refused with its full path, the valid keys and, for a likely misspelling, a suggestion::

    ConfigError: vae.settings.train.stesp: unknown key (did you mean 'steps'?); valid keys: batch_size, lr,
    optimizer, steps

A dataclass may define ``validate(self)`` (raising ``ValueError``) for checks across fields; its message
is prefixed with the path too.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal, Union

import yaml

T = typing.TypeVar("T")


class ConfigError(ValueError):
    """A config value or key that cannot be accepted; the message is one line and starts with the path."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 (PyYAML) reads ``1e-05`` as a string: a float needs a dot there. JSON, which writes small
    floats that way, is meant to be YAML, and every job's ``config.json`` is read as YAML; so exponent
    floats are floats here (YAML 1.2's rule)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(stream):
    """YAML (or JSON) text or a file object, with exponent floats read as floats (``_Loader``)."""
    return yaml.load(stream, Loader=_Loader)


def suggestion(word: str, valid) -> str:
    close = difflib.get_close_matches(str(word), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(tp) -> str:
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _parse_value(tp, value, path: str):
    if tp is Any:
        return copy.deepcopy(value)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _parse_value(arg, value, path)
            except ConfigError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{path}: {value!r} is not valid{suggestion(value, choices)}; valid: "
                              f"{', '.join(map(str, choices))}")
        return value
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return [_parse_value(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        key_tp, value_tp = typing.get_args(tp) or (Any, Any)
        return {k: _parse_value(value_tp, v, _join(path, k)) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return copy.deepcopy(value)
    raise TypeError(f"{path}: unsupported config type {tp!r}")  # a bug in a config class, not in the config


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def parse(cls: type[T], data, path: str = "") -> T:
    """``cls`` built from ``data`` (a mapping, or ``None`` for all defaults)."""
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    where = path or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    valid = field_names(cls)
    for key in data:
        if key not in valid:
            raise ConfigError(f"{_join(path, key)}: unknown key{suggestion(key, valid)}; "
                              f"valid keys: {', '.join(sorted(valid))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in data:
            values[f.name] = _parse_value(hints[f.name], data[f.name], _join(path, f.name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(path, f.name)}: required key is missing")
    try:
        obj = cls(**values)
        if hasattr(obj, "validate"):
            obj.validate()
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    return obj


def to_dict(obj) -> dict:
    """The plain-data form of a parsed config (what ``parse`` reads back to an equal object)."""
    return dataclasses.asdict(obj)


def merge(base: dict, update: dict | None, replace: tuple[str, ...] = ()) -> dict:
    """``update`` deep-merged over ``base``; keys in ``replace`` are taken whole, never merged."""
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in replace:
            out[key] = merge(out[key], value, replace)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(config: dict, text: str) -> None:
    """Set ``key.path=value`` (the value read as YAML) in ``config``, in place."""
    if "=" not in text:
        raise ConfigError(f"--set expects key.path=value, got {text!r}")
    key, value = text.split("=", 1)
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a mapping")
    node[parts[-1]] = load_yaml(value)
