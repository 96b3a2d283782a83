"""The API reference of dgl_bilevel, generated from ``__all__`` and the docstrings.

``.. dbl-api:: dgl_bilevel.structure`` expands into the module's docstring, a table of every
public name with its one-line summary, and a full autodoc entry for each name whose home is this
module. A name exported by several modules (``dgl_bilevel.EdgeWeights`` is
``dgl_bilevel.structure.EdgeWeights``) is documented once, in its home module -- the most specific
documented module that lists it -- and elsewhere gets a cross-reference target and a table row
that links to that entry, so ``:class:`dgl_bilevel.EdgeWeights``` resolves too.

Which modules have pages, and which names are public in each, is computed here and nowhere else
(:func:`public_modules`, :func:`public_names`); tests/test_docs_site.py checks the built
inventory against the same functions. A public module without a page under ``docs/api/`` is a
build warning, hence an error in ``scripts/docs.sh``.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import types
import typing
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.ext.autosummary import extract_summary
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

PACKAGE = "dgl_bilevel"
#: modules without an ``__all__`` that the guides point readers to (errors, metrics, registries)
EXTRA_MODULES = ("dgl_bilevel.errors", "dgl_bilevel.losses", "dgl_bilevel.registry")

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- what is public
def _is_private(modname: str) -> bool:
    return any(part.startswith("_") for part in modname.split("."))


def public_modules() -> list[str]:
    """The modules that get a page: the package, every public subpackage, every public module
    with an ``__all__`` that exports something its package does not, :data:`EXTRA_MODULES`, and
    every module one of these names in its ``__all__``."""
    package = importlib.import_module(PACKAGE)
    found = [PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, PACKAGE + "."):
        if _is_private(info.name):
            continue
        module = importlib.import_module(info.name)
        if info.ispkg:
            found.append(info.name)
            continue
        exported = getattr(module, "__all__", None)
        if exported is None:
            continue
        parent = importlib.import_module(info.name.rsplit(".", 1)[0])
        if set(exported) - set(getattr(parent, "__all__", ())):
            found.append(info.name)
    found.extend(EXTRA_MODULES)
    # and every module that one of those exports by name (dgl_bilevel.models, energy.penalties)
    todo = list(found)
    while todo:
        module = importlib.import_module(todo.pop())
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if isinstance(value, types.ModuleType) and value.__name__ not in found:
                found.append(value.__name__)
                todo.append(value.__name__)
    return sorted(set(found), key=lambda m: (m != PACKAGE, m))


def _top_level_assignments(module: types.ModuleType) -> list[str]:
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return []
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names.extend(t.id for t in targets if isinstance(t, ast.Name))
    return names


def public_names(modname: str) -> list[str]:
    """``__all__`` where the module has one; otherwise the classes and functions it defines and
    its upper-case constants, none starting with an underscore."""
    module = importlib.import_module(modname)
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == modname:
            names.append(name)
    names.extend(n for n in _top_level_assignments(module)
                 if n.isupper() and not n.startswith("_") and n not in names
                 and not isinstance(getattr(module, n), typing.TypeVar))
    return names


def _kind(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return "module"
    if inspect.isclass(value):
        return "exception" if issubclass(value, BaseException) else "class"
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        return "function"
    return "data"


class Catalogue:
    """Every documented module's public names, and the home of each class and function."""

    def __init__(self) -> None:
        self.modules = public_modules()
        self.names = {m: public_names(m) for m in self.modules}
        listed: dict[int, list[str]] = {}
        for modname in self.modules:
            module = importlib.import_module(modname)
            for name in self.names[modname]:
                value = getattr(module, name)
                if _kind(value) in ("class", "exception", "function"):
                    listed.setdefault(id(value), []).append(modname)
        self._listed = listed

    def home(self, modname: str, name: str) -> str:
        """The module whose page holds the full entry of ``modname.name``."""
        value = getattr(importlib.import_module(modname), name)
        kind = _kind(value)
        if kind == "module":
            return value.__name__
        if kind == "data":
            return modname
        candidates = [m for m in self._listed[id(value)] if m != PACKAGE] or [PACKAGE]
        defined = getattr(value, "__module__", "") or ""
        within = [m for m in candidates if defined == m or defined.startswith(m + ".")]
        return min(within or candidates, key=lambda m: (m.count("."), m))

    def target(self, modname: str, name: str) -> str:
        """The full name that links to the entry of ``modname.name``."""
        value = getattr(importlib.import_module(modname), name)
        if _kind(value) == "module":
            return value.__name__
        return f"{self.home(modname, name)}.{name}"


# ----------------------------------------------------------------------------- rendering
_ROLES = {"module": "py:mod", "class": "py:class", "exception": "py:exc", "function": "py:func", "data": "py:data"}


