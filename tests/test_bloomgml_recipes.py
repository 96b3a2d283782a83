"""Smoke tests of the BloomGML recipes (recipes/bloomgml_*.py, spurious_edges.py,
graph_regularized_mlp.py): their helpers on tiny inputs, and each end to end in seconds."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from conftest import random_graph_data
from dgl_bilevel._dgl import dgl

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
sys.path.insert(0, str(RECIPES))

import bloomgml_heterophilous as het  # noqa: E402
import bloomgml_node_classification as nc  # noqa: E402
import graph_regularized_mlp as grmlp  # noqa: E402
import spurious_edges as se  # noqa: E402


def tiny(seed: int = 0):
    return random_graph_data(n=12, num_edges=24, features=5, classes=3, seed=seed).to(torch.float32)


def ring(n: int = 10):
    src = torch.arange(n)
    dst = (src + 1) % n
    return dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=n)


def test_spurious_edges_are_new_symmetric_non_edges():
    g = ring(10)
    new, spurious = se.add_spurious_edges(g, 7, torch.Generator().manual_seed(0))
    assert new.num_edges() == g.num_edges() + 14
    assert int(spurious.sum()) == 14 and not spurious[: g.num_edges()].any()
    src, dst = new.edges()
    old = set(zip(*[t.tolist() for t in g.edges()]))
    added = list(zip(src[spurious].tolist(), dst[spurious].tolist()))
    assert all(a != b for a, b in added)                       # no self-loops
    assert not any((a, b) in old for a, b in added)            # never an existing edge
    assert len(set(added)) == 14                               # no repeats
    assert all((b, a) in set(added) for a, b in added)         # symmetric
    assert torch.equal(src[: g.num_edges()], g.edges()[0])     # original edges first, in order


def test_spurious_edges_count_and_limits():
    g = ring(6)  # 6 undirected edges out of 15 pairs: 9 non-edges
    new, spurious = se.add_spurious_edges(g, 9, torch.Generator().manual_seed(1))
    assert int(spurious.sum()) == 18 and new.num_edges() == 30
    with pytest.raises(ValueError):
        se.add_spurious_edges(g, 10, torch.Generator().manual_seed(1))
    assert se.undirected_edge_count(g) == 6
    data = tiny()
    corrupted, mask = se.corrupt(data, 0.5, seed=3)
    assert int(mask.sum()) == 2 * round(0.5 * se.undirected_edge_count(data.graph))
    assert corrupted.graph.num_edges() == data.graph.num_edges() + int(mask.sum())


def test_roc_auc_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(0)
    labels = torch.rand(200, generator=gen) < 0.3
    scores = torch.randint(0, 8, (200,), generator=gen).double() + labels.double()  # many ties
    assert se.roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-12)
    continuous = torch.randn(50, generator=gen)
    positive = torch.arange(50) % 3 == 0
    assert se.roc_auc(continuous, positive) == pytest.approx(
        metrics.roc_auc_score(positive.numpy(), continuous.numpy()), abs=1e-12)
    assert se.roc_auc(torch.tensor([0.0, 1.0]), torch.tensor([False, True])) == 1.0
    sep = se.separation(torch.tensor([1.0, 0.5, 0.2, 0.1]), torch.tensor([False, False, True, True]))
    assert sep == {"mean_true": 0.75, "mean_spurious": pytest.approx(0.15), "auc": 1.0}


def test_sparse_input_dropout_matches_dense_product():
    x = torch.zeros(6, 40)
    x[torch.arange(6), torch.arange(6) * 3] = 1.0
    feats = nc.SparseInput(x)
    assert feats.sparse
    w = torch.randn(40, 4)
    assert torch.allclose(feats.dropped(0.0, False) @ w, x @ w)
    torch.manual_seed(0)
    dropped = feats.dropped(0.5) @ w
    assert set(torch.unique((dropped != 0).any(1).float()).tolist()) <= {0.0, 1.0}
    dense = nc.SparseInput(torch.ones(3, 4))
    assert not dense.sparse and torch.equal(dense.dropped(0.0, False), torch.ones(3, 4))


@pytest.mark.parametrize("row", ["mlp", "energy-appnp", "energy-irls-lp", "dgl-appnp", "dgl-appnp-example", "dgl-twirls", "lp", "dgl-lp"])
def test_node_classification_rows_run(row, monkeypatch):
    monkeypatch.setitem(nc.ROW_PROTOCOL, "dgl-appnp-example", ({"epochs": 3}, "last"))
    data = tiny()
    config = nc.TrainConfig(epochs=3, hidden=8)
    result = nc.run_row(row, data, config, seed=0)
    assert 0.0 <= result.test_acc <= 1.0 and 0.0 <= result.val_acc <= 1.0


def test_energy_appnp_row_equals_dgl_appnp():
    """The energy row is APPNP: same seed, same training, same accuracies."""
    data = tiny(2)
    config = nc.TrainConfig(epochs=4, hidden=8, in_drop=0.0, dropout=0.0)
    a = nc.run_row("energy-appnp", data, config, seed=1)
    b = nc.run_row("dgl-appnp", data, config, seed=1)
    assert (a.val_acc, a.test_acc, a.best_epoch) == (b.val_acc, b.test_acc, b.best_epoch)


def test_heavy_dropout_rows_apply_their_protocol_and_agree(monkeypatch):
    """The ``-k16-drop`` rows train with the protocol's width and dropouts (not the shared recipe's),
    K = 16, and the energy row equals DGL's APPNPConv seed for seed."""
    seen = []
    train = nc.train_node_classifier

    def recording(model, data, config, seed, **kw):
        seen.append((model, config))
        return train(model, data, dataclasses.replace(config, epochs=3), seed, **kw)

    monkeypatch.setattr(nc, "train_node_classifier", recording)
    data = tiny(3)
    config = nc.TrainConfig(epochs=3, hidden=8)
    a = nc.run_row("energy-appnp-k16-drop", data, config, seed=2)
    b = nc.run_row("dgl-appnp-k16-drop", data, config, seed=2)
    assert (a.val_acc, a.test_acc, a.best_epoch) == (b.val_acc, b.test_acc, b.best_epoch)
    for model, used in seen:
        assert (used.hidden, used.in_drop, used.dropout) == (256, 0.9, 0.6)
        assert any(p.shape[0] == 256 for p in model.parameters())
    assert seen[0][0].propagate.steps == 16 and seen[1][0].prop._k == 16


