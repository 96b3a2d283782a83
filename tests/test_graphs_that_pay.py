"""Candidate supports, protocols, refit, cross-fitting, the frozen control and noisy data sets:
the pieces that compare a learned graph with the labels it consumes."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import dgl_bilevel as dbl
from dgl_bilevel._dgl import dgl
from dgl_bilevel.config import ExperimentConfig
from dgl_bilevel.data import load_dataset
from dgl_bilevel.data.noise import add_spurious_edges, undirected_edge_count
from dgl_bilevel.diagnostics import edge_statistics, roc_auc
from dgl_bilevel.errors import ConfigError, DataError
from dgl_bilevel.experiment import run_experiment
from dgl_bilevel.experiment.crossfit import stratified_folds
from dgl_bilevel.structure.support import knn_neighbours, knn_support, observed_knn_support


# ----------------------------------------------------------------------------------- supports
def test_observed_knn_support_holds_both_marks_them_and_is_symmetric():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=gen)
    src = torch.arange(59)
    g = dgl.graph((torch.cat([src, src + 1]), torch.cat([src + 1, src])), num_nodes=60)
    s = observed_knn_support(g, x, k=4, metric="cosine")
    n = 60
    keys = set((s.edges()[0] * n + s.edges()[1]).tolist())
    assert set((g.edges()[0] * n + g.edges()[1]).tolist()) <= keys  # every observed edge is a candidate
    assert all((k % n) * n + k // n in keys for k in keys)  # symmetric
    assert not any(k // n == k % n for k in keys)  # no self-loops
    obs = s.edata["observed"] > 0.5
    assert int(obs.sum()) == g.num_edges()
    knn = knn_support(x, 4, metric="cosine")
    knn_keys = set((knn.edges()[0] * n + knn.edges()[1]).tolist())
    assert keys == knn_keys | set((g.edges()[0] * n + g.edges()[1]).tolist())


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_blocked_knn_equals_the_full_distance_matrix(metric):
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    if metric == "cosine":
        y = x / x.norm(dim=1, keepdim=True)
        score = y @ y.T
    else:
        score = -torch.cdist(x, x)
    score.fill_diagonal_(-float("inf"))
    expected = torch.topk(score, 7, dim=1).indices.sort(1).values
    got = knn_neighbours(x, 7, metric, chunk_bytes=4 * 200 * 13).sort(1).values  # 13 rows per block
    assert torch.equal(expected, got)


def test_knn_metric_and_k_are_checked():
    with pytest.raises(ConfigError, match="metric"):
        knn_neighbours(torch.randn(5, 2), 2, "manhattan")
    with pytest.raises(ConfigError, match="k must be"):
        knn_neighbours(torch.randn(5, 2), 5)


# ----------------------------------------------------------------------------------- protocols
def test_lds_protocol_shares_validation_between_outer_loss_and_selection(data_root):
    data = load_dataset("cora", data_root, 0)
    lds = data.with_outer_loss_on_validation()
    assert lds.outer_on_validation and torch.equal(lds.v_out, lds.val)
    assert lds.val.numel() == data.v_out.numel() + data.val.numel() == 500
    assert torch.equal(lds.test, data.test) and torch.equal(lds.v_in, data.v_in)
    assert lds.with_outer_loss_on_validation() is lds
    with pytest.raises(DataError, match="exclude each other|cannot also"):
        data.with_v_out_in_training().with_outer_loss_on_validation()
    with pytest.raises(DataError, match="disjoint"):  # without the declared exception the sets must stay disjoint
        data.with_splits(v_out=data.val)


@pytest.mark.parametrize("flags, message", [
    ({"protocol": "lds", "refit": True}, "--refit"),
    ({"protocol": "lds", "cross_fit": 3}, "--cross-fit"),
    ({"protocol": "lds", "method": "a_obs+v_out"}, "its own training labels"),
    ({"structure": "bernoulli", "graph_samples": 0}, "--graph-samples"),
    ({"structure": "bernoulli", "theta_candidate": 1.5}, "--theta-candidate"),
    ({"structure": "bernoulli", "estimator": "perturbed"}, "ste"),
    ({"structure": "edges", "estimator": "score"}, "bernoulli"),
    ({"structure": "bernoulli", "estimator": "score"}, "--resample outer"),
    ({"structure": "bernoulli", "hypergrad": "implicit"}, "no fixed point"),
    ({"cross_fit": 1}, "at least 2 folds"),
    ({"method": "a_obs", "refit": True}, "learns none"),
])
def test_configurations_that_cannot_run_are_refused_by_name(flags, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig(dataset="cheaters", **flags).resolved()


def test_lds_protocol_refuses_ogb_data():
    with pytest.raises(ConfigError, match="OGB's rules"):
        ExperimentConfig(dataset="ogbn-arxiv", protocol="lds").resolved()


def test_observed_knn_support_needs_features():
    from dgl_bilevel.structure.support import observed_knn_support_from_config

    class NoFeatures:
        features = None
        name = "featureless"

    with pytest.raises(ConfigError, match="feature"):
        observed_knn_support_from_config(ExperimentConfig(), NoFeatures())


# ----------------------------------------------------------------------------------- folds, noise, statistics
def test_cross_fit_folds_are_disjoint_stratified_and_cover_the_labels(data_root):
    data = load_dataset("cora", data_root, 0)
    folds = stratified_folds(data, 3, seed=0)
    together = torch.cat(folds)
    assert together.numel() == together.unique().numel() == data.v_in.numel() + data.v_out.numel()
    assert set(together.tolist()) == set(torch.cat([data.v_in, data.v_out]).tolist())
    for c in range(data.num_classes):
        counts = [int((data.labels[f] == c).sum()) for f in folds]
        assert max(counts) - min(counts) <= 1  # each class dealt evenly
    assert all(abs(f.numel() - together.numel() / 3) <= data.num_classes for f in folds)
    with pytest.raises(ConfigError, match="at least 2"):
        stratified_folds(data, 1, 0)
    with pytest.raises(ConfigError, match="smallest class"):
        stratified_folds(data, 500, 0)


def test_noisy_data_sets_add_the_stated_share_of_symmetric_random_edges(data_root):
    clean = load_dataset("cora", data_root, 0)
    noisy = load_dataset("cora-noise60", data_root, 0)
    added = undirected_edge_count(noisy.graph) - undirected_edge_count(clean.graph)
    assert added == round(0.6 * undirected_edge_count(clean.graph))
    assert int(noisy.extras["spurious"].sum()) == 2 * added
    assert torch.equal(noisy.graph.edges()[0][: clean.num_edges], clean.graph.edges()[0])
    again = load_dataset("cora-noise60", data_root, 0)
    assert torch.equal(again.graph.edges()[1], noisy.graph.edges()[1])  # seeded
    other = load_dataset("cora-noise60", data_root, 1)
    assert not torch.equal(other.graph.edges()[1], noisy.graph.edges()[1])


def test_edge_statistics_see_a_graph_that_prefers_same_class_edges():
    g = dgl.graph((torch.tensor([0, 1, 2, 3]), torch.tensor([1, 0, 3, 0])), num_nodes=4)
    g.edata["observed"] = torch.tensor([1.0, 1.0, 0.0, 0.0])
    labels = torch.tensor([0, 0, 1, 1])
    w = torch.tensor([1.0, 1.0, 0.9, 0.1])  # same-class edges 0-1 and 2-3 kept, 3->0 dropped
    stats = edge_statistics(g, w, labels, spurious=torch.tensor([False, False, False, True]))
    assert stats["same_class_support"] == 0.75 and stats["same_class_weighted"] == pytest.approx(2.9 / 3.0)
    assert stats["kept_added"] == 0.5 and stats["mean_w_added"] == pytest.approx(0.5)
    assert roc_auc(w, torch.tensor([True, True, True, False])) == 1.0
    assert roc_auc(-w, torch.tensor([True, True, True, False])) == 0.0
    # spurious statistics read the observed edges only (added candidates are neither true nor spurious)
    g.edata["observed"] = torch.tensor([1.0, 1.0, 1.0, 1.0])
    stats = edge_statistics(g, torch.tensor([0.9, 0.2, 0.8, 0.5]), labels,
                            spurious=torch.tensor([False, True, False, True]))
    assert stats["true_edge_auc"] == 1.0 and stats["mean_w_spurious"] == pytest.approx(0.35)


# ----------------------------------------------------------------------------------- runs end to end
def _run(tmp_path, **options):
    config = ExperimentConfig(dataset="cheaters", inner="gnn", model="gcn", hidden=8, inner_steps=20,
                              outer_steps=3, seeds=1, out=str(tmp_path), progress=False, save_graph=True, **options)
    summary = run_experiment(config, echo=lambda *_: None)
    run = tmp_path / config.resolved().run_name
    return summary, json.loads((run / "seed_0.json").read_text())["result"], run


def test_bernoulli_run_reports_sampled_expected_thresholded_and_refit_scores(tmp_path):
    _, record, run = _run(tmp_path, structure="bernoulli", support="observed+knn", knn_k=3, refit=True,
                          hypergrad="unrolled")
    for key in ("test_acc", "expected_test_acc", "thresholded_test_acc", "refit_test_acc", "refit_v_out_acc",
                "refit_observed_test_acc", "refit_gated_test_acc", "mean_w_added", "same_class_weighted"):
        assert 0.0 <= record[key] <= 1.0, key
    gate = record["refit_gate"]
    prefix = {"learned": "refit", "observed": "refit_observed", "learned_v_in": "refit_learned_v_in"}[gate]
    assert record["refit_gated_test_acc"] == record[f"{prefix}_test_acc"]
    rates = {k.removeprefix("refit_gate_p_"): v for k, v in record.items() if k.startswith("refit_gate_p_")}
    assert set(rates) == {"learned", "learned_v_in"}
    assert (gate == "observed") == all(p > 0.05 for p in rates.values())
    # the observed-graph refit is the a_obs+v_out baseline, seed for seed
    _, baseline, _ = _run(tmp_path, method="a_obs+v_out", name="baseline")
    assert record["refit_observed_test_acc"] == baseline["test_acc"]
    (graph,), _ = dgl.load_graphs(str(run / "graph_seed0.bin"))
    w = graph.edata["w"]
    assert float(w.min()) >= 0 and float(w.max()) <= 1


def test_frozen_run_keeps_the_initial_probabilities(tmp_path):
    _, record, run = _run(tmp_path, structure="bernoulli", support="observed+knn", knn_k=3, freeze_structure=True,
                          theta_candidate=0.25, hypergrad="unrolled", name="frozen")
    (graph,), _ = dgl.load_graphs(str(run / "graph_seed0.bin"))
    obs = load_dataset("cheaters", None, 0)
    assert sorted(graph.edata["w"].unique().tolist()) == [0.25, 1.0]
    assert record["mean_w_observed"] == 1.0 and record["mean_w_added"] == pytest.approx(0.25)
    assert obs.num_edges < graph.num_edges()


def test_cross_fit_run_records_each_fold_and_the_refit(tmp_path):
    _, record, _ = _run(tmp_path, structure="bernoulli", support="observed", cross_fit=2, hypergrad="implicit",
                        resample="outer", name="cf")
    assert record["final_model_trained_on"] == "v_in+v_out"
    assert {f"fold_{k}_test_acc" for k in range(2)} <= set(record)
    assert 0.0 <= record["test_acc"] <= 1.0
    assert record["refit_gate"] in ("learned", "observed")
    chosen = "test_acc" if record["refit_gate"] == "learned" else "refit_observed_test_acc"
    assert record["refit_gated_test_acc"] == record[chosen]


def test_the_returned_graph_trains_dgl_layers(tmp_path):
    """A user's GraphConv / SAGEConv / GATConv model runs on the graph a Bernoulli run returns (zero-weight
    candidates dropped, self-loops added, as recipes/transfer_dgl.py documents)."""
    import importlib.util
    from pathlib import Path

    _, _, run = _run(tmp_path, structure="bernoulli", support="observed+knn", knn_k=3, hypergrad="unrolled",
                     theta_candidate=0.0, name="transfer", refit=True)
    spec = importlib.util.spec_from_file_location(
        "transfer_dgl", Path(__file__).resolve().parents[1] / "recipes" / "transfer_dgl.py")
    transfer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(transfer)
    (graph,), _ = dgl.load_graphs(str(run / "graph_seed0.bin"))
    assert "observed" in graph.edata and float(graph.edata["w"].min()) == 0.0  # untouched candidates stay at 0
    rows = transfer.main([str(run), "--epochs", "3", "--models", "graphconv", "sage", "gat"])
    figure_spec = importlib.util.spec_from_file_location(
        "transfer_figure", Path(__file__).resolve().parents[1] / "recipes" / "transfer_figure.py")
    figure = importlib.util.module_from_spec(figure_spec)
    figure_spec.loader.exec_module(figure)
    drawn = figure.main([str(run), "--out", str(tmp_path / "transfer.png")])  # from the rows just written
    assert drawn.stat().st_size > 10_000 and figure.noise_level(Path("x/cora-noise60-paper-b")) == 60
    with pytest.raises(SystemExit, match="transfer_dgl.py"):
        figure.main([str(tmp_path), "--out", str(tmp_path / "none.png")])
    assert [r["model"] for r in rows] == ["graphconv", "sage", "gat"]
    assert all(0.0 <= acc <= 1.0 for r in rows for acc in r["learned"] + r["observed"])
    choice = json.loads((run / "seed_0.json").read_text())["result"]["refit_gate"]
    for r in rows:  # the run's own gate picks, per seed, between the two graphs the user's model saw
        assert r["run_gate_choices"] == [choice]
        assert r["run_gated"] == (r["observed"] if choice == "observed" else r["learned"])
        confirmed = choice != "observed" and r["learned_val"][0] >= r["observed_val"][0]
        assert r["confirmed_choices"] == ["learned" if confirmed else "observed"]
        assert r["confirmed"] == (r["learned"] if confirmed else r["observed"])
    from dgl_bilevel.experiment import handed_over_graph

    handed, which = handed_over_graph(run, 0)
    assert which == ("observed" if choice == "observed" else "learned")
    reference = load_dataset("cheaters", None, 0).graph if which == "observed" else \
        dgl.edge_subgraph(graph, (graph.edata["w"] > 0.5).nonzero().squeeze(1), relabel_nodes=False)
    assert all(torch.equal(a, b) for a, b in zip(handed.edges(), reference.edges()))
    assert handed.edata["w"].shape == (handed.num_edges(),)
    record = json.loads((run / "seed_0.json").read_text())
    for gate, expected in (("learned_v_in", "learned"), ("observed", "observed")):  # both branches, whatever ran
        record["result"]["refit_gate"] = gate
        (run / "seed_0.json").write_text(json.dumps(record))
        handed, which = handed_over_graph(run, 0)
        assert which == expected
        if expected == "learned":
            assert torch.equal(handed.edata["w"], graph.edata["w"][graph.edata["w"] > 0.5])
        else:
            assert handed.num_edges() == load_dataset("cheaters", None, 0).graph.num_edges()
        assert sorted(handed.ndata) == sorted(graph.ndata)  # either graph: the seed's labels and split masks
        assert all(torch.equal(handed.ndata[key], graph.ndata[key]) for key in graph.ndata)
    # the user's model confirms: the learned graph only where it scores no lower on validation with it
    learned_edges = int((graph.edata["w"] > 0.5).sum())
    observed_edges = load_dataset("cheaters", None, 0).graph.num_edges()
    assert learned_edges != observed_edges  # so the two graphs can be told apart below
    seen = []

    def prefers(edges):  # a user's validation score that favours the graph with ``edges`` edges
        return lambda g: seen.append(g.num_edges()) or float(g.num_edges() == edges)

    record["result"]["refit_gate"] = "learned"
    (run / "seed_0.json").write_text(json.dumps(record))
    assert handed_over_graph(run, 0, confirm=prefers(learned_edges))[1] == "learned"
    handed, which = handed_over_graph(run, 0, confirm=prefers(observed_edges))
    assert which == "observed" and handed.num_edges() == observed_edges
    assert sorted(seen) == sorted([learned_edges, observed_edges] * 2)  # both graphs scored each time
    assert handed_over_graph(run, 0, confirm=lambda g: 0.5)[1] == "learned"  # a tie keeps the run's choice
    record["result"]["refit_gate"] = "observed"
    (run / "seed_0.json").write_text(json.dumps(record))
    seen.clear()
    assert handed_over_graph(run, 0, confirm=prefers(learned_edges))[1] == "observed"
    assert seen == []  # where the run kept the observed graph, the user's model is not asked


def test_confirmed_choice_needs_both_tests_to_agree():
    from dgl_bilevel.experiment import confirmed_choice

    assert confirmed_choice("learned") == confirmed_choice("learned_v_in") == "learned"
    assert confirmed_choice("observed") == confirmed_choice("observed", 1.0, 0.0) == "observed"
    assert confirmed_choice("learned", 0.81, 0.80) == confirmed_choice("learned", 0.80, 0.80) == "learned"
    assert confirmed_choice("learned", 0.79, 0.80) == "observed"
    with pytest.raises(ConfigError, match="both validation scores"):
        confirmed_choice("learned", 0.8)


def test_a_run_without_refit_hands_over_nothing(tmp_path):
    from dgl_bilevel.experiment import handed_over_graph

    _, _, run = _run(tmp_path, name="norefit")
    with pytest.raises(ConfigError, match="--refit"):
        handed_over_graph(run, 0)
    with pytest.raises(ConfigError, match="no finished seed 7"):
        handed_over_graph(run, 7)


def test_inner_dropout_makes_a_random_objective_that_only_unrolling_differentiates(data_root):
    data = load_dataset("cheaters", None, 0).to(torch.float64)
    inner = dbl.TrainedGNN(dbl.models.GCN(data.num_features, 8, data.out_dim, dropout=0.5), steps=5, train_mode=True)
    inner.bind(data, data.graph)
    params = inner.initial_params(torch.Generator().manual_seed(0))
    w = data.observed_weights()
    torch.manual_seed(0)
    a, b = inner.objective(params, w), inner.objective(params, w)
    assert not torch.equal(a, b)  # dropout active while training
    assert torch.equal(inner.predict(params, w), inner.predict(params, w))  # predictions without it
    assert inner.stochastic_objective and inner.derivatives is None
    with pytest.raises(ConfigError, match="no fixed point"):
        ExperimentConfig(dataset="cheaters", inner_dropout=0.5, hypergrad="implicit").resolved()
    w = w.clone().requires_grad_(True)
    solution = dbl.Unrolled().solve(inner, w, inner.starting_params())
    assert solution.info["reverse"] == "autograd"
    loss = inner.predict(solution.params, w)[data.v_out].logsumexp(1).sum()
    (grad,) = torch.autograd.grad(loss, w)
    assert bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0


def test_a_run_whose_inner_model_stays_at_chance_says_so(tmp_path):
    from dgl_bilevel.outer.fit_check import InnerFitWarning, chance_level, warn_if_at_chance

    data = load_dataset("cheaters", None, 0)
    chance = chance_level(data)
    majority = float(torch.bincount(data.labels[data.v_in]).max()) / data.v_in.numel()
    assert chance == majority
    with pytest.warns(InnerFitWarning, match="has not fitted"):
        assert warn_if_at_chance(data, chance, "gnn")
    assert not warn_if_at_chance(data, min(1.0, chance + 0.1), "gnn")
    # through a run: constant features give the model nothing to fit, so it predicts one class everywhere
    g = dgl.graph((torch.arange(12), (torch.arange(12) + 1) % 12), num_nodes=12)
    g = dgl.to_bidirected(g)
    g.ndata["feat"] = torch.ones(12, 3)
    g.ndata["label"] = torch.tensor([0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1])
    for mask, nodes in (("train_mask", [0, 1, 2, 3]), ("val_mask", [4, 5, 6, 7]), ("test_mask", [8, 9, 10, 11])):
        g.ndata[mask] = torch.zeros(12, dtype=torch.bool).index_fill_(0, torch.tensor(nodes), True)
    path = tmp_path / "constant.bin"
    dgl.save_graphs(str(path), [g])
    config = ExperimentConfig(dataset=str(path), method="a_obs", inner_steps=2, seeds=1, out=str(tmp_path / "out"),
                              progress=False)
    with pytest.warns(InnerFitWarning, match="V_in"):
        run_experiment(config, echo=lambda *_: None)


def test_the_graph_of_a_probabilistic_structure_is_its_most_likely_graph():
    data = load_dataset("cheaters", None, 0).to(torch.float64)
    from dgl_bilevel.structure.support import observed_knn_support

    support = observed_knn_support(data.graph, data.features, k=3)
    structure = dbl.BernoulliEdges(support, candidate_value=0.3,
                                   sampler=dbl.GraphSampler(resample="outer", eval_samples=2), dtype=torch.float64)
    inner = dbl.TrainedGNN(dbl.models.GCN(data.num_features, 4, 2), steps=3)
    result = dbl.fit(data, structure, inner, "implicit", outer_steps=2, lr=0.1, progress=False)
    theta = result.best_weights
    g, full = result.graph, result.to_graph()
    assert full.num_edges() == support.num_edges() and torch.equal(full.edata["w"], theta)
    assert g.num_edges() == int((theta > 0.5).sum()) < support.num_edges()
    assert float(g.edata["w"].min()) > 0.5 and torch.equal(g.edata["observed"], support.edata["observed"][theta > 0.5])


def test_memorised_validation_under_the_lds_protocol_is_reported():
    from dgl_bilevel.outer.fit_check import ValidationMemorisedWarning, warn_if_validation_memorised

    data = load_dataset("cheaters", None, 0)
    assert not warn_if_validation_memorised(data, 1.0, 60)  # paper protocol: validation is held out
    lds = data.with_outer_loss_on_validation()
    with pytest.warns(ValidationMemorisedWarning, match="--outer-steps \\(now 60\\)"):
        assert warn_if_validation_memorised(lds, 1.0, 60)
    assert not warn_if_validation_memorised(lds, 0.95, 60)


def test_the_shipped_best_configuration_survives_isolated_featureless_nodes(tmp_path):
    """CiteSeer has 15 isolated nodes with all-zero features (DGL adds them): the cosine k-NN, the
    shared cosine term, the energy inner problem and the refit of cora-best.yaml must stay finite there."""
    from pathlib import Path

    from dgl_bilevel.config import load_yaml

    generator = torch.Generator().manual_seed(0)
    n, classes = 40, 2
    labels = torch.arange(n) % classes
    features = torch.nn.functional.one_hot(labels, classes).float() + 0.3 * torch.rand(n, 6, generator=generator)[:, :classes]
    features = torch.cat([features, torch.rand(n, 4, generator=generator)], 1)
    isolated = torch.tensor([37, 38, 39])
    features[isolated] = 0.0
    src = torch.arange(0, 36)
    graph = dgl.to_bidirected(dgl.graph((src, (src + 2) % 36), num_nodes=n))  # same-class ring; 36-39 isolated
    graph.ndata["feat"], graph.ndata["label"] = features, labels
    splits = {"train": list(range(0, 10)) + [37], "val": list(range(10, 24)) + [38], "test": list(range(24, 36)) + [39]}
    for split, nodes in splits.items():
        graph.ndata[f"{split}_mask"] = torch.isin(torch.arange(n), torch.tensor(nodes))
    path = tmp_path / "isolated.bin"
    dgl.save_graphs(str(path), [graph])
    shipped = load_yaml(Path(__file__).resolve().parents[1] / "recipes" / "configs" / "cora-best.yaml")
    config = ExperimentConfig(**{**shipped, "dataset": str(path), "knn_k": 3, "outer_steps": 2,
                                 "eval_samples": 2, "seeds": 1, "out": str(tmp_path),
                                 "name": "isolated", "progress": False})
    assert config.theta_shared == "cosine" and config.refit and config.knn_metric == "cosine"
    run_experiment(config, echo=lambda *_: None)
    record = json.loads((tmp_path / "isolated" / "seed_0.json").read_text())["result"]
    for key in ("test_acc", "val_acc", "refit_test_acc", "refit_gated_test_acc", "expected_test_acc"):
        assert 0.0 <= record[key] <= 1.0, key
    (saved,), _ = dgl.load_graphs(str(tmp_path / "isolated" / "graph_seed0.bin"))
    assert torch.isfinite(saved.edata["w"]).all() and float(saved.edata["w"].min()) >= 0.0


def test_a_refit_run_says_what_it_hands_over(tmp_path):
    """The printed summary of a ``--refit`` run names the refit's, the observed graph's and the handed-over
    test scores, and how often the learned graph was kept -- the numbers of its seed records."""
    lines = []
    config = ExperimentConfig(dataset="cheaters", inner="gnn", model="gcn", hidden=8, inner_steps=20, outer_steps=3,
                              seeds=2, out=str(tmp_path), progress=False, refit=True, name="said")
    run_experiment(config, echo=lambda *parts: lines.append(" ".join(map(str, parts))))
    records = [json.loads((tmp_path / "said" / f"seed_{s}.json").read_text())["result"] for s in (0, 1)]
    mean = lambda key: f"{100 * sum(r[key] for r in records) / 2:.1f} ± "  # noqa: E731
    said = next(line for line in lines if line.startswith("refit on V_in ∪ V_out, test acc %"))
    assert f"learned graph {mean('refit_test_acc')}" in said and f"observed graph {mean('refit_observed_test_acc')}" in said
    handed = next(line for line in lines if line.startswith("handed over"))
    kept = sum(r["refit_gate"] != "observed" for r in records)
    assert f": {mean('refit_gated_test_acc')}" in handed and handed.endswith(f"the learned graph in {kept} of 2 seeds")
    lines.clear()
    run_experiment(dataclasses.replace(config, refit=False, name="silent"), echo=lambda *p: lines.append(" ".join(p)))
    assert not any(line.startswith(("refit on", "handed over")) for line in lines)
