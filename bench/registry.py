"""Method registry: one lazy dict of "module:Class" strings, so importing the harness never
imports a method's heavy dependencies. Adding a method = one file under methods/ + one line here."""
from __future__ import annotations

import difflib
import importlib

from bench.errors import BenchError

METHODS = {
    "background": "methods.background:AllBackground",
    "oracle": "methods.oracle:Oracle",
    "ours": "methods.ours:Ours",
    "ours-noE": "methods.ours:OursNoE",
    "panet": "methods.panet:Panet",
    "amp": "methods.amp:Amp",
    "pfenet": "methods.pfenet:Pfenet",
}
# Registered for the test suite and the harness's own checks; `bench list` marks them.
TEST_ONLY = {"oracle"}


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def method_class(name: str):
    if name not in METHODS:
        raise BenchError(f"unknown method '{name}'{did_you_mean(name, METHODS)}; known: {', '.join(sorted(METHODS))}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create_method(name: str, config: dict):
    """Instantiate a method with its defaults overridden by `config` (from --set key=value)."""
    cls = method_class(name)
    try:
        return cls(**config)
    except TypeError as exc:  # a method without a config dataclass: unexpected keyword
        raise BenchError(f"method {name} does not take the setting(s) {', '.join(sorted(config))} ({exc}); "
                         f"fix: drop the --set values") from None
