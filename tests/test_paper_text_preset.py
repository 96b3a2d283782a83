"""The two presets of the paper's settings (issue 12.1): ``paper-code`` (its public code, the
default) and ``paper-text`` (its section VI), as the configuration resolves them."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from dgl_bilevel.cli import build_parser, config_from_args
from dgl_bilevel.config import ExperimentConfig, write_yaml
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.experiment.run import comparable_settings


def _resolved(inner: str, method: str, preset: str, **options) -> ExperimentConfig:
    return ExperimentConfig(dataset="cora", inner=inner, method=method, preset=preset, **options).resolved()


@pytest.mark.parametrize("method", ["a_obs", "bo", "bo+reg"])
def test_paper_text_gnn_and_laplacian_settings(method):
    gnn, lap = _resolved("gnn", method, "paper-text"), _resolved("laplacian", method, "paper-text")
    assert (gnn.hidden, gnn.outer_steps, gnn.inner_lr, gnn.outer_lr, gnn.inner_steps) == (128, 150, 1e-2, 1e-2, 100)
    assert (lap.inner_lr, lap.outer_steps, lap.outer_lr, lap.inner_steps) == (1e-1, 150, 1e-2, 500)


def test_paper_text_g2g_settings_differ_from_the_code_where_the_text_says_so():
    gnn, lap = _resolved("gnn", "bo+g2g", "paper-text"), _resolved("laplacian", "bo+g2g", "paper-text")
    assert (gnn.outer_lr, gnn.g2g_hidden, gnn.g2g_layers, gnn.hidden, gnn.outer_steps) == (1e-4, 32, 2, 128, 150)
    assert (lap.outer_lr, lap.g2g_hidden, lap.g2g_layers, lap.inner_lr) == (1e-3, 32, 2, 1e-1)
    code_gnn, code_lap = _resolved("gnn", "bo+g2g", "paper-code"), _resolved("laplacian", "bo+g2g", "paper-code")
    assert (code_gnn.outer_lr, code_gnn.g2g_layers, code_gnn.hidden, code_gnn.outer_steps) == (1e-4, 1, 16, 200)
    assert (code_lap.outer_lr, code_lap.inner_lr) == (1e-2, 1e-2)


def test_paper_code_is_the_default_and_unchanged():
    default = ExperimentConfig(dataset="cora", inner="gnn", method="bo").resolved()
    assert default.preset == "paper-code"
    assert (default.hidden, default.outer_steps, default.inner_lr) == (16, 200, 1e-2)


def test_explicit_options_win_over_the_paper_text():
    config = _resolved("gnn", "bo", "paper-text", hidden=64, outer_steps=10)
    assert (config.hidden, config.outer_steps) == (64, 10)


@pytest.mark.parametrize("dataset, inner", [("cheaters", "gnn"), ("texas", "gnn"), ("cora", "lp")])
def test_paper_text_is_refused_where_the_text_says_nothing(dataset, inner):
    with pytest.raises(ConfigError, match="paper-text.*cora"):
        ExperimentConfig(dataset=dataset, inner=inner, method="a_obs", preset="paper-text").resolved()


def test_unknown_preset_is_refused_by_name():
    with pytest.raises(ConfigError, match="--preset"):
        ExperimentConfig(dataset="cora", preset="paper-txt").resolved()


def test_preset_from_the_command_line_and_yaml_and_it_guards_resume(tmp_path):
    config = config_from_args(build_parser("run").parse_args(["run", "--preset", "paper-text"]))
    assert config.preset == "paper-text" and config.resolved().hidden == 128
    path = tmp_path / "config.yaml"
    write_yaml(config.resolved(), path)
    again = config_from_args(build_parser("run").parse_args(["run", "--config", str(path)]))
    assert again.preset == "paper-text" and again.resolved().hidden == 128
    assert yaml.safe_load(path.read_text())["data"]["preset"] == "paper-text"
    code = ExperimentConfig(dataset="cora").resolved()
    text = ExperimentConfig(dataset="cora", preset="paper-text", hidden=16, outer_steps=200).resolved()
    assert comparable_settings(code) != comparable_settings(text)  # same numbers, other preset: not resumable


def test_table1_recipe_names_each_presets_runs_apart():
    path = Path(__file__).resolve().parents[1] / "recipes" / "table1.py"
    spec = importlib.util.spec_from_file_location("table1_recipe", path)
    import sys
    sys.path.insert(0, str(path.parent))
    try:
        recipe = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(recipe)
    finally:
        sys.path.remove(str(path.parent))
    assert recipe.run_name("gnn", "bo") == "cora-gnn-bo"  # the paper-code runs keep their folders
    assert recipe.run_name("gnn", "bo", "paper-text") == "cora-gnn-bo-paper-text"
    table = recipe.markdown(str(Path("/nonexistent")))
    assert "test, ours, code" in table and "test, ours, text" in table and "test, paper" in table
    # workers: the fewest (one to two per CPU) that split the learned GNN seeds evenly, two or more each
    assert recipe.default_workers(15, 2) == 3 and recipe.default_workers(10, 2) == 2
    assert recipe.default_workers(15, 4) == 5 and recipe.default_workers(7, 2) == 2 and recipe.default_workers(3, 2) == 2
