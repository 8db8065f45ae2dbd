"""Results as plain data and back, derived from their dataclass fields.

Every result twinlens shows is a frozen dataclass of numbers, strings, tuples, dicts and other
such dataclasses. `Record` gives it `to_dict()` (each field by name; nested records as dicts,
tuples as lists) and `from_dict()` (the inverse, guided by the field types), so no result writes
its own serializer and every kind can be saved in History and reopened without the model:

    >>> import json
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Cell(Record):
    ...     token: str
    ...     prob: float
    >>> cell = Cell("␣Paris", 0.31)
    >>> Cell.from_dict(json.loads(json.dumps(cell.to_dict()))) == cell
    True

Floats survive strict JSON too: lib.app.export writes ±inf/NaN as strings, and `from_dict` reads
them back as floats. `encode`/`decode` do the same for any value of a known type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any, TypeVar, Union

R = TypeVar("R", bound="Record")


def encode(value: object) -> object:
    """Plain data for `value`: a dataclass → dict of its fields, a tuple/list → list, a dict → dict."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(kind: Any, data: object) -> Any:
    """The value of type `kind` that `encode` turned into `data`."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        options = typing.get_args(kind)
        if data is None and type(None) in options:
            return None
        last_error: Exception | None = None
        for option in (o for o in options if o is not type(None)):
            try:
                return decode(option, data)
            except (TypeError, ValueError, KeyError) as exc:
                last_error = exc
        raise ValueError(f"{data!r} fits none of {kind}") from last_error
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v) for v in _sequence(data))
        return tuple(decode(a, v) for a, v in zip(args, _sequence(data), strict=True))
    if origin in (list, typing.get_origin(list[int])):
        (arg,) = typing.get_args(kind)
        return [decode(arg, v) for v in _sequence(data)]
    if origin is dict or kind is dict:
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {data!r}")
        return dict(data)
    if dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise TypeError(f"expected an object for {kind.__name__}, got {data!r}")
        hints = _hints(kind)
        values = {
            f.name: decode(hints[f.name], data[f.name])
            for f in dataclasses.fields(kind)
            if f.init and f.name in data
        }
        return kind(**values)
    if kind is float:
        if isinstance(data, bool) or not isinstance(data, (int, float, str)):
            raise TypeError(f"expected a number, got {data!r}")
        return float(data)  # "inf", "-inf" and "nan" as written by strict JSON
    if kind in (int, str, bool):
        if not isinstance(data, kind) or (kind is int and isinstance(data, bool)):
            raise TypeError(f"expected {kind.__name__}, got {data!r}")
        return data
    if kind is Any or kind is object:
        return data
    raise TypeError(f"cannot read a value of type {kind}")


def _sequence(data: object) -> list | tuple:
    if not isinstance(data, (list, tuple)):
        raise TypeError(f"expected a list, got {data!r}")
    return data


class Record:
    """Mixin for frozen dataclasses: `to_dict()` from the fields and `from_dict()` back."""

    def to_dict(self) -> dict:
        return encode(self)  # type: ignore[return-value]

    @classmethod
    def from_dict(cls: type[R], data: dict) -> R:
        """The inverse of `to_dict` (missing fields take their defaults)."""
        return decode(cls, data)