def test_rerunning_some_rows_keeps_the_docs_other_rows(tmp_path, monkeypatch):
    """``--rows mlp`` rewrites the mlp row of the doc table and keeps every other row it shows."""
    data = tiny()
    import dgl_bilevel.data

    monkeypatch.setattr(dgl_bilevel.data, "cora", lambda root, seed: data)
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- bloomgml-node-classification:start -->\n| row | model |\n|---|---|\n"
                   "| `mlp` | OLD MLP LINE |\n| `energy-halo` | kept line |\n"
                   "<!-- bloomgml-node-classification:end -->\noutro\n")
    monkeypatch.setattr(nc, "DOC", doc)
    monkeypatch.setattr(sys, "argv", ["x", "--rows", "mlp", "lp", "--seeds", "1", "--epochs", "2", "--hidden", "4",
                                      "--out", str(tmp_path / "runs")])
    nc.main()
    text = doc.read_text()
    assert "OLD MLP LINE" not in text and "| `mlp` | MLP (no graph) |" in text
    assert "| `energy-halo` | kept line |" in text and text.index("`mlp`") < text.index("`energy-halo`")
    assert text.index("`energy-halo`") < text.index("`lp`")  # new rows after the kept ones
    assert text.startswith("intro") and text.rstrip().endswith("outro")


def test_node_classification_main_writes_table(tmp_path, monkeypatch):
    data = tiny()
    import dgl_bilevel.data

    monkeypatch.setattr(dgl_bilevel.data, "cora", lambda root, seed: data)
    doc = tmp_path / "doc.md"
    monkeypatch.setattr(nc, "DOC", doc)
    monkeypatch.setattr(sys, "argv", ["x", "--rows", "mlp", "lp", "--seeds", "2", "--epochs", "2", "--hidden", "4",
                                      "--out", str(tmp_path / "runs"), "--no-doc"])
    nc.main()
    text = nc.table(tmp_path / "runs", ["mlp", "lp"])
    assert "| `mlp` |" in text and "(deterministic)" in text


def test_irls_weights_and_single_level_record():
    data = tiny()
    corrupted, spurious = se.corrupt(data, 0.3, seed=0)
    config = nc.TrainConfig(epochs=2, hidden=8)
    record = se.single_level("irls-cauchy", corrupted, spurious, config, seed=0)
    assert {"mean_true", "mean_spurious", "auc"} <= set(record["irls"])
    model = se.MODELS["irls-cauchy"][1](data.num_features, 8, data.num_classes, 3, 0.0)
    w = se.irls_weights(model, corrupted.graph, nc.SparseInput(corrupted.features))
    assert w.shape == (corrupted.graph.num_edges(),) and bool(((w > 0) & (w <= 1)).all())


