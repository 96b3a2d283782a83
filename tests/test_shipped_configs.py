"""The tuned configurations under recipes/configs/ load, name the command that produced them, and run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dgl_bilevel.cli import main
from dgl_bilevel.config import ExperimentConfig, load_yaml

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "recipes" / "configs").glob("*.yaml"))


def test_configs_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"cora-gnn", "cora-laplacian", "cora-energy"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_names_its_tune_command_and_is_complete(path):
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert any("dgl-bilevel tune" in line for line in header), f"{path.name} does not say how it was tuned"
    config = ExperimentConfig.from_mapping(load_yaml(path), str(path)).resolved()
    assert config.dataset == "cora" and config.seeds == 10
    assert not str(config.out).startswith("/tmp")  # no path of the machine it was tuned on


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_runs(path, tmp_path, data_root):
    assert main(["run", "--config", str(path), "--data-root", str(data_root), "--outer-steps", "2", "--seeds", "1",
                 "--out", str(tmp_path), "--name", "smoke", "--no-progress"]) == 0
    seed0 = json.loads((tmp_path / "smoke" / "seed_0.json").read_text())
    tuned = ExperimentConfig.from_mapping(load_yaml(path), str(path)).resolved()
    for option in ("inner", "outer_lr", "inner_lr", "inner_steps", "hidden", "lam", "energy_lam"):
        assert seed0["run_config"][option] == getattr(tuned, option)  # the file's values, not the presets'
    assert len(seed0["history"]) == 2 and 0.0 <= seed0["result"]["test_acc"] <= 1.0
