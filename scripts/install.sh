#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install
# dgl_bilevel with its dependencies. Safe to run repeatedly.
#
# torch is installed first from TORCH_SPEC (default torch==2.13.0, which on
# the project's machines resolves to a local CPU build); the constraints file
# then pins it so that no later step can pull a different (CUDA) torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${1:-}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  "${PIP[@]}" install "$TORCH_SPEC"
fi
TORCH_VERSION=$(.venv/bin/python -c "import torch; print(torch.__version__.split('+')[0])")
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
printf 'torch==%s\ndgl==2.1.0\n' "$TORCH_VERSION" > "$CONSTRAINTS"
# The build backend (build_backend/) puts the import hook's .pth -- import dgl before dgl_bilevel
# works -- into the editable wheel too, so pip installs and uninstalls it with the package.
"${PIP[@]}" install -c "$CONSTRAINTS" -e ".${EXTRAS:+[$EXTRAS]}"
