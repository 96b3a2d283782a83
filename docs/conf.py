"""Sphinx configuration of the documentation site (``bash scripts/docs.sh`` builds it).

The markdown pages stay markdown (myst-parser); the API reference is generated from the
package's docstrings (autodoc + napoleon) by the ``dbl_api`` extension in ``docs/_ext``, one
page per public module, every name of its ``__all__`` included. Nothing is fetched from the
network: no intersphinx, no remote images or scripts.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))          # the checkout's package, not an installed copy
sys.path.insert(0, str(DOCS / "_ext"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import dgl_bilevel  # noqa: E402  (after the path is set)

project = "dgl_bilevel"
author = "the dgl_bilevel developers"
copyright = "the dgl_bilevel developers"
release = dgl_bilevel.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "myst_parser",
    "sphinx_copybutton",
    "dbl_api",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# markdown: ::: blocks, definition lists, anchors for `page.md#a-heading` links
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4

# napoleon reads both docstring styles: numpy's (DGL's) and Google's ``Args:`` sections, which
# this package's docstrings use; type hints are shown in signatures only
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
# a method without a docstring of its own is left out, rather than shown with torch.nn.Module's
autodoc_inherit_docstrings = False
# long signatures one parameter a line
maximum_signature_line_length = 88
autosummary_generate = False
add_module_names = False

html_theme = "furo"
html_title = f"dgl_bilevel {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_with_keys": True,
    "sidebar_hide_name": False,
}
html_show_sourcelink = False

# copy only the prompt-free code: strip `$ `, `>>> ` and `... `
copybutton_prompt_text = r"\$ |>>> |\.\.\. "
copybutton_prompt_is_regexp = True


def _attribute_docs_are_prose(app, what, name, obj, options, lines):
    """Napoleon reads the first line of an attribute's docstring as ``type: description`` when it
    holds a colon; here attribute docs are prose (types come from annotations), so an empty
    comment line goes first and napoleon takes the whole text as the description."""
    if what in ("attribute", "data", "property") and lines and lines[0].strip():
        lines[:0] = ["..", ""]


def setup(app):
    # design.md's architecture diagram is a mermaid block (GitHub draws it); here it is shown as
    # its text, without fetching mermaid's script
    from pygments.lexers.special import TextLexer

    app.add_lexer("mermaid", TextLexer)
    app.connect("autodoc-process-docstring", _attribute_docs_are_prose, priority=400)  # before napoleon (500)
