"""The exit policies' position state as JSON, and back, without loss.

The wallet stores each open trade's policy state (:class:`turbomode.records.positions.Position` for
the ATR rules, :class:`turbomode.smart.exits.SmartPosition` for the Smart rules) rather than
the entry order plus every bar since: a state decoded from the store is *equal* to the one
that was encoded, so tomorrow's bar is managed exactly as if the process had never stopped,
and a day costs one bar per position however long the trade has been held.

The encoding is ``{"type": <class name>, "fields": {<field>: <JSON value>}}``; dates are ISO
text and enums their value, and decoding converts each field back by its declared type.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from datetime import date
from enum import Enum
from typing import Any

from turbomode.errors import TurboModeError
from turbomode.records.positions import Position
from turbomode.smart.exits import SmartPosition

STATE_TYPES: dict[str, type] = {"Position": Position, "SmartPosition": SmartPosition}


class StateCodecError(TurboModeError, ValueError):
    """A policy state that cannot be stored, or a stored one that cannot be read back."""


def _encode_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StateCodecError(f"{where}: {value} cannot be stored as JSON")
        return value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_encode_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise StateCodecError(f"{where}: {type(value).__name__} is not a storable state value")


def encode_state(state: Any) -> dict[str, Any]:
    """A policy state as a JSON-ready dict (module docstring)."""
    name = type(state).__name__
    if not dataclasses.is_dataclass(state) or STATE_TYPES.get(name) is not type(state):
        raise StateCodecError(
            f"unknown policy state type {name}; expected one of {list(STATE_TYPES)}"
        )
    return {
        "type": name,
        "fields": {
            f.name: _encode_value(getattr(state, f.name), f"{name}.{f.name}")
            for f in dataclasses.fields(state)
        },
    }


def _decode_value(value: Any, hint: Any, where: str) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode_value(value, kinds[0], where) if len(kinds) == 1 else value
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return [_decode_value(v, item, where) for v in value]
    if origin is typing.Literal:
        return value
    if isinstance(hint, type):
        if issubclass(hint, Enum):
            return hint(value)
        if issubclass(hint, date):
            return date.fromisoformat(value)
        if hint is float:
            return float(value)
        if hint is int:
            return int(value)
    return value


def decode_state(data: dict[str, Any]) -> Any:
    """The policy state :func:`encode_state` encoded."""
    try:
        cls = STATE_TYPES[data["type"]]
        values = data["fields"]
    except (KeyError, TypeError):
        raise StateCodecError(f"not an encoded policy state: {data!r}") from None
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise StateCodecError(f"{cls.__name__}: unknown stored field(s) {unknown}")
    return cls(**{k: _decode_value(v, hints[k], f"{cls.__name__}.{k}") for k, v in values.items()})
