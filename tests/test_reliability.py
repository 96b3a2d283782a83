"""What users meet at default settings: refusals before work starts, resume that never mislabels,
interrupts that keep the last iteration, and inputs read the way they were meant."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import dgl_bilevel as dbl
from dgl_bilevel._dgl import dgl
from dgl_bilevel.cli import main
from dgl_bilevel.errors import ConfigError, DataError, RunInterrupted
from dgl_bilevel.ops import weighted_sum

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--dataset", "cheaters", "--outer-steps", "3", "--inner-steps", "3", "--no-progress"]


def _edges(data, seed=0):
    return dbl.EdgeWeights(data.graph, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------ first-order on weight-free predictions
@pytest.mark.parametrize("inner", [dbl.LaplacianRegularization(loss="mse"), dbl.LabelPropagation()])
def test_first_order_is_refused_where_it_is_exactly_zero(tiny, inner):
    with pytest.raises(ConfigError, match="exactly zero"):
        dbl.fit(tiny, _edges(tiny), inner, "first_order", outer_steps=1, progress=False)
    with pytest.raises(ConfigError, match="exactly zero"):
        dbl.fit(tiny, _edges(tiny), inner, dbl.Truncated(k=0), outer_steps=1, progress=False)


class IgnoresWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 3)

    def forward(self, graph, feat, edge_weight=None):
        return self.linear(feat + weighted_sum(graph, feat, torch.ones_like(edge_weight)))


def test_an_exactly_zero_hypergradient_is_reported_once(tiny):
    inner = dbl.TrainedGNN(IgnoresWeights(), steps=3)
    with pytest.warns(RuntimeWarning, match="hypergradient is exactly zero") as caught:
        dbl.fit(tiny, _edges(tiny), inner, "unrolled", outer_steps=3, progress=False)
    assert sum("exactly zero" in str(w.message) for w in caught) == 1


# ------------------------------------------------------------------ resume
def test_resume_refuses_finished_seeds_from_other_settings(tmp_path):
    assert main(["run", *QUICK, "--out", str(tmp_path)]) == 0
    assert main(["run", *QUICK, "--out", str(tmp_path), "--resume", "--hidden", "4"]) == 2


def test_resume_with_more_outer_steps_continues_the_finished_seed(tmp_path, capsys):
    assert main(["run", *QUICK, "--out", str(tmp_path), "--checkpoint-every", "1"]) == 0
    longer = [a if a != "3" or i != QUICK.index("--outer-steps") + 1 else "5" for i, a in enumerate(QUICK)]
    assert main(["run", *longer, "--out", str(tmp_path), "--resume"]) == 0
    seed = json.loads((tmp_path / "cheaters-gnn-bo" / "seed_0.json").read_text())
    assert seed["result"]["outer_iterations"] == 5 and len(seed["history"]) == 5
    reference = tmp_path / "ref"
    assert main(["run", *longer, "--out", str(reference)]) == 0
    again = json.loads((reference / "cheaters-gnn-bo" / "seed_0.json").read_text())
    assert [r["outer_loss"] for r in again["history"]] == [r["outer_loss"] for r in seed["history"]]


# ------------------------------------------------------------------ interrupts
def test_ctrl_c_keeps_the_last_completed_iteration_and_resume_finishes_the_run(tiny, tmp_path):
    reference = dbl.fit(tiny, _edges(tiny), dbl.TrainedGNN(dbl.models.SumAggGNN(5, 4, 3), steps=5),
                        outer_steps=6, progress=False, seed=2)

    def interrupt_at_4(state):
        if state.iteration == 4:
            os.kill(os.getpid(), signal.SIGINT)

    path = tmp_path / "ckpt.pt"
    with pytest.raises(RunInterrupted) as caught:
        dbl.fit(tiny, _edges(tiny), dbl.TrainedGNN(dbl.models.SumAggGNN(5, 4, 3), steps=5), outer_steps=6,
                progress=False, seed=2, checkpoint=path, checkpoint_every=100, callbacks=[interrupt_at_4])
    assert caught.value.checkpoint == path and caught.value.iteration == 3
    assert torch.load(path, weights_only=True)["next_iteration"] == 4  # not the periodic (every 100) one
    resumed = dbl.fit(tiny, _edges(tiny), dbl.TrainedGNN(dbl.models.SumAggGNN(5, 4, 3), steps=5), outer_steps=6,
                      progress=False, seed=2, checkpoint=path, resume=True)
    assert [r["outer_loss"] for r in resumed.history] == [r["outer_loss"] for r in reference.history]
    assert torch.equal(resumed.final_weights, reference.final_weights)


def test_the_cli_says_where_an_interrupted_run_can_resume(monkeypatch, tmp_path, capsys):
    import dgl_bilevel.experiment.run as run_module

    def interrupted(*args, **kwargs):
        raise RunInterrupted(tmp_path / "checkpoint_seed0.pt", 7)

    monkeypatch.setattr(run_module, "fit_loop", interrupted)
    assert main(["run", *QUICK, "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "outer iteration 7" in err and "checkpoint_seed0.pt" in err and "--resume" in err

    def interrupted_without_checkpoint(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "fit_loop", interrupted_without_checkpoint)
    assert main(["run", *QUICK, "--out", str(tmp_path / "other")]) == 130
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "--resume" not in err
    assert not (tmp_path / "other" / "cheaters-gnn-bo").exists()  # nothing was written, nothing is left


# ------------------------------------------------------------------ selection needs a validation score
def test_no_validation_nodes_means_no_selection(tiny):
    data = dbl.BilevelData(tiny.graph, tiny.features, tiny.labels, v_in=tiny.v_in, v_out=tiny.v_out, val=[],
                           test=tiny.test, name="noval")
    with pytest.raises(ConfigError, match="no validation nodes"):
        dbl.fit(data, _edges(data), dbl.LaplacianRegularization(loss="mse"), outer_steps=2, progress=False)


def test_a_validation_score_that_is_always_nan_is_refused(tiny):
    labels = torch.zeros(tiny.num_nodes, 2)
    labels[tiny.v_in[:2], 0] = 1
    labels[tiny.v_out[:1], 1] = 1  # val has a single class per task: ROC-AUC is undefined there
    data = dbl.BilevelData(tiny.graph, tiny.features, labels, v_in=tiny.v_in, v_out=tiny.v_out, val=tiny.val,
                           test=tiny.test, task="multilabel")
    with pytest.raises(ConfigError, match="no rocauc score"):
        dbl.fit(data, _edges(data), dbl.TrainedGNN(dbl.models.SumAggGNN(5, 4, 2), steps=2), outer_steps=2,
                progress=False)


# ------------------------------------------------------------------ re-initialisation keeps normalisation layers
class NormalisedGNN(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.conv = dbl.models.SumAggConv(5, 8)
        self.norm = norm
        self.out = nn.Linear(8, 3)

    def forward(self, graph, feat, edge_weight=None):
        return self.out(torch.relu(self.norm(self.conv(graph, feat, edge_weight))))


@pytest.mark.parametrize("norm", [nn.LayerNorm(8), nn.BatchNorm1d(8)], ids=["layernorm", "batchnorm"])
@pytest.mark.parametrize("reinit", ["xavier", "module"])
def test_normalisation_scales_are_not_zeroed_at_each_outer_iteration(tiny, norm, reinit):
    inner = dbl.TrainedGNN(NormalisedGNN(norm), steps=60, lr=0.05, reinit=reinit).bind(tiny, tiny.graph)
    params = dict(zip(inner.names, inner.starting_params(torch.Generator().manual_seed(0))))
    assert torch.equal(params["norm.weight"], torch.ones(8, dtype=torch.float64))
    assert torch.equal(params["norm.bias"], torch.zeros(8, dtype=torch.float64))
    result = dbl.fit(tiny, _edges(tiny), inner, outer_steps=1, progress=False)
    assert result.best_metrics["v_in"] == 1.0  # it trains (4 nodes of 3 classes)


def test_module_reinit_is_seeded_by_the_run(tiny):
    inner = dbl.TrainedGNN(NormalisedGNN(nn.LayerNorm(8)), reinit="module").bind(tiny, tiny.graph)
    a = inner.initial_params(torch.Generator().manual_seed(3))
    b = inner.initial_params(torch.Generator().manual_seed(3))
    c = inner.initial_params(torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], c[0])


# ------------------------------------------------------------------ inputs read as meant
def test_integer_masks_are_masks_and_split_matrices_are_refused(tiny):
    n = tiny.num_nodes
    masks = {s: torch.zeros(n, dtype=torch.uint8) for s in ("v_in", "v_out", "val", "test")}
    for split, mask in masks.items():
        mask[getattr(tiny, split)] = 1
    data = dbl.BilevelData(tiny.graph, tiny.features, tiny.labels, **masks)
    assert torch.equal(data.v_in, tiny.v_in) and torch.equal(data.test, tiny.test)
    with pytest.raises(DataError, match=r"one column per split.*pick one"):
        dbl.BilevelData(tiny.graph, tiny.features, tiny.labels, v_in=masks["v_in"].bool().repeat(10, 1).T,
                        v_out=tiny.v_out, val=tiny.val, test=tiny.test)


def test_edge_anomalies_are_counted_in_a_warning(tiny):
    src, dst = dgl.to_simple(tiny.graph).edges()
    g = dgl.graph((torch.cat([src, src[:2], torch.tensor([0, 3])]), torch.cat([dst, dst[:2], torch.tensor([0, 9])])),
                  num_nodes=tiny.num_nodes)
    with pytest.warns(UserWarning, match=r"2 duplicate edge.*1 self-loop.*edge\(s\) without their reverse"):
        dbl.BilevelData(g, tiny.features, tiny.labels, v_in=tiny.v_in, v_out=tiny.v_out, val=tiny.val, test=tiny.test)


# ------------------------------------------------------------------ refused before work starts
def test_library_options_are_checked_at_construction(tiny):
    with pytest.raises(ConfigError, match="lr must be > 0"):
        dbl.TrainedGNN(dbl.models.SumAggGNN(5, 4, 3), lr=0.0)
    with pytest.raises(ConfigError, match="steps must be >= 1 for a trained model"):
        dbl.TrainedGNN(dbl.models.SumAggGNN(5, 4, 3), steps=0)
    with pytest.raises(ConfigError, match="lr must be > 0"):
        dbl.LaplacianRegularization(lr=-1.0)
    with pytest.raises(ConfigError, match=r"outputs shape \(12, 4\).*needs \(12, 3\)"):
        dbl.TrainedGNN(dbl.models.SumAggGNN(5, 4, 4)).bind(tiny, tiny.graph)
    with pytest.raises(ConfigError, match="learning rate lr must be > 0"):
        dbl.fit(tiny, _edges(tiny), dbl.LaplacianRegularization(loss="mse"), lr=0.0, progress=False)


@pytest.mark.parametrize("args, message", [
    (["--hidden", "0"], "--hidden must be >= 1"),
    (["--inner-lr", "0"], "--inner-lr must be > 0"),
    (["--outer-lr", "-0.1"], "--outer-lr must be > 0"),
    (["--inner-steps", "0"], "--inner-steps must be >= 1 for the gnn inner problem"),
    (["--layers", "0"], "--layers must be >= 1"),
])
def test_cli_options_are_refused_before_any_data_loads(tmp_path, capsys, args, message):
    assert main(["run", "--data-root", "/nonexistent", "--out", str(tmp_path), "--no-progress"] + args) == 2
    err = capsys.readouterr().err
    assert message in err and "does not exist" not in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ environment
def test_dgl_can_be_imported_before_the_package():
    code = "import dgl, dgl_bilevel; print(dgl.__version__, dgl_bilevel.fit.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True).stdout
    assert out.split() == [dgl.__version__, "fit"]


def test_the_default_data_root_works_from_any_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DGL_BILEVEL_DATA"}
    out = subprocess.run([sys.executable, "-m", "dgl_bilevel.cli", "datasets"], capture_output=True, text=True,
                         cwd=tmp_path, env=env, check=True).stdout
    assert "the repository's ../shared/data" in out
    assert any(line.split()[:2] == ["chameleon", "available"] for line in out.splitlines())


# ------------------------------------------------------------------ smaller things
def test_a_failed_run_leaves_no_empty_folder(tmp_path):
    assert main(["run", "--data-root", "/nonexistent", "--out", str(tmp_path), "--no-progress"]) == 2
    assert not any(tmp_path.iterdir())


def test_single_seed_std_is_not_claimed_to_be_zero(tmp_path, capsys):
    assert main(["run", *QUICK, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "cheaters-gnn-bo" / "summary.json").read_text())
    assert summary["aggregate"]["test_acc"]["std"] is None
    assert "+- n/a" in capsys.readouterr().out


def test_the_learned_graph_carries_the_node_data(tiny):
    result = dbl.fit(tiny, _edges(tiny), dbl.LaplacianRegularization(loss="mse"), outer_steps=1, progress=False)
    g = result.graph
    assert torch.equal(g.ndata["feat"], tiny.features) and torch.equal(g.ndata["label"], tiny.labels)
    assert torch.equal(g.ndata["test_mask"].nonzero().flatten(), tiny.test)
    assert set(result.to_graph(node_data=False).ndata.keys()) == set()


def test_seeds_written_before_an_option_existed_still_resume_at_its_default():
    from dgl_bilevel.config import ExperimentConfig
    from dgl_bilevel.experiment.seed_files import changed_settings, comparable_settings

    current = comparable_settings(ExperimentConfig(dataset="cheaters").resolved())
    old = {k: v for k, v in current.items() if k not in ("theta_shared", "reverse_engine")}
    old["unroll_checkpoint"] = True  # how the engine was written before --reverse-engine
    assert changed_settings(old, current) == []
    assert changed_settings({**old, "unroll_checkpoint": False}, current) == ["reverse_engine"]
    assert changed_settings(old, {**current, "theta_shared": "cosine"}) == ["theta_shared"]  # not its default
    assert changed_settings({**old, "outer_lr": 1.0}, current) == ["outer_lr"]
