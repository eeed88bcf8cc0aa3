"""Method registry. A method is named in one of three ways, all resolved here:
- a built-in name: one lazy dict of "module:Class" strings below (importing the harness never
  imports a method's heavy dependencies);
- an entry point in the group `wsfss_bench.methods` of any installed package
  (`[project.entry-points."wsfss_bench.methods"] mymethod = "mypkg.mymodule:MyMethod"`);
- a module path, `mypkg.mymodule:MyMethod`, importable from the current Python path.
Records, tables and checkpoints use the method's label: the built-in or entry-point name, or for a
module path the class's `name` attribute (so a table row reads "mymethod", not a path); the record
keeps where the class came from (`method_source`)."""
from __future__ import annotations

import importlib
from functools import lru_cache
from importlib import metadata

from bench.core.errors import BenchError
from bench.core.settings import did_you_mean

METHODS = {
    "background": "methods.background:AllBackground",
    "ours": "methods.ours:Ours",
    "ours-noE": "methods.ours:OursNoE",
    "panet": "methods.panet:Panet",
    "amp": "methods.amp:Amp",
    "pfenet": "methods.pfenet:Pfenet",
}
ENTRY_POINT_GROUP = "wsfss_bench.methods"


@lru_cache(maxsize=1)
def entry_point_methods() -> dict[str, str]:
    """Installed packages' methods: name -> "module:Class" (a built-in name cannot be taken)."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name not in METHODS}


def known_methods() -> dict[str, str]:
    return {**METHODS, **entry_point_methods()}


def method_source(name: str) -> str:
    """"module:Class" of a built-in name, an entry point, or a module path."""
    known = known_methods()
    if name in known:
        return known[name]
    if ":" in name:
        return name
    raise BenchError(f"unknown method '{name}'{did_you_mean(name, known)}; known: {', '.join(sorted(known))}; "
                     f"or give a class as module:Class")


def method_class(name: str):
    source = method_source(name)
    module, _, cls = source.partition(":")
    try:
        found = getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise BenchError(f"method {name}: cannot import module '{module}' ({exc}); fix: install its package or put "
                         f"its folder on PYTHONPATH") from None
    except AttributeError:
        raise BenchError(f"method {name}: module '{module}' has no class '{cls}'; fix: name the class as module:Class") from None
    for needed in ("fit", "predict", "state_dict", "load_state_dict"):
        if not callable(getattr(found, needed, None)):
            raise BenchError(f"method {name}: {source} has no {needed}() (the Method protocol, bench/core/types.py)")
    return found


def method_label(name: str) -> str:
    """The name records and tables use (see the module docstring)."""
    if name in known_methods():
        return name
    label = getattr(method_class(name), "name", None)
    if not isinstance(label, str) or not label or "/" in label or ":" in label:
        raise BenchError(f"method {name}: its class needs a `name` attribute (a short string without '/' or ':') "
                         f"to label records and tables")
    if label in known_methods() and known_methods()[label] != method_source(name):
        raise BenchError(f"method {name} calls itself '{label}', the name of the method {known_methods()[label]}; "
                         f"fix: give its class another `name`")
    return label


def create_method(name: str, config: dict):
    """Instantiate a method with its defaults overridden by `config` (from --set key=value)."""
    cls = method_class(name)
    try:
        return cls(**config)
    except TypeError as exc:  # a method without a config dataclass: unexpected keyword
        raise BenchError(f"method {name} does not take the setting(s) {', '.join(sorted(config))} ({exc}); "
                         f"fix: drop the --set values") from None
