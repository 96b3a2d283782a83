"""The documentation site: it builds with ``bash scripts/docs.sh`` without a warning (warnings are
errors there, so a broken reference or a malformed docstring fails), every public name has an
entry in its API reference, and the code of the guides (Get started, tutorials, how-tos) parses
and names only things the package has.

The docs tools come with the test extra; without them the test fails and says what to install.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
import types
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TOOLS = ("sphinx", "myst_parser", "furo", "sphinx_copybutton")
GUIDES = [DOCS / "index.md", DOCS / "get-started.md",
          *sorted((DOCS / "tutorials").glob("*.md")), *sorted((DOCS / "howto").glob("*.md"))]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    missing = [tool for tool in TOOLS if importlib.util.find_spec(tool) is None]
    if missing:
        pytest.fail(f"the docs tools are not installed ({', '.join(missing)}): pip install -e '.[docs]' "
                    f"(the test extra includes them; bash scripts/install.sh test)")
    out = tmp_path_factory.mktemp("docs") / "html"
    env = dict(os.environ, DOCS_PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "docs.sh"), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, ("the documentation site does not build cleanly (warnings are errors):\n"
                                  + proc.stdout[-8000:] + proc.stderr[-8000:])
    return out


def _inventory(site: Path) -> dict[str, set[str]]:
    """Object name -> its roles (``py:class``, ...) from the built ``objects.inv``."""
    header_and_body = (site / "objects.inv").read_bytes().split(b"\n", 4)
    names: dict[str, set[str]] = {}
    for line in zlib.decompress(header_and_body[4]).decode().splitlines():
        match = re.match(r"(.+?)\s+(\S+:\S+)\s+-?\d+\s", line)
        if match:
            names.setdefault(match.group(1), set()).add(match.group(2))
    return names


def _public_modules() -> list[str]:
    """The package, its subpackages and every public module with an ``__all__``."""
    package = importlib.import_module("dgl_bilevel")
    found = ["dgl_bilevel"]
    for info in pkgutil.walk_packages(package.__path__, "dgl_bilevel."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if info.ispkg or hasattr(importlib.import_module(info.name), "__all__"):
            found.append(info.name)
    return found


def test_the_site_builds_with_every_page(site):
    pages = [p.relative_to(DOCS).with_suffix(".html") for p in DOCS.rglob("*.md") if "_build" not in p.parts]
    assert len(pages) >= 20
    missing = [str(p) for p in pages if not (site / p).is_file()]
    assert not missing, f"pages not built: {missing}"
    assert (site / "api" / "dgl_bilevel.html").is_file()


def test_every_public_name_has_an_api_entry(site):
    inventory = _inventory(site)
    missing, checked = [], 0
    for modname in _public_modules():
        module = importlib.import_module(modname)
        parent = importlib.import_module(modname.rsplit(".", 1)[0]) if "." in modname else None
        covered = set() if hasattr(module, "__path__") else set(getattr(parent, "__all__", ()))
        for name in getattr(module, "__all__", ()):
            if name in covered:
                continue  # a module's name its package exports too: the package's entry is the one
            value = getattr(module, name)
            target = value.__name__ if isinstance(value, types.ModuleType) else f"{modname}.{name}"
            checked += 1
            if target not in inventory:
                missing.append(f"{modname}.{name}")
    assert checked > 300
    assert not missing, f"public names without an API entry: {missing}"
    assert {"py:function"} <= inventory["dgl_bilevel.fit"] | inventory["dgl_bilevel.outer.fit"]


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def _resolve(value, attrs: list[str], where: str, errors: list[str]) -> None:
    for attr in attrs:
        if not isinstance(value, (types.ModuleType, type)):
            return  # an instance's attribute: nothing to check statically
        if not hasattr(value, attr):
            errors.append(f"{where}: {getattr(value, '__name__', value)} has no attribute {attr!r}")
            return
        value = getattr(value, attr)


def _chain(node: ast.AST) -> "tuple[str, list[str]] | None":
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return (node.id, attrs[::-1]) if isinstance(node, ast.Name) else None


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: str(p.relative_to(DOCS)))
def test_guide_code_names_the_real_api(page):
    """Each python block parses, and every ``dbl.X.Y`` and ``from dgl_bilevel... import Z`` exists."""
    blocks = _python_blocks(page)
    errors: list[str] = []
    known: dict[str, object] = {}  # local name -> package object, across the page's blocks
    for number, block in enumerate(blocks):
        where = f"{page.relative_to(ROOT)}, python block {number + 1}"
        try:
            tree = ast.parse(block)
        except SyntaxError as error:
            errors.append(f"{where}: {error}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "dgl_bilevel":
                        module = importlib.import_module(alias.name)
                        known[alias.asname or alias.name.split(".")[0]] = module if alias.asname else \
                            importlib.import_module("dgl_bilevel")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "dgl_bilevel":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        try:
                            known[alias.asname or alias.name] = importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            errors.append(f"{where}: {node.module} has no {alias.name!r}")
                        continue
                    known[alias.asname or alias.name] = getattr(module, alias.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and not isinstance(getattr(node, "ctx", None), ast.Store):
                chain = _chain(node)
                if chain and chain[0] in known:
                    _resolve(known[chain[0]], chain[1], where, errors)
    assert not errors, "\n".join(errors)
