"""One direction of imports inside the fixed top-level folders (DESIGN.md, "Layers"):
bench.core < bench.data < pseudo_labels < backbones < methods < bench.harness < bench.report
< bench.api < bench.cli. Every import is read with `ast`, those inside functions too, and the
test fails on an upward import or on any cycle between modules, naming file:line. No exceptions."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "pseudo_labels", "backbones", "methods")
LAYERS = ("bench.core", "bench.data", "pseudo_labels", "backbones", "methods", "bench.harness", "bench.report",
          "bench.api", "bench.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    """Index of the deepest layer prefix of `module`; None for the bare `bench` package."""
    hits = [i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")]
    return hits[-1] if hits else None


def imports_of(path: Path, module: str, known: set[str]) -> list[tuple[str, int]]:
    """(imported project module, line) for every import in the file of `module`, at any depth (inside
    functions too). `from a import b` names module a.b when that is a module, else a."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # `import a.b.c` of a function path -> its module
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in PACKAGES:
                out.append((name, node.lineno))
    return out


def project_graph() -> dict[str, list[tuple[str, int, str]]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    known = set(files)
    return {m: [(dep, line, f"{p.relative_to(ROOT)}:{line}") for dep, line in imports_of(p, m, known)]
            for m, p in sorted(files.items())}


def upward_imports(graph) -> list[str]:
    bad = []
    for module, deps in graph.items():
        here = layer_of(module)
        for dep, _, where in deps:
            there = layer_of(dep)
            if here is None or there is None:  # the bare `bench` package (empty): see test_every_module_is_in_a_layer
                continue
            if there > here:
                bad.append(f"{where}: {module} ({LAYERS[here]}) imports {dep} ({LAYERS[there]}), a higher layer")
    return bad


def cycles(graph) -> list[str]:
    """Every cycle found by depth-first search, as 'a -> b (file:line) -> a'."""
    edges = {m: {dep: where for dep, _, where in deps if dep != m and dep in graph} for m, deps in graph.items()}
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for dep, where in edges[m].items():
            if state.get(dep) == "open":
                loop = stack[stack.index(dep):] + [dep]
                found.append(" -> ".join(f"{a} ({edges[a][b]})" for a, b in zip(loop, loop[1:])) + f" -> {dep}")
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[m] = "done"

    for m in edges:
        if m not in state:
            visit(m)
    return found


def test_no_module_imports_a_higher_layer():
    bad = upward_imports(project_graph())
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    found = cycles(project_graph())
    assert not found, "\n".join(found)


def test_every_module_is_in_a_layer():
    graph = project_graph()
    outside = [m for m in graph if layer_of(m) is None and m != "bench"]
    assert not outside, outside


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    """The guard itself: a fake graph with a methods -> bench.harness import and a two-module cycle."""
    graph = {"methods.x": [("bench.harness.runner", 3, "methods/x.py:3")], "bench.harness.runner": [],
             "backbones.a": [("backbones.b", 5, "backbones/a.py:5")], "backbones.b": [("backbones.a", 7, "backbones/b.py:7")]}
    assert upward_imports(graph) == ["methods/x.py:3: methods.x (methods) imports bench.harness.runner (bench.harness), a higher layer"]
    assert cycles(graph) == ["backbones.a (backbones/a.py:5) -> backbones.b (backbones/b.py:7) -> backbones.a"]


def test_function_level_imports_are_read(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("import numpy\n\n\ndef f():\n    if True:\n        from bench.harness.runner import run\n"
                   "    import backbones.trunks as t\n")
    known = {"bench.harness.runner", "backbones.trunks", "backbones"}
    assert sorted(imports_of(src, "methods.x", known)) == [("backbones.trunks", 7), ("bench.harness.runner", 6)]
