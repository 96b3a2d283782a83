"""dgl-bilevel tune: validation-only scores, resumable studies, a config that reruns the best trial."""
from __future__ import annotations

import json

import pytest
import yaml

from dgl_bilevel.cli import main
from dgl_bilevel.config import ExperimentConfig
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.experiment import tune as tune_module
from dgl_bilevel.experiment.tune import Param, default_space, space_from_yaml

ARGS = ["tune", "--dataset", "cheaters", "--outer-steps", "3", "--inner-steps", "4", "--tune-seeds", "1",
        "--no-progress"]


def test_tune_writes_a_best_config_that_run_accepts_and_resumes(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("outer_lr: {low: 0.001, high: 0.1, log: true}\nhidden: {choices: [4, 8]}\n")
    assert main(ARGS + ["--trials", "3", "--space", str(space), "--out", str(tmp_path)]) == 0
    folder = tmp_path / "cheaters-gnn-bo-tune"
    best = yaml.safe_load((folder / "best.yaml").read_text())
    rows = json.loads((folder / "trials.json").read_text())
    assert len(rows) == 3 and best["inner"]["hidden"] in (4, 8) and best["outer"]["outer_steps"] == 3
    assert main(ARGS + ["--trials", "4", "--space", str(space), "--out", str(tmp_path)]) == 0  # resumes: one more
    assert len(json.loads((folder / "trials.json").read_text())) == 4 and "resuming" in capsys.readouterr().out
    assert main(["run", "--config", str(folder / "best.yaml"), "--out", str(tmp_path / "rerun"), "--no-progress"]) == 0


def test_tune_never_reads_test_scores(monkeypatch, tmp_path):
    seen = []
    real = tune_module.fit_loop

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        result.best_metrics = {**result.best_metrics, "test": float("nan")}  # a test read would poison the score
        seen.append(result)
        return result

    monkeypatch.setattr(tune_module, "fit_loop", spy)
    score = tune_module.evaluate_trial(ExperimentConfig(dataset="cheaters", outer_steps=2, inner_steps=3).resolved(),
                                       [0, 1])
    assert len(seen) == 2 and score == pytest.approx(sum(r.best_metrics["val"] for r in seen) / 2)


def test_explicit_options_are_not_searched_and_bad_spaces_are_refused(tmp_path):
    config = ExperimentConfig(dataset="cheaters", method="bo+reg").resolved()
    names = [p.name for p in default_space(config)]
    assert "reg_gamma" in names and "outer_lr" in names
    bad = tmp_path / "bad.yaml"
    bad.write_text("outer_lrr: {low: 0.1, high: 1}\n")
    with pytest.raises(ConfigError, match="not an option"):
        space_from_yaml(bad)
    assert Param("hidden", choices=(1, 2)).choices == (1, 2)