def test_bilevel_refinement_runs_on_a_corrupted_graph():
    data = tiny()
    corrupted, spurious = se.corrupt(data, 0.5, seed=0)
    record = se.bilevel(corrupted, spurious, seed=0, outer_steps=2, outer_lr=0.1, hypergrad="implicit",
                        inner_steps=3, hidden=4)
    assert 0.0 <= record["test_acc"] <= 1.0 and 0.0 <= record["learned"]["auc"] <= 1.0
    base = se.observed(corrupted, 0, 3, 4)
    assert 0.0 <= base["test_acc"] <= 1.0


def test_spurious_report_and_figure(tmp_path):
    runs = [{"test_acc": 0.8, "irls": {"mean_true": 0.5, "mean_spurious": 0.2, "auc": 0.9}},
            {"test_acc": 0.7, "irls": {"mean_true": 0.4, "mean_spurious": 0.3, "auc": 0.7}}]
    results = {("irls-lp", 0.0): runs, ("irls-lp", 0.5): runs, ("quadratic", 0.0): runs}
    text = se.markdown(results, [0.0, 0.5], ["quadratic", "irls-lp"], False)
    assert "75.0 ± 7.1" in text and "0.800 ± 0.141" in text
    path = se.figure(results, [0.0, 0.5], ["quadratic", "irls-lp"], False, tmp_path / "f.png")
    assert path.is_file() and path.stat().st_size > 1000


def test_graph_regularized_mlp_recipe_trains_and_times():
    data = tiny()
    config = nc.TrainConfig(epochs=3, hidden=8)
    for row in ("grmlp", "mlp", "gcn"):
        result, model = grmlp.train(row, data, config, seed=0, lam=0.5)
        assert 0.0 <= result.test_acc <= 1.0
        assert grmlp.inference_ms(model, row, data, nc.SparseInput(data.features), repeats=2) > 0


def test_heterophilous_rows_build():
    data = tiny()
    for name, (_, factory) in het.ROWS.items():
        model = factory(data.num_features, 8, data.num_classes, 3, 0.5)
        out = model(data.graph, data.features)
        assert out.shape == (data.num_nodes, data.num_classes), name


def test_spurious_reuses_matching_clean_runs_only(tmp_path):
    config = nc.TrainConfig(epochs=7)
    runs = [{"seed": s, "test_acc": 0.8, "val_acc": 0.7, "best_epoch": 3, "seconds": 1.0, "extras": {}} for s in range(3)]
    nc.write_json(tmp_path / "energy-appnp.json", {"row": "energy-appnp", "config": config.__dict__, "runs": runs})
    assert len(se.reused_clean_runs(tmp_path, "quadratic", config, 2)) == 2
    assert se.reused_clean_runs(tmp_path, "quadratic", config, 4) is None            # too few seeds
    assert se.reused_clean_runs(tmp_path, "quadratic", nc.TrainConfig(epochs=8), 2) is None  # other settings
    assert se.reused_clean_runs(tmp_path, "irls-lp", config, 2) is None              # not run


def test_last_epoch_protocol_reports_the_last_epoch(monkeypatch):
    monkeypatch.setitem(nc.ROW_PROTOCOL, "dgl-appnp-example", ({"epochs": 4}, "last"))
    data = tiny()
    result = nc.run_row("dgl-appnp-example", data, nc.TrainConfig(epochs=30, hidden=8), seed=0)
    assert result.best_epoch == 3  # the row's own epochs, the last one reported


def test_spurious_no_doc_leaves_docs_untouched(tmp_path):
    """``--report-only --no-doc`` writes its figure next to the runs, never over docs/figures."""
    import json

    before = se.FIGURE.read_bytes() if se.FIGURE.is_file() else None
    runs = [{"test_acc": 0.8, "irls": {"mean_true": 0.5, "mean_spurious": 0.2, "auc": 0.9}}]
    for level in ("0", "0.5"):
        (tmp_path / f"irls-lp-{level}.json").write_text(json.dumps({"runs": runs}))
    se.main(["--report-only", "--no-doc", "--models", "irls-lp", "--levels", "0", "0.5", "--out", str(tmp_path)])
    assert (tmp_path / "spurious_edges.png").is_file()
    assert (se.FIGURE.read_bytes() if se.FIGURE.is_file() else None) == before
