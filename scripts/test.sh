#!/usr/bin/env bash
# Install into .venv (with the test extra) and run the test suite; the whole suite (no arguments)
# also checks a fresh editable install in a throwaway environment (scripts/check_install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
.venv/bin/python -m pytest -q "$@"
if [ $# -eq 0 ]; then
  bash scripts/check_install.sh editable
fi
