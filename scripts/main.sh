#!/usr/bin/env bash
# The main job: install into .venv, then bilevel edge refinement on Cora with a GNN inner
# model and default settings (paper hyperparameters, 1 seed, ~2-3 minutes on 2 CPU cores).
# Extra arguments are passed to `dgl-bilevel run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/dgl-bilevel run --dataset cora --inner gnn --method bo --out results "$@"
