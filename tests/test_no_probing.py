"""Capabilities of inner problems, their derivatives and their optimizers are declared, never probed:
no ``getattr`` / ``hasattr`` in the package is applied to one of them (docs/design.md).

The scan reads every module's syntax tree. A call is flagged when its first argument is

* a name that holds one of those objects throughout the package (:data:`NAMES`), or an attribute
  with such a name (``loop.inner``, ``problem.optimizer``, ``self.derivatives``);
* ``self`` (or ``cls``) inside a class that is an inner problem, a derivatives object or an inner
  optimizer (found by importing the class and asking ``issubclass``).

Probing *models* stays allowed and is not flagged: an inner GNN takes any user ``nn.Module`` in
``dgl.nn`` style, whose optional abilities (``accepts_sparse_features``, ``forward_seeds``,
``supports_blocks``, ``reset_parameters``, ``layers``) the library cannot require it to declare.
:data:`ALLOWED` lists the flagged calls that are nevertheless right, each with its reason (none today).
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Callable

import dgl_bilevel
from dgl_bilevel.inner.base import InnerProblem
from dgl_bilevel.inner.optimizers import InnerOptimizer
from dgl_bilevel.inner.types import HandDerivatives

PACKAGE = Path(dgl_bilevel.__file__).resolve().parent
#: Names (variables, parameters, attributes) that hold an inner problem, its derivatives or its optimizer.
NAMES = frozenset({"problem", "problems", "inner", "inner_problem", "stacked", "base", "first", "p",
                   "derivatives", "optimizer", "transform", "accelerated"})
DECLARING = (InnerProblem, HandDerivatives, InnerOptimizer)
#: ``(module path relative to the package, source of the first argument, attribute) -> why it is right``.
ALLOWED: dict[tuple[str, str, str], str] = {}


def _declaring_classes(relative: str):
    """``class name -> bool``: whether the class of that name in the package module ``relative`` is
    an inner problem, a derivatives object or an inner optimizer."""
    name_of_module = "dgl_bilevel." + relative[:-3].replace("/", ".").removesuffix(".__init__")

    def declaring(name: str) -> bool:  # the module is imported only where it defines a class
        target = vars(importlib.import_module(name_of_module)).get(name)
        return isinstance(target, type) and issubclass(target, DECLARING)

    return declaring


def _probes(source: str, relative: str, declaring_class: Callable[[str], bool]) -> list[tuple[str, str, str, int]]:
    """``(relative path, first argument, attribute, line)`` of every flagged getattr/hasattr in ``source``."""
    found = []

    def visit(node: ast.AST, declaring: bool) -> None:
        if isinstance(node, ast.ClassDef):
            declaring = declaring_class(node.name)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
                and node.args:
            subject = node.args[0]
            named = subject.id if isinstance(subject, ast.Name) else subject.attr \
                if isinstance(subject, ast.Attribute) else None
            if named in NAMES or (declaring and named in ("self", "cls")):
                attribute = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
                found.append((relative, ast.unparse(subject), attribute, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, declaring)

    visit(ast.parse(source, relative), False)
    return found


def test_no_getattr_or_hasattr_on_inner_problems_derivatives_or_optimizers():
    flagged = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        flagged += _probes(path.read_text(), relative, _declaring_classes(relative))
    unexplained = [f"{path}:{line}: {subject}, {attribute}" for path, subject, attribute, line in flagged
                   if (path, subject, attribute) not in ALLOWED]
    assert not unexplained, "capabilities probed instead of declared:\n" + "\n".join(unexplained)


def test_the_scan_finds_a_probe():
    """The scan itself works: each kind of probe it should see, it sees (and not a model's)."""
    source = ("def f(problem, loop, model):\n"
              "    return getattr(problem, 'x', 0), hasattr(loop.inner, 'y'), getattr(model, 'z', 0)\n\n\n"
              "class Mine(InnerProblem):\n    def g(self):\n        return getattr(self, 'w', None)\n\n\n"
              "class Other:\n    def g(self):\n        return getattr(self, 'v', None)\n")
    found = _probes(source, "example.py", lambda name: name == "Mine")
    assert [(subject, attribute) for _, subject, attribute, _ in found] == \
        [("problem", "'x'"), ("loop.inner", "'y'"), ("self", "'w'")]
