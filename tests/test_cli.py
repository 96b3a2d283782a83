"""The dgl-bilevel command line: end to end on small runs, and its error messages."""
from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest

from dgl_bilevel.cli import main


def test_datasets_lists_sources(capsys, data_root):
    assert main(["datasets", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "cora" in out and "cheaters" in out and str((data_root / "planetoid").resolve()) in out


def test_run_writes_results_and_graphs(tmp_path, capsys):
    code = main(["run", "--dataset", "cheaters", "--inner", "gnn", "--method", "bo", "--seeds", "2",
                 "--outer-steps", "3", "--inner-steps", "5", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    run_dir = tmp_path / "cheaters-gnn-bo"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["seed"] for r in summary["per_seed"]] == [0, 1]
    assert set(summary["aggregate"]["test_acc"]) == {"mean", "std"}
    assert summary["config"]["hidden"] == 8 and summary["config"]["parametrization"] == "box"  # cheaters preset
    seed0 = json.loads((run_dir / "seed_0.json").read_text())
    assert len(seed0["history"]) == 3 and seed0["config"]["hypergrad"] == "unrolled"
    assert (run_dir / "graph_seed0.bin").is_file()
    out = capsys.readouterr().out
    assert "mean+-std" in out and "V_out acc" in out


def test_resume_skips_finished_seeds(tmp_path, capsys):
    args = ["run", "--dataset", "cheaters", "--method", "bo", "--outer-steps", "2", "--inner-steps", "3",
            "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    assert main(args + ["--resume", "--seeds", "2"]) == 0
    assert "already finished" in capsys.readouterr().out


def test_laplacian_a_obs_uses_the_exact_solver(tmp_path):
    assert main(["run", "--dataset", "synthetic1-low", "--inner", "laplacian", "--method", "a_obs",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    seed0 = json.loads((tmp_path / "synthetic1-low-laplacian-a_obs" / "seed_0.json").read_text())
    assert seed0["config"]["hypergrad"] == "adjoint" and seed0["result"]["test_mse"] >= 0


def test_config_file_and_flags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: cheaters\nouter_steps: 2\ninner_steps: 3\nhidden: 4\n")
    assert main(["run", "--config", str(cfg), "--hidden", "5", "--out", str(tmp_path), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "cheaters-gnn-bo" / "summary.json").read_text())
    assert summary["config"]["outer_steps"] == 2 and summary["config"]["hidden"] == 5


def test_method_flag_over_a_written_config_follows_the_new_method(tmp_path, capsys):
    """A run's config.yaml records bo's expansion (regularizer none, support observed); ``--method
    bo+reg`` over it must give the regulariser, not silently rerun bo; explicit flags still win."""
    base = ["--out", str(tmp_path), "--no-progress", "--outer-steps", "1", "--inner-steps", "2", "--seeds", "1"]
    assert main(["run", "--dataset", "cheaters", "--method", "bo"] + base) == 0
    written = tmp_path / "cheaters-gnn-bo" / "config.yaml"
    assert "regularizer: none" in written.read_text()

    def resolved(name: str, *flags: str) -> dict:
        assert main(["run", "--config", str(written), "--name", name, *flags] + base) == 0
        return json.loads((tmp_path / name / "summary.json").read_text())["config"]

    assert resolved("reg", "--method", "bo+reg")["regularizer"] == "log_degree"
    assert "regularizer, structure, support, theta_shared follow bo+reg" in capsys.readouterr().err
    assert resolved("power", "--method", "bo+power")["support"] == "power"
    assert resolved("reg-off", "--method", "bo+reg", "--regularizer", "none")["regularizer"] == "none"
    assert resolved("same", "--method", "bo")["regularizer"] == "none"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data-root", "/nonexistent/data"], "/nonexistent/data/planetoid does not exist"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--inner", "laplacian", "--hypergrad", "adjoint", "--laplacian-loss", "ce", "--dataset", "cheaters"], "quadratic"),
        (["--device", "cuda"], "--device cuda"),
        (["--seeds", "0"], "--seeds must be >= 1"),
    ],
)
def test_errors_are_messages_not_tracebacks(tmp_path, capsys, args, message):
    assert main(["run", "--out", str(tmp_path), "--no-progress", "--outer-steps", "1"] + args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_console_script_help_lists_every_option():
    out = subprocess.run([sys.executable, "-m", "dgl_bilevel.cli", "run", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--dataset", "--inner", "--method", "--seeds", "--data-root", "--out", "--outer-steps",
                   "--inner-steps", "--outer-lr", "--inner-lr", "--hidden", "--device", "--hypergrad", "--resume"):
        assert option in out
    assert "default" in out


@pytest.mark.parametrize("inner_name", ["gnn", "laplacian"])
def test_inner_optimizer_sgd_takes_plain_gradient_steps(inner_name):
    import torch

    from dgl_bilevel.data import load_dataset
    from dgl_bilevel.experiment import ExperimentConfig
    from dgl_bilevel.experiment.build import build_inner
    from dgl_bilevel.hypergrad import optimize

    config = ExperimentConfig(dataset="cheaters", inner=inner_name, inner_optimizer="sgd", inner_lr=0.1).resolved()
    data = load_dataset("cheaters", None, 0)
    inner = build_inner(config, data).bind(data, data.graph)
    weights = data.observed_weights()
    start = [p.detach().requires_grad_() for p in inner.starting_params(torch.Generator().manual_seed(0))]
    grads = torch.autograd.grad(inner.objective(start, weights), start)
    start = [p.detach().clone() for p in start]
    stepped, _, _ = optimize(inner, weights, [p.clone() for p in start], 1, differentiable=False)
    for after, before, grad in zip(stepped, start, grads):
        assert torch.allclose(after, before - 0.1 * grad, atol=1e-6)
    with pytest.raises(Exception, match="--inner-optimizer"):
        ExperimentConfig(inner_optimizer="lbfgs").resolved()


def test_every_yes_no_flag_has_an_opposite_that_overrides_the_config_file(tmp_path):
    from dgl_bilevel.cli import build_parser, config_from_args

    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: cheaters\nrefit: true\nprogress: false\n")
    parse = lambda *flags: config_from_args(build_parser("run").parse_args(["run", "--config", str(cfg), *flags]))  # noqa: E731
    config = parse()
    assert config.refit is True and config.progress is False  # the file's choices
    config = parse("--no-refit", "--progress")
    assert config.refit is False and config.progress is True  # switched back from the command line
    assert parse("--refit", "--no-progress").refit is True


def test_the_shipped_best_run_s_honest_baselines_follow_from_its_file(capsys):
    """``--config cora-best.yaml --method a_obs+v_out`` (or a_obs) is the shipped run's baseline: the file's
    learned-graph options (refit, the shared term) go with its method instead of refusing the run."""
    from dgl_bilevel.cli import build_parser, config_from_args

    shipped = str(Path(__file__).resolve().parents[1] / "recipes" / "configs" / "cora-best.yaml")
    for method in ("a_obs+v_out", "a_obs"):
        config = config_from_args(build_parser("run").parse_args(["run", "--config", shipped, "--method", method]))
        assert config.method == method and not config.refit and config.theta_shared == "none"
        assert "refit, regularizer, structure, support, theta_shared follow" in capsys.readouterr().err
    config = config_from_args(build_parser("run").parse_args(["run", "--config", shipped, "--method", "bo+reg"]))
    assert config.refit and config.resolved().structure == "edges"  # a method that learns a graph keeps the refit ...
    assert config.theta_shared == "none"  # ... and the shared term follows the structure
    config = config_from_args(build_parser("run").parse_args(["run", "--config", shipped, "--method", "bo+reg",
                                                              "--structure", "bernoulli", "--theta-shared", "cosine"]))
    assert config.theta_shared == "cosine" and config.structure == "bernoulli"  # flags still win
