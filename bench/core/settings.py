"""Flat dataclass settings from `--set key=value` overrides, with one clear error per bad key or value;
the parser of those pairs, and the "did you mean" hint every unknown name gets."""
from __future__ import annotations

import dataclasses
import difflib

from bench.core.errors import BenchError


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


def parse_overrides(pairs: list[str]) -> dict:
    """--set key=value pairs (`--set a=1 b=2`, `--set a=1 --set b=2` or `--set "a=1 b=2"`); values
    parsed as int, float, bool or kept as strings."""
    out = {}
    for pair in (p for token in pairs or [] for p in token.split()):
        if "=" not in pair:
            raise BenchError(f"--set expects key=value pairs (several after one flag: --set a=1 b=2), got '{pair}'; "
                             f"fix: write it as key=value, or put a positional argument before --set")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value.strip())
    return out


def _parse_value(value: str):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
