"""Experiment tracking (``--logger tensorboard|csv``): one log per seed, read back and compared with the
seed files' histories, through every path that runs seeds."""
from __future__ import annotations

import csv
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dgl_bilevel as dbl
from conftest import random_graph_data
from dgl_bilevel.cli import main
from dgl_bilevel.config import ExperimentConfig
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.experiment import run_experiment
from dgl_bilevel.inner import TrainedGNN
from dgl_bilevel.models import SumAggGNN
from dgl_bilevel.outer.loggers import LOGGERS, CsvLogger, TensorBoardLogger

BASE = ["run", "--dataset", "cheaters", "--outer-steps", "3", "--inner-steps", "5", "--no-progress",
        "--no-save-graph"]


def _config(tmp_path: Path, **options) -> ExperimentConfig:
    return ExperimentConfig(**{"dataset": "cheaters", "outer_steps": 3, "inner_steps": 5, "progress": False,
                               "save_graph": False, "out": str(tmp_path), "name": "run", **options})


def _history(run_dir: Path, seed: int) -> list[dict]:
    return json.loads((run_dir / f"seed_{seed}.json").read_text())["history"]


def _events(logdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _scalars(events, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events.Scalars(tag)]


def _as_float32(values: list) -> list[float]:
    return [float(np.float32(v)) for v in values]  # TensorBoard's scalars are float32


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_logger_choices_are_the_loggers():
    field = ExperimentConfig.__dataclass_fields__["logger"]
    assert tuple(field.metadata["choices"]) == tuple(LOGGERS) and field.default == "none"
    assert ExperimentConfig.__dataclass_fields__["log_histogram_every"].default == 10


def test_tensorboard_scalars_equal_the_seed_history(tmp_path):
    """``dgl-bilevel run --logger tensorboard``: per iteration the outer loss, the val/test scores, the
    implicit solver's residual and seconds equal the seed file's history (to float32); the hypergradient
    norm, the edge weight histograms and the settings are there."""
    out = tmp_path / "out"
    assert main(BASE + ["--hypergrad", "implicit", "--logger", "tensorboard", "--log-histogram-every", "2",
                        "--out", str(out)]) == 0
    run_dir = out / "cheaters-gnn-bo"
    history = _history(run_dir, 0)
    events = _events(run_dir / "logs" / "seed_0")
    for tag, key in (("loss/outer_loss", "outer_loss"), ("metrics/val_acc", "val_acc"),
                     ("metrics/test_acc", "test_acc"), ("solver/implicit_residual", "implicit_residual"),
                     ("time/seconds", "seconds"), ("loss/inner_objective", "inner_objective")):
        assert _scalars(events, tag) == list(zip(range(3), _as_float32([r[key] for r in history]))), tag
    norms = [value for _, value in _scalars(events, "hypergradient/norm")]
    assert len(norms) == 3 and all(n > 0 and np.isfinite(n) for n in norms)
    # the observed support has no observed/added split: one histogram, at iterations 0 and 2 (the last)
    assert events.Tags()["histograms"] == ["edge_weights/all"]
    histograms = events.Histograms("edge_weights/all")
    assert [h.step for h in histograms] == [0, 2]
    graph = dbl.data.cheaters(seed=0).graph
    assert histograms[0].histogram_value.num == graph.num_edges()
    # the resolved configuration as hyper-parameters (HParams dashboard) and as text
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    config = ExperimentConfig.from_mapping(json.loads((run_dir / "summary.json").read_text())["config"])
    assert start.hparams["outer_lr"].number_value == config.outer_lr == 1e-2
    assert start.hparams["damping"].number_value == config.damping == 1e-3
    assert start.hparams["hypergrad"].string_value == "implicit"
    assert start.hparams["seed"].number_value == 0
    (text,) = events.Tensors("settings/text_summary")
    assert "inner_steps: 5" in text.tensor_proto.string_val[0].decode()


def test_csv_log_equals_the_seed_history_without_tensorboard(tmp_path, monkeypatch):
    """``--logger csv`` works with TensorBoard unimportable; its numbers equal the history exactly, and
    on a support that marks observed edges the weights are summarised per group."""
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now fails
    config = _config(tmp_path, logger="csv", support="observed+knn", knn_k=3, log_histogram_every=2)
    run_experiment(config, echo=lambda _: None)
    run_dir, log = tmp_path / "run", tmp_path / "run" / "logs" / "seed_0"
    history = _history(run_dir, 0)
    rows = _csv(log / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    for key in ("outer_loss", "val_acc", "test_acc", "v_in_acc", "v_out_acc", "seconds", "refined_edges"):
        assert [float(r[key]) for r in rows] == [float(h[key]) for h in history], key
    assert all(float(r["hypergradient_norm"]) > 0 for r in rows)
    histograms = _csv(log / "edge_weights.csv")
    assert [(int(r["iteration"]), r["edges"]) for r in histograms] == [(0, "observed"), (0, "added"),
                                                                        (2, "observed"), (2, "added")]
    data = dbl.data.cheaters(seed=0)  # the support, rebuilt as the run built it
    from dgl_bilevel.structure.support import observed_knn_support

    support = observed_knn_support(data.graph, data.features.float(), 3)
    observed = int((support.edata["observed"] > 0.5).sum())
    counts = {r["edges"]: int(float(r["count"])) for r in histograms if r["iteration"] == "0"}
    assert counts == {"observed": observed, "added": support.num_edges() - observed}
    for r in histograms:
        assert float(r["min"]) <= float(r["q25"]) <= float(r["median"]) <= float(r["q75"]) <= float(r["max"])
    settings = {r["name"]: r["value"] for r in _csv(log / "settings.csv")}
    assert settings["logger"] == "csv" and settings["support"] == "observed+knn" and settings["seed"] == "0"


def test_tensorboard_needs_tensorboard_and_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ConfigError, match=r"pip install 'dgl_bilevel\[tracking\]'"):
        _config(tmp_path, logger="tensorboard").resolved()
    data = random_graph_data()
    logger = TensorBoardLogger(tmp_path / "tb")
    with pytest.raises(ConfigError, match=r"dgl_bilevel\[tracking\]"):
        dbl.fit(data, dbl.EdgeWeights(data.graph), TrainedGNN(SumAggGNN(5, 4, 3), steps=2), outer_steps=1,
                progress=False, callbacks=[logger])


@pytest.mark.parametrize("cls", [TensorBoardLogger, CsvLogger])
def test_a_logger_pickles_before_and_during_a_fit(tmp_path, cls):
    """A logger travels to worker processes and Ray tasks by pickle: before the fit (its writer opens when
    the fit starts) and even with its writer open (the copy opens its own)."""
    logger = pickle.loads(pickle.dumps(cls(tmp_path / "log", hparams={"note": "x", "lr": 0.5, "none": None})))
    data = random_graph_data()

    class PickleMidway(dbl.Callback):
        def on_iteration(self, state):
            copy = pickle.loads(pickle.dumps(logger))
            assert copy._writer is None and logger._writer is not None  # noqa: SLF001

    result = dbl.fit(data, dbl.EdgeWeights(data.graph), TrainedGNN(SumAggGNN(5, 4, 3), steps=2), outer_steps=2,
                     progress=False, callbacks=[logger, PickleMidway()])
    assert logger._writer is None  # noqa: SLF001 -- closed at the end
    losses = [r["outer_loss"] for r in result.history]
    if cls is CsvLogger:
        assert [float(r["outer_loss"]) for r in _csv(tmp_path / "log" / "metrics.csv")] == losses
    else:
        events = _events(tmp_path / "log")
        assert [v for _, v in _scalars(events, "loss/outer_loss")] == _as_float32(losses)


def test_stacked_seeds_write_one_tensorboard_log_each(tmp_path, data_root):
    """Seeds in lockstep (Cora: one graph for every seed, so they stack) each keep their own log."""
    lines = []
    run_experiment(_config(tmp_path, dataset="cora", data_root=str(data_root), inner_steps=3, seeds=2,
                           stack_seeds="on", logger="tensorboard"), echo=lines.append)
    assert any("inner problems stacked" in line for line in lines)
    run_dir = tmp_path / "run"
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == ["seed_0", "seed_1"]
    losses = []
    for seed in (0, 1):
        events = _events(run_dir / "logs" / f"seed_{seed}")
        history = _history(run_dir, seed)
        assert _scalars(events, "loss/outer_loss") == list(zip(range(3), _as_float32([r["outer_loss"] for r in history])))
        assert [v for _, v in _scalars(events, "run/stacked_seeds")] == [2.0] * 3
        losses.append(history[0]["outer_loss"])
    assert losses[0] != losses[1]  # each seed's own numbers


def test_workers_write_one_csv_log_per_seed(tmp_path, data_root):
    lines = []
    run_experiment(_config(tmp_path, dataset="cora", data_root=str(data_root), inner_steps=3, seeds=2, workers=2,
                           logger="csv"), echo=lines.append)
    assert any("2 seeds in 2 worker processes" in line for line in lines)
    run_dir = tmp_path / "run"
    for seed in (0, 1):
        rows = _csv(run_dir / "logs" / f"seed_{seed}" / "metrics.csv")
        assert [float(r["outer_loss"]) for r in rows] == [h["outer_loss"] for h in _history(run_dir, seed)]


def test_a_resumed_or_repeated_run_logs_each_iteration_once(tmp_path):
    """``--resume --outer-steps 5`` after 3 continues the log at iteration 3; a run started afresh in the
    same folder replaces the earlier run's events (TensorBoard's purge step) and rows."""
    for logger in ("tensorboard", "csv"):
        name = f"resume-{logger}"
        run_experiment(_config(tmp_path, name=name, logger=logger, checkpoint_every=1), echo=lambda _: None)
        run_experiment(_config(tmp_path, name=name, logger=logger, outer_steps=5, resume=True), echo=lambda _: None)
        run_dir = tmp_path / name
        history = [r["outer_loss"] for r in _history(run_dir, 0)]
        assert len(history) == 5
        log = run_dir / "logs" / "seed_0"
        if logger == "csv":
            assert [float(r["outer_loss"]) for r in _csv(log / "metrics.csv")] == history
        else:
            assert _scalars(_events(log), "loss/outer_loss") == list(zip(range(5), _as_float32(history)))
    # afresh (no --resume) with another outer learning rate: only the new run's values remain
    run_experiment(_config(tmp_path, name="resume-tensorboard", logger="tensorboard", outer_lr=0.05),
                   echo=lambda _: None)
    run_dir = tmp_path / "resume-tensorboard"
    history = [r["outer_loss"] for r in _history(run_dir, 0)]
    assert _scalars(_events(run_dir / "logs" / "seed_0"), "loss/outer_loss") == list(zip(range(3),
                                                                                         _as_float32(history)))


def test_logger_options_do_not_change_what_a_resume_compares():
    from dgl_bilevel.experiment.seed_files import comparable_settings

    plain = ExperimentConfig(dataset="cheaters").resolved()
    logged = ExperimentConfig(dataset="cheaters", logger="csv", log_histogram_every=3).resolved()
    assert comparable_settings(plain) == comparable_settings(logged)
