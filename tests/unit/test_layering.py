"""The layers of app/ as the README's architecture section draws them: pages (app/views) and
APIs (app/api) both call services and never each other; services, models, domain and security
import neither; and no module imports, at load time, a module that imports it back."""

from __future__ import annotations

import ast
import pathlib

import pytest

APP = pathlib.Path(__file__).resolve().parents[2] / "app"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in APP.rglob("*.py")}


MODULES = _modules()


def _target(name: str) -> str | None:
    """The app module an import names (a name imported from a module counts as the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: pathlib.Path, *, load_time_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if load_time_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n.startswith("app.") or n == "app":
                t = _target(n)
                if t:
                    found.add(t)
    return found


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else "app"


FORBIDDEN = {
    "views": {"api"},
    "api": {"views"},
    "services": {"views", "api"},
    "models": {"views", "api", "services"},
    "domain": {"views", "api", "services", "models"},
    "security": {"views", "api"},
    "importers": {"views", "api"},
    "workflow_engine": {"views", "api"},
}


def test_layers_import_only_downwards():
    wrong = []
    for module, path in MODULES.items():
        banned = FORBIDDEN.get(_layer(module), set())
        for target in _imports(path, load_time_only=False):
            if _layer(target) in banned:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "layering broken:\n" + "\n".join(sorted(wrong))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles_at_load_time():
    # importing a package's submodule runs the package's __init__ too: that is Python's doing,
    # not a dependency the code chose, so only the named module counts.
    graph = {m: {t for t in _imports(p, load_time_only=True) if t != m}
             for m, p in MODULES.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer", ["views", "api"])
def test_the_check_sees_a_forbidden_import(tmp_path, layer):
    """The checker itself: a page importing an API (or the reverse) is found."""
    other = "api" if layer == "views" else "views"
    path = tmp_path / "m.py"
    path.write_text(f"def f():\n    from app.{other}.base import x\n")
    assert any(_layer(t) == other for t in _imports(path, load_time_only=False))
