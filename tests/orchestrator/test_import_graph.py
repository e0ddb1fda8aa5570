"""The packages' import graph, read from their sources: no cycles, no private name imported from another module,
and the layers one way (fitting and sweepstore free of torch and Ray, the orchestrator free of concrete domains)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "fitting", "domains", "sweepstore")
CONCRETE_DOMAINS = [["domains", p.parent.name] for p in (ROOT / "domains").glob("*/__init__.py")]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p))
            for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(name: str, tree: ast.Module, known: set[str]) -> Iterator[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import of ``tree``, lazy ones included."""
    package = name if name in known and (ROOT / name.replace(".", "/")).is_dir() else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in known:  # ``from pkg import module``
                    yield f"{base}.{alias.name}", None, node.lineno
                else:
                    yield base, alias.name, node.lineno


def owner(module: str, known: set[str]) -> str | None:
    """The project module an import refers to (``a.b.c`` may name module ``a.b`` and its attribute)."""
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


@cache
def graph() -> tuple[dict[str, set[str]], list[str], dict[str, set[str]]]:
    trees = sources()
    known = set(trees)
    edges: dict[str, set[str]] = {m: set() for m in known}
    private: list[str] = []
    external: dict[str, set[str]] = {m: set() for m in known}
    for name, tree in trees.items():
        for target, imported, line in imports(name, tree, known):
            mod = owner(target, known)
            if mod is None:
                external[name].add(target.split(".")[0])
                continue
            if mod != name and not name.startswith(f"{mod}."):  # a package's own __init__ is set up first
                edges[name].add(mod)
            if imported and imported.startswith("_") and mod != name:
                private.append(f"{name}:{line} imports {imported} from {mod}")
    return edges, private, external


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    found = cycles(graph()[0])
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_private_name_is_imported_from_another_module() -> None:
    private = graph()[1]
    assert not private, "\n".join(private)


def test_layers_point_one_way() -> None:
    edges, _, external = graph()
    wrong = []
    for module in edges:
        top = module.split(".")[0]
        if top in ("fitting", "sweepstore"):
            wrong += [f"{module} imports {x}" for x in external[module] & {"torch", "ray"}]
        if top == "sweepstore":
            wrong += [f"{module} imports {t}" for t in edges[module] if not t.startswith("sweepstore")]
        if top == "fitting":
            wrong += [f"{module} imports {t}" for t in edges[module] if t.split(".")[0] in ("orchestrator", "domains")]
        if top == "orchestrator":  # domains only through their interface and registry, never a concrete one
            wrong += [f"{module} imports {t}" for t in edges[module] if t.split(".")[:2] in CONCRETE_DOMAINS]
    assert not wrong, "\n".join(sorted(wrong))


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    tree = ast.parse("from .b import c\nfrom . import d\ndef f():\n    import x.y\n")
    known = {"p.a", "p.b", "p.d"}
    assert sorted(imports("p.a", tree, known), key=str) == sorted(
        [("p.b", "c", 1), ("p.d", None, 2), ("x.y", None, 4)], key=str)
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
