"""The package's import graph: no module imports another that (through any chain) imports it back,
and the bottom package :mod:`dgl_bilevel.numerics` imports nothing above it.

Read from the source with ``ast`` -- every import statement counts, also those under
``if TYPE_CHECKING:`` and inside functions -- with relative imports resolved, so the test sees
what a reader sees, whatever happens to be imported already.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = "dgl_bilevel"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
BOTTOM = f"{PACKAGE}.numerics"
#: What the bottom package may import of the rest of the package: the errors, and the torch-free name
#: registries (``LINEAR_SOLVERS`` lists the solvers the configuration offers), which import only the errors.
BELOW_BOTTOM = frozenset({f"{PACKAGE}.errors", f"{PACKAGE}.registry"})
#: Third-party packages the bottom package may import (besides the standard library).
BOTTOM_THIRD_PARTY = frozenset({"torch"})

def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imported_names(name: str) -> set[str]:
    """Every absolute module name ``name``'s source imports (outside modules included, as written)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            # ``from package import submodule`` imports the submodule; other names come from ``source`` itself
            submodules = {f"{source}.{alias.name}" for alias in node.names} & MODULES.keys()
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(source)
    return found


def internal_edges() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name not itself a module counts as its package)."""
    edges: dict[str, set[str]] = {}
    for name in MODULES:
        targets = set()
        for imported in imported_names(name):
            while imported and imported not in MODULES and imported.startswith(PACKAGE + "."):
                imported = imported.rpartition(".")[0]
            if imported in MODULES and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(edges)))
    try:
        for node in sorted(edges):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_the_source_is_found():
    assert BOTTOM in MODULES and f"{PACKAGE}.hypergrad.implicit" in MODULES
    assert f"{BOTTOM}.linalg" in internal_edges()[f"{PACKAGE}.hypergrad.adjoint"] | internal_edges()[f"{BOTTOM}.implicit_diff"]


def test_no_import_cycles_but_the_known_ones():
    found = cycles(internal_edges())
    assert not found, f"import cycles: {[sorted(c) for c in found]}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n == BOTTOM or n.startswith(BOTTOM + ".")))
def test_the_bottom_package_imports_nothing_above_it(name):
    allowed_outside = set(sys.stdlib_module_names) | BOTTOM_THIRD_PARTY | {"__future__"}
    for imported in imported_names(name):
        if imported == PACKAGE or imported.startswith(PACKAGE + "."):
            inside = imported == BOTTOM or imported.startswith(BOTTOM + ".")
            assert inside or imported in BELOW_BOTTOM, f"{name} imports {imported}, which is above {BOTTOM}"
        else:
            assert imported.split(".")[0] in allowed_outside, f"{name} imports {imported}: only torch and the stdlib"


@pytest.mark.parametrize("name", sorted(BELOW_BOTTOM))
def test_what_the_bottom_package_imports_stays_below_it(name):
    edges = internal_edges()
    assert edges[name] <= BELOW_BOTTOM, f"{name} imports {sorted(edges[name] - BELOW_BOTTOM)}"


def test_the_moved_modules_keep_their_old_addresses():
    import dgl_bilevel.hypergrad.implicit_diff as old_implicit_diff
    import dgl_bilevel.hypergrad.linalg as old_linalg
    import dgl_bilevel.numerics.implicit_diff as implicit_diff
    import dgl_bilevel.numerics.linalg as linalg
    from dgl_bilevel.hypergrad import custom_root

    assert old_linalg is linalg and old_implicit_diff is implicit_diff
    assert custom_root is implicit_diff.custom_root
