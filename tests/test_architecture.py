"""The apps' import graph has no cycles, function-level imports included.

import-linter's layers contract checks imports *between* apps; a cycle inside one app
(``a`` imports ``b`` at the top, ``b`` imports ``a`` inside a function) passes it. grimp,
which import-linter builds its graph with, sees imports inside functions too, so a cycle
hidden that way is found here.
"""

from __future__ import annotations

import grimp

PACKAGES = ("partners", "consent", "marketplace", "billing", "demo", "portal")


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on long import chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            if successors:
                child = successors.pop()
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, sorted(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def import_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)
    return {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}


def test_tarjan_finds_a_cycle_and_leaves_a_chain_alone() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert sorted(c for c in strongly_connected_components(graph) if len(c) > 1) == [
        ["a", "b", "c"]
    ]
    assert all(len(c) == 1 for c in strongly_connected_components({"a": {"b"}, "b": set()}))


def test_no_import_cycles_between_modules() -> None:
    cycles = [c for c in strongly_connected_components(import_graph()) if len(c) > 1]
    assert not cycles, "import cycles (modules that import each other, directly or not):\n" + (
        "\n".join(" <-> ".join(cycle) for cycle in cycles)
    )
