"""Every public class and function carries a runnable ``Example`` section, and every example runs.

"Public" is what users can reach by name: ``dgl_bilevel.__all__`` and the ``__all__`` of each
subpackage (a name re-exported in several places is checked once, where it is defined). The
examples are doctests; they run here on tiny generated graphs so the suite stays fast.
"""
from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import dgl_bilevel


def _public_objects() -> dict:
    modules = ["dgl_bilevel"] + sorted(m.name for m in pkgutil.iter_modules(dgl_bilevel.__path__, "dgl_bilevel.")
                                       if m.ispkg)
    found: dict = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not obj.__module__.startswith("dgl_bilevel"):
                continue  # constants, submodules and type aliases (``Params = tuple``) are documented in prose
            key = f"{obj.__module__}.{obj.__qualname__}"
            found.setdefault(key, obj)
    return dict(sorted(found.items()))


PUBLIC = _public_objects()


def test_the_public_surface_is_found():
    assert len(PUBLIC) > 200  # the scan reads every subpackage's __all__
    assert "dgl_bilevel.outer.loop.fit" in PUBLIC


@pytest.mark.parametrize("name", list(PUBLIC))
def test_public_name_has_an_example(name):
    doc = inspect.getdoc(PUBLIC[name]) or ""
    assert "Example" in doc and ">>>" in doc, f"{name}: its docstring needs an 'Example:' section with a doctest"


@pytest.mark.parametrize("name", list(PUBLIC))
def test_example_runs(name):
    obj = PUBLIC[name]
    module = importlib.import_module(obj.__module__)
    finder = doctest.DocTestFinder(recurse=False)
    tests = [t for t in finder.find(obj, name, module=module, globs=dict(vars(module))) if t.examples]
    if not tests:
        pytest.fail(f"{name} has no doctest to run")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{name}: {runner.failures} of {runner.tries} doctest lines failed (output above)"
