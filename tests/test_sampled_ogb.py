"""Mini-batch inner training, OGB-layout data through the real ogb loader, heterophilous data."""
from __future__ import annotations

import json

import pytest
import torch
import torchopt

import dgl_bilevel as dbl
from dgl_bilevel.data.generated import arxiv_like
from dgl_bilevel.data.heterophilous import heterophilous
from dgl_bilevel.data.ogb import check_ogb_root, load_ogb, write_ogb_layout
from dgl_bilevel.errors import ConfigError, DataError
from dgl_bilevel.losses import task_loss

from test_hypergrad import directional_check, hypergradient, relative_error, _weights


def test_sampled_gnn_equals_full_batch_when_sampling_everything(tiny):
    """batch = all of v_in and full fanouts: mini-batch training is full-batch training."""
    model = dbl.models.SumAggGNN(5, 4, 3)
    full = dbl.TrainedGNN(model, steps=8).bind(tiny, tiny.graph)
    sampled = dbl.SampledGNN(model, steps=8, batch_size=100, fanouts=[-1, -1]).bind(tiny, tiny.graph)
    w = _weights(tiny)
    start = full.starting_params(torch.Generator().manual_seed(0))
    a = dbl.FirstOrder().solve(full, w, start).params
    b = dbl.FirstOrder().solve(sampled, w, start).params
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=1e-10)
    assert torch.allclose(full.objective(a, w), sampled.objective(a, w))


def test_sampled_gnn_implicit_accumulates_over_batches(tiny):
    """Batched Hessian products equal the one-pass ones, and the result matches finite differences."""
    settings = dict(steps=600, optimizer=torchopt.sgd(0.1, momentum=0.9), weight_decay=0.1)
    one_pass = dbl.TrainedGNN(dbl.models.SumAggGNN(5, 3, 3, num_layers=1), **settings)
    batched = dbl.SampledGNN(dbl.models.SumAggGNN(5, 3, 3, num_layers=1), batch_size=100, fanouts=[-1],
                             eval_batch_size=1, **settings)
    w = _weights(tiny)
    # undamped: finite differences see the exact derivative (a trained model's default damping would bias it)
    exact, _ = hypergradient(one_pass, dbl.Implicit(tol=1e-12, maxiter=300, damping=0.0), tiny, w)
    acc, fn = hypergradient(batched, dbl.Implicit(tol=1e-12, maxiter=300, damping=0.0), tiny, w)
    assert len(batched.objective_terms(w)) == tiny.v_in.numel()
    assert relative_error(acc, exact) < 1e-8
    assert directional_check(acc, fn, w, directions=1) < 1e-5


def test_sampled_gnn_trains_on_sampled_neighbourhoods_and_refuses_unrolling(tiny):
    inner = dbl.SampledGNN(dbl.models.SumAggGNN(5, 4, 3), steps=5, batch_size=2, fanouts=[2, 2])
    structure = dbl.EdgeWeights(tiny.graph, dtype=torch.float64)
    result = dbl.fit(tiny, structure, inner, dbl.Implicit(maxiter=5, damping=1e-3), outer_steps=2, progress=False)
    assert len(result.history) == 2 and result.history[0]["implicit_iterations"] >= 1
    with pytest.raises(ConfigError, match="cannot be unrolled"):
        dbl.fit(tiny, dbl.EdgeWeights(tiny.graph, dtype=torch.float64), inner, dbl.Unrolled(), outer_steps=1,
                progress=False)
    with pytest.raises(ConfigError, match="blocks"):
        dbl.SampledGNN(dbl.models.GCN(5, 4, 3))


# ------------------------------------------------------------------------ OGB
@pytest.fixture(scope="module")
def ogb_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ogb")
    write_ogb_layout(arxiv_like(num_nodes=400, num_edges=2400, num_features=8, num_classes=5, seed=0), root)
    return root


def test_default_ogb_root_is_the_data_roots_ogb_folder_from_any_directory(ogb_root, tmp_path, monkeypatch):
    """No --data-root: OGB data sets are looked for in <data root>/ogb, not in the current directory."""
    from dgl_bilevel.data import load_dataset
    from dgl_bilevel.registry import DATASETS

    monkeypatch.setenv("DGL_BILEVEL_DATA", str(ogb_root.parent))
    monkeypatch.chdir(tmp_path)
    (ogb_root.parent / "ogb").symlink_to(ogb_root, target_is_directory=True)
    assert DATASETS["ogbn-arxiv"].paths(None) == [ogb_root.parent / "ogb" / "ogbn_arxiv" / "RELEASE_v1.txt"]
    assert DATASETS["ogbn-arxiv"].state(None) == "available"
    assert load_dataset("ogbn-arxiv", None, seed=0).num_nodes == 400


def test_generated_arxiv_has_the_requested_shape():
    g = arxiv_like(num_nodes=1000, num_edges=6000, num_features=16, num_classes=7, seed=1)
    assert g.src.size == 6000 and g.features.shape == (1000, 16) and set(g.labels.tolist()) <= set(range(7))
    assert (g.src > g.dst).all()  # cites older papers
    assert len(g.train) + len(g.valid) + len(g.test) == 1000 and g.train.max() < g.valid.min() < g.test.min()
    homophily = float((g.labels[g.src] == g.labels[g.dst]).mean())
    assert 0.55 < homophily < 0.8


