"""Flat dataclass settings from `--set key=value` overrides, with one clear error per bad key or value."""
from __future__ import annotations

import dataclasses

from bench.errors import BenchError


def settings_from(cls, overrides: dict | None, what: str, choices: dict | None = None):
    """`cls` (a dataclass) with `overrides` applied; values coerced to each field's default type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    clean = {}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise BenchError(f"unknown {what} setting '{key}'; known: {', '.join(fields)}")
        clean[key] = _coerce(key, value, type(fields[key].default), what)
        if choices and key in choices and clean[key] not in choices[key]:
            raise BenchError(f"{what} setting {key}={value} is not one of {', '.join(choices[key])}")
    return cls(**clean)


def _coerce(key: str, value, kind: type, what: str):
    if kind is bool and isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise BenchError(f"{what} setting {key}={value!r} should be a {kind.__name__}") from None
