"""The import direction docs/architecture.md describes, checked on the source: the data path (metrics, logs)
imports neither the control path (cluster, configapi) nor the other data path, and no two modules, nor two
top-level parts of `service`, import each other, directly or through others."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SERVICE = Path(__file__).resolve().parent.parent / "service"
DATA_PATH = ("service.metrics", "service.logs")
CONTROL_PATH = ("service.cluster", "service.configapi")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every module of `service` → the `service` modules it imports (at any depth, TYPE_CHECKING included);
    `from service.logs import metrics` imports the module `service.logs.metrics`."""
    paths = {_module_name(path): path for path in SERVICE.rglob("*.py")}
    found: dict[str, set[str]] = {}
    for module, path in paths.items():
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module
                             for a in node.names)
        found[module] = {n for n in names if n == "service" or n.startswith("service.")}
    return found


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _part(module: str) -> str:
    """The top-level part of `service` a module belongs to: `service.metrics.scrape.loop` → `service.metrics`."""
    return ".".join(module.split(".")[:2])


def test_the_data_path_imports_no_control_path_and_not_the_other_data_path() -> None:
    wrong = []
    for module, targets in _imports().items():
        for target in targets:
            if _within(module, DATA_PATH) and _within(target, CONTROL_PATH):
                wrong.append(f"{module} imports {target}")
            if _within(module, ("service.metrics",)) and _within(target, ("service.logs",)):
                wrong.append(f"{module} imports {target}")
            if _within(module, ("service.logs",)) and _within(target, ("service.metrics",)):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_top_level_parts_of_service_import_each_other_in_one_direction() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    witness: dict[tuple[str, str], str] = {}
    for module, targets in _imports().items():
        for target in targets:
            a, b = _part(module), _part(target)
            if a != b and b != "service":
                graph[a].add(b)
                witness.setdefault((a, b), f"{module} → {target}")
    cycles = _cycles(graph)
    detail = [f"{' ↔ '.join(c)}: " + "; ".join(w for (a, b), w in sorted(witness.items()) if a in c and b in c)
              for c in cycles]
    assert not cycles, "\n".join(detail)


def test_no_module_imports_itself_through_others() -> None:
    """Module by module (TYPE_CHECKING imports included, since they are dependencies too)."""
    cycles = _cycles({module: targets - {module} for module, targets in _imports().items()})
    assert not cycles, "\n".join(" → ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above could pass by never finding anything: a known cycle must be reported."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
