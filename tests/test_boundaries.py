"""The architecture's boundaries, read from the source: who may import whom, and no circles.

coda_otel observes any pipeline, so it never imports coda_lite; inside coda_lite only the
composition root (``coda_lite.service``) knows coda_otel. Module-level imports must not form a
circle anywhere: imports inside functions are left out (they run after every module has
loaded), ``TYPE_CHECKING`` imports are not (a type-only circle is still two modules that
cannot be understood apart).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("coda_otel", "coda_lite")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path, name: str, modules: set[str], *, top_level_only: bool) -> Iterator[str]:
    """Every module ``path`` imports (absolute names); optionally only the top-level ones.

    ``from pkg import mod`` depends on ``pkg.mod`` when that is a module, else on ``pkg``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node
            elif isinstance(node, ast.If):
                yield from visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                yield from visit(node.body + node.orelse + node.finalbody)
                for handler in node.handlers:
                    yield from visit(handler.body)
            elif not top_level_only:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        yield from visit([child])

    for node in visit(tree.body):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            yield sub if (sub := f"{base}.{alias.name}") in modules else base


def _graph(*, top_level_only: bool) -> dict[str, set[str]]:
    modules = _modules()
    names = set(modules)
    return {
        name: {
            dep
            for dep in _imports(path, name, names, top_level_only=top_level_only)
            if dep in names and dep != name
        }
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_graph_sees_real_imports() -> None:
    graph = _graph(top_level_only=True)
    assert "coda_otel.pipeline.debugger" in graph["coda_lite.service.app"]
    assert "coda_lite.config" in graph["coda_lite.pipeline.build"]


def test_coda_otel_never_imports_coda_lite() -> None:
    graph = _graph(top_level_only=False)
    offenders = {
        (mod, dep)
        for mod, deps in graph.items()
        if mod.startswith("coda_otel")
        for dep in deps
        if dep.startswith("coda_lite")
    }
    assert not offenders, f"coda_otel imports coda_lite: {sorted(offenders)}"


def test_only_the_service_package_imports_coda_otel() -> None:
    graph = _graph(top_level_only=False)
    offenders = {
        (mod, dep)
        for mod, deps in graph.items()
        if mod.startswith("coda_lite") and not mod.startswith("coda_lite.service")
        for dep in deps
        if dep.startswith("coda_otel")
    }
    assert not offenders, f"only coda_lite.service may import coda_otel: {sorted(offenders)}"


def test_no_import_circles() -> None:
    cycles = _cycles(_graph(top_level_only=True))
    assert not cycles, f"modules that import each other in a circle: {cycles}"


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
