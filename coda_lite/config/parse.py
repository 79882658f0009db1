"""Typed settings from YAML and environment values: the machinery behind ``load_config``.

    apply_settings(config, {"llm": {"backend": "ollama", "timeout": "30"}}, "")
    # config.llm.timeout == 30.0; an unknown key or a value of the wrong type -> ConfigError

Values are converted to each dataclass field's declared type (bool, int, float, str, Path,
lists from comma-separated text, optional values from "" or "null").
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "apply_settings"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message names it."""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML or environment value to the field's declared type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "null"}):
            return None
        return _coerce(value, args[0], where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, where) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is Path:
        return Path(str(value)).expanduser()
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported type {tp!r}")  # pragma: no cover


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def apply_settings(obj: Any, data: Mapping[str, Any], where: str) -> None:
    hints = _hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(
                f"unknown config key {where + '.' if where else ''}{key!s} "
                f"(known: {', '.join(sorted(names))})"
            )
        tp = hints[key]
        here = f"{where}.{key}" if where else str(key)
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{here}: expected a mapping of settings, got {value!r}")
            apply_settings(getattr(obj, key), value, here)
        else:
            setattr(obj, key, _coerce(value, tp, here))
