#!/usr/bin/env bash
# Build the documentation site into docs/_build/html (or the folder given as $1) with Sphinx.
# Warnings are errors; nothing is fetched from the network (no intersphinx) and no code runs but
# the package's import (autodoc reads the docstrings).
#
#   bash scripts/docs.sh            # installs .venv with the docs extra first if the tools are missing
#   bash scripts/docs.sh OUT_DIR    # another output folder (its doctrees go to OUT_DIR.doctrees)
#
# DOCS_PYTHON=/path/to/python uses that interpreter as it is (no install step): the test
# tests/test_docs_site.py builds the site this way.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/_build/html}
TOOLS="import sphinx, myst_parser, furo, sphinx_copybutton, dgl_bilevel"
if [ -n "${DOCS_PYTHON:-}" ]; then
  PY=$DOCS_PYTHON
else
  PY=.venv/bin/python
  if ! { [ -x "$PY" ] && "$PY" -c "$TOOLS" >/dev/null 2>&1; }; then
    bash scripts/install.sh docs
  fi
fi
if ! "$PY" -c "$TOOLS" >/dev/null 2>&1; then
  echo "scripts/docs.sh: the docs tools are missing from $PY: pip install -e '.[docs]' (or bash scripts/install.sh docs)" >&2
  exit 1
fi
rm -rf "$OUT" "$OUT.doctrees"
# -W: warnings are errors; --keep-going: report all of them first; -E: read every page afresh
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m sphinx -b html -W --keep-going -E -q \
  -d "$OUT.doctrees" docs "$OUT"
rm -rf "$OUT.doctrees"
echo "docs built: $OUT/index.html"
