"""The package's shape: imports flow one way (no cycle between any of its modules)."""

import ast
import os

import gmdgm_tf

PACKAGE = os.path.dirname(os.path.abspath(gmdgm_tf.__file__))


def module_name(path):
    rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def package_imports(path, modules):
    """gmdgm_tf modules that `path` imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import mod` needs pkg/mod.py (pkg/__init__ may still be loading);
            # `from mod import name` needs mod.
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [n for n in subs if n in modules] or [node.module]
        else:
            continue
        found.update(n for n in names if n in modules)
    return found


def import_graph():
    paths = [os.path.join(root, f) for root, _, files in os.walk(PACKAGE)
             for f in files if f.endswith(".py")]
    modules = {module_name(p): p for p in paths}
    return {m: package_imports(p, modules) - {m} for m, p in modules.items()}


def find_cycle(graph):
    """-> a list of modules forming a cycle, or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, stack + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert "gmdgm_tf.experiment" in graph and "gmdgm_tf.export" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None