def test_real_ogb_loader_reads_the_generated_layout(ogb_root):
    data = load_ogb("ogbn-arxiv", ogb_root, seed=0, v_out_fraction=0.5)
    assert data.num_nodes == 400 and data.num_edges == 2 * 2400  # symmetrised
    assert data.metric.name == "acc"
    train = torch.cat([data.v_in, data.v_out])
    assert abs(data.v_in.numel() - data.v_out.numel()) <= 1
    assert int(train.max()) < int(data.val.min())  # v_out comes from the training split only
    out = torch.zeros(400, 5)
    out[torch.arange(400), data.labels] = 1.0
    assert data.score(out, "test") == 1.0  # the Evaluator


def test_v_out_fraction_is_configurable_for_ogb_only(ogb_root, data_root):
    from dgl_bilevel.data import load_dataset
    from dgl_bilevel.errors import ConfigError

    quarter = load_dataset("ogbn-arxiv", ogb_root, seed=0, v_out_fraction=0.25)
    train = quarter.v_in.numel() + quarter.v_out.numel()
    assert abs(quarter.v_out.numel() - round(0.25 * train)) <= 1
    with pytest.raises(ConfigError, match="between 0 and 1"):
        load_dataset("ogbn-arxiv", ogb_root, seed=0, v_out_fraction=1.0)
    with pytest.raises(ConfigError, match="OGB data sets only"):
        load_dataset("cora", data_root, seed=0, v_out_fraction=0.3)


def test_missing_ogb_files_fail_fast_with_the_layout(tmp_path, ogb_root):
    with pytest.raises(DataError, match="ogbn_arxiv.*does not exist.*Expected layout"):
        check_ogb_root(tmp_path, "ogbn-arxiv")
    broken = tmp_path / "ogbn_arxiv"
    broken.mkdir()
    (broken / "raw").mkdir()
    with pytest.raises(DataError, match="RELEASE_v1.txt is missing.*raw/edge.csv.gz"):
        check_ogb_root(tmp_path, "ogbn-arxiv")
    with pytest.raises(DataError, match="unsupported OGB data set"):
        check_ogb_root(ogb_root, "ogbn-mag")


def test_leaderboard_runner_on_ogb_layout(ogb_root, tmp_path, capsys):
    from dgl_bilevel.cli import main

    for method in ("a_obs", "lp", "bo"):
        steps = [] if method == "lp" else ["--inner-steps", "5"]  # label propagation is exact: --inner-steps is refused
        code = main(["leaderboard", "--dataset", "ogbn-arxiv", "--root", str(ogb_root), "--method", method,
                     "--seeds", "2", "--outer-steps", "2", *steps, "--out", str(tmp_path), "--no-progress"])
        assert code == 0
    board = json.loads((tmp_path / "ogbn-arxiv-gnn-bo-leaderboard" / "leaderboard.json").read_text())
    assert board["seeds"] == 2 and board["metric"] == "acc" and 0 <= board["test"]["mean"] <= 1
    assert "versions" in board and board["versions"]["dgl"]
    md = (tmp_path / "ogbn-arxiv-lp-leaderboard" / "leaderboard.md").read_text()
    assert "label propagation" in md and "±" in md
    assert "v_out is taken from the training split" in md


def test_leaderboard_says_where_v_out_comes_from():
    from dgl_bilevel.config import ExperimentConfig
    from dgl_bilevel.experiment.leaderboard import where_v_out

    assert "training split" in where_v_out(ExperimentConfig(dataset="ogbn-arxiv"))
    assert "half of the validation set" in where_v_out(ExperimentConfig(dataset="cora"))
    assert "whole validation set" in where_v_out(ExperimentConfig(dataset="cora", protocol="lds"))


def test_multilabel_task_uses_bce_and_rocauc():
    from dgl_bilevel._dgl import dgl

    g = dgl.graph(([0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]))
    labels = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]])
    data = dbl.BilevelData(g, torch.rand(6, 3), labels, v_in=[0, 1, 2], v_out=[3, 4, 5], val=[], test=[],
                           task="multilabel")
    assert data.out_dim == 2 and data.metric.name == "rocauc"
    assert data.score(labels.float(), "v_in") == 1.0
    loss = task_loss(torch.zeros(6, 2), data.labels, data.v_in, "multilabel")
    assert torch.isclose(loss, torch.log(torch.tensor(2.0)))


# ---------------------------------------------------------------- heterophilous
@pytest.mark.parametrize("name, nodes", [("texas", 183), ("cornell", 183), ("wisconsin", 251), ("chameleon", 2277)])
def test_heterophilous_official_splits(data_root, name, nodes):
    a, b = heterophilous(name, data_root, seed=0), heterophilous(name, data_root, seed=10)
    assert a.num_nodes == nodes and a.num_classes == 5
    assert torch.equal(a.v_in, b.v_in)  # seed 10 -> official split 0 again
    c = heterophilous(name, data_root, seed=1)
    assert not torch.equal(a.v_in, c.v_in)
    assert torch.allclose(a.features.sum(1)[a.features.sum(1) > 0], torch.tensor(1.0))


def test_heterophilous_missing_file(tmp_path):
    with pytest.raises(DataError, match="heterophilous does not exist"):
        heterophilous("texas", tmp_path)
    (tmp_path / "heterophilous").mkdir()
    with pytest.raises(DataError, match="heterophilous/texas.npz"):
        heterophilous("texas", tmp_path)
