#!/usr/bin/env bash
# Install the project afresh into a throwaway virtual environment and check that `import dgl`
# works before `import dgl_bilevel` there (the import hook's .pth, which the build backend puts
# into every wheel, editable ones included), then run tests/test_reliability.py against it.
#
#   bash scripts/check_install.sh [editable|regular]    # pip install -e . (default) | pip install .
#
# Nothing is downloaded: the throwaway environment sees .venv's packages (torch, DGL, setuptools,
# pip, pytest) and installs the project alone (--no-deps --no-build-isolation). `python -m venv
# --system-site-packages` cannot give it those: made from a venv's interpreter, a venv sees the
# *base* interpreter's site-packages, not the venv's. So a .pth line adds .venv's site-packages
# instead, behind the throwaway one's own and without running .venv's own .pth files (its copy
# of the hook included): the hook that runs is the one this install put in place.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=${1:-editable}
case "$MODE" in
  editable) TARGET=(-e "$ROOT") ;;
  regular) TARGET=("$ROOT") ;;
  *) echo "usage: bash scripts/check_install.sh [editable|regular]" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || { echo "no .venv: run bash scripts/install.sh first" >&2; exit 2; }
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
.venv/bin/python -m venv --without-pip "$SCRATCH/venv"
PY="$SCRATCH/venv/bin/python"
purelib() { "$1" -c 'import sysconfig; print(sysconfig.get_path("purelib"))'; }
purelib .venv/bin/python > "$(purelib "$PY")/_project_venv.pth"
"$PY" -m pip --disable-pip-version-check -q install --no-deps --no-build-isolation "${TARGET[@]}"
HOOK="$(purelib "$PY")/dgl_bilevel_import_hook.pth"
[ -f "$HOOK" ] || { echo "check_install ($MODE): the install left no $HOOK" >&2; exit 1; }
# From the scratch folder (not the checkout) and in a fresh interpreter: dgl first, then the package.
(cd "$SCRATCH" && "$PY" -c 'import dgl, dgl_bilevel; print("check_install: import dgl, then dgl_bilevel", dgl_bilevel.__file__)')
if [ "$MODE" = editable ]; then
  (cd "$SCRATCH" && "$PY" -m pytest -q -p no:cacheprovider "$ROOT/tests/test_reliability.py")
else  # a copy in site-packages: the rest of the file reads data relative to the checkout
  (cd "$SCRATCH" && "$PY" -m pytest -q -p no:cacheprovider "$ROOT/tests/test_reliability.py" -k dgl_can_be_imported)
fi
echo "check_install ($MODE): ok"