def _data_doc(modname: str, name: str) -> list[str]:
    """The ``#:`` comment of a constant, looked up in the module and its submodules."""
    module = importlib.import_module(modname)
    candidates = [modname]
    if hasattr(module, "__path__"):
        candidates += [i.name for i in pkgutil.iter_modules(module.__path__, modname + ".")]
    for candidate in candidates:
        try:
            docs = ModuleAnalyzer.for_module(candidate).find_attr_docs()
        except Exception:  # noqa: BLE001 - no source to read: no comment
            continue
        if ("", name) in docs:
            return list(docs[("", name)])
    return []


_LITERALS = (str, int, float, bool, type(None))


def _is_literal(value: Any) -> bool:
    if isinstance(value, (tuple, list, frozenset)):
        return all(_is_literal(v) for v in value)
    return isinstance(value, _LITERALS)


def _short_repr(value: Any) -> str | None:
    """A plain value's repr, if short; None for anything else (whose repr may depend on state,
    such as a registry that lists what has been imported so far)."""
    text = repr(value)
    return text if _is_literal(value) and len(text) <= 70 and "\n" not in text else None


class ApiDirective(SphinxDirective):
    """``.. dbl-api:: MODULE``: the module's docstring, a summary table and the entries."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        catalogue: Catalogue = self.env.app.dbl_catalogue
        modname = self.arguments[0]
        if modname not in catalogue.modules:
            raise self.error(f"{modname} is not a public module of {PACKAGE}")
        self.env.note_dependency(inspect.getsourcefile(importlib.import_module(modname)))
        module = importlib.import_module(modname)
        lines: list[str] = [f".. automodule:: {modname}", ""]
        rows, entries, aliases = [], [], []
        for name in catalogue.names[modname]:
            value = getattr(module, name)
            kind = _kind(value)
            target = catalogue.target(modname, name)
            summary = self._summary(value, kind, modname, name)
            rows.append((f":{_ROLES[kind]}:`~{target}`", summary))
            if kind == "module":
                continue
            if target != f"{modname}.{name}":
                aliases.append(f".. py:{'function' if kind == 'function' else kind}:: {name}")
                aliases.append("   :no-typesetting:")
                aliases.append("")
                continue
            entries += self._entry(modname, name, value, kind)
        lines += aliases
        if rows:
            lines += [".. list-table::", "   :class: dbl-summary", "   :widths: 30 70", ""]
            for ref, summary in rows:
                lines += [f"   * - {ref}", f"     - {summary}"]
            lines.append("")
        lines += entries
        content = StringList(lines, source=f"<dbl-api {modname}>")
        holder = nodes.container()
        nested_parse_with_titles(self.state, content, holder)
        return holder.children

    def _summary(self, value: Any, kind: str, modname: str, name: str) -> str:
        if kind == "data":
            doc = _data_doc(modname, name)
            if not doc:
                text = _short_repr(value)
                return f"``{text}``" if text is not None else f"a ``{type(value).__name__}``"
        else:
            doc = (inspect.getdoc(value) or "").splitlines()
        if not doc or not doc[0].strip():
            return ""
        # Sphinx 9 takes the document's settings, earlier versions the document itself
        takes_settings = "settings" in inspect.signature(extract_summary).parameters
        document = self.state.document
        summary = extract_summary(list(doc), document.settings if takes_settings else document)
        # the table cell is one line of reStructuredText
        return " ".join(summary.split())

    def _entry(self, modname: str, name: str, value: Any, kind: str) -> list[str]:
        full = f"{modname}.{name}"
        if kind in ("class", "exception"):
            return [f".. auto{kind}:: {full}", "   :members:", "   :show-inheritance:", ""]
        if kind == "function":
            return [f".. autofunction:: {full}", ""]
        lines = [f".. py:data:: {name}"]  # in the module automodule made current
        text = _short_repr(value)
        if text is not None:
            lines.append(f"   :value: {text}")
        else:
            lines.append(f"   :type: {type(value).__module__}.{type(value).__qualname__}")
        lines.append("")
        lines += ["   " + line if line else "" for line in _data_doc(modname, name)]
        lines.append("")
        return lines


# ----------------------------------------------------------------------------- the pages
def _check_pages(app) -> None:
    """Warn about a public module without a page (docs/api/<module>.rst) and a page of none."""
    app.dbl_catalogue = Catalogue()
    api = Path(app.srcdir) / "api"
    pages = {p.stem for p in api.glob("dgl_bilevel*.rst")}
    for modname in app.dbl_catalogue.modules:
        if modname not in pages:
            logger.warning("dbl_api: public module %s has no page: add docs/api/%s.rst "
                           "(a title and '.. dbl-api:: %s') and list it in docs/api/index.md",
                           modname, modname, modname)
    for page in sorted(pages - set(app.dbl_catalogue.modules)):
        logger.warning("dbl_api: docs/api/%s.rst documents no public module", page)


def setup(app):
    app.add_directive("dbl-api", ApiDirective)
    app.connect("builder-inited", _check_pages)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
