"""Loaders, generators and input validation."""
from __future__ import annotations

import shutil

import pytest
import torch

from dgl_bilevel._dgl import dgl
from dgl_bilevel.data import BilevelData, cheaters, cora, load_dataset, synthetic1
from dgl_bilevel.errors import ConfigError, DataError


# ------------------------------------------------------------------------ Cora
def test_cora_matches_planetoid_and_paper_split(cora):
    assert cora.num_nodes == 2708 and cora.num_edges == 10556
    assert cora.num_features == 1433 and cora.num_classes == 7
    assert [getattr(cora, s).numel() for s in ("v_in", "v_out", "val", "test")] == [140, 250, 250, 1000]
    # Planetoid: train = first 140 nodes, validation = nodes 140..639
    assert torch.equal(cora.v_in, torch.arange(140))
    assert torch.equal(torch.cat([cora.v_out, cora.val]).sort().values, torch.arange(140, 640))
    sums = cora.features.sum(1)
    assert torch.allclose(sums[sums > 0], torch.ones_like(sums[sums > 0]))  # row-normalised


def test_cora_split_is_seeded(data_root):
    a, b, c = cora(data_root, seed=3), cora(data_root, seed=3), cora(data_root, seed=4)
    assert torch.equal(a.v_out, b.v_out)
    assert not torch.equal(a.v_out, c.v_out)


def test_missing_cora_file_names_the_path(tmp_path, data_root):
    folder = tmp_path / "planetoid"
    shutil.copytree(data_root / "planetoid", folder)
    (folder / "ind.cora.graph").unlink()
    with pytest.raises(DataError, match=r"ind\.cora\.graph"):
        cora(tmp_path)
    with pytest.raises(DataError, match=str(tmp_path / "nowhere")):
        cora(tmp_path / "nowhere")


def test_unknown_dataset_lists_choices():
    with pytest.raises(ConfigError, match="available: .*cora"):
        load_dataset("pubmed-typo")


# ------------------------------------------------------------------ generators
def test_cheaters_follow_the_paper_layout():
    d = cheaters(seed=0)
    n = 256
    assert d.num_nodes == n and d.num_features == 10 and d.num_classes == 2
    assert torch.equal(d.v_in, torch.cat([torch.arange(32), torch.arange(224, 256)]))
    assert torch.equal(d.v_out, torch.arange(96, 160))
    assert d.val.numel() == d.test.numel() == 64
    pos = d.features[:, 0]
    assert bool((pos[1:] >= pos[:-1]).all())  # sorted by position
    a_star = d.extras["adjacency_star"]
    grades = a_star.double() @ d.features[:, 1:].double().sum(1)
    assert torch.equal((grades > 60).long(), d.labels)
    assert 0.2 < d.labels.float().mean() < 0.6  # a balanced task, not near-constant
    src, dst = d.graph.edges()
    assert d.graph.has_edges_between(dst, src).all()  # symmetric
    assert torch.equal(cheaters(seed=0).graph.edges()[0], src)  # seeded


def test_synthetic1_high_and_low_frequency():
    high, low = synthetic1("high", seed=1), synthetic1("low", seed=1)
    for d in (high, low):
        assert d.task == "regression" and d.num_nodes == 1536
        assert d.v_in.numel() == 100 and d.v_out.numel() == 25
        assert float(d.labels.min()) >= -1e-6 and float(d.labels.max()) <= 1 + 1e-6
        w = d.graph.edata["weight"]
        assert float(w.min()) >= 0 and float(w.max()) <= 1
    centre = torch.tensor([0.5, 0.5])
    low_dist = (low.features[low.v_in] - centre).norm(dim=1).max()
    high_dist = (high.features[high.v_in] - centre).norm(dim=1).max()
    assert low_dist < 0.2 < high_dist


# ------------------------------------------------------------------ validation
def _graph(n=4):
    return dgl.graph(([0, 1, 2], [1, 2, 3]), num_nodes=n)


def _valid(**override):
    kwargs = dict(graph=_graph(), features=torch.rand(4, 3), labels=torch.tensor([0, 1, 0, 1]),
                  v_in=[0], v_out=[1], val=[2], test=[3])
    kwargs.update(override)
    return BilevelData(**kwargs)


def test_valid_input_accepts_masks_and_indices():
    d = _valid(v_in=torch.tensor([True, False, False, False]))
    assert d.v_in.tolist() == [0] and d.num_classes == 2


@pytest.mark.parametrize(
    "override, message",
    [
        ({"graph": dgl.graph(([], []), num_nodes=4)}, "no edges"),
        ({"features": torch.rand(5, 3)}, "5 rows but the graph has 4 nodes"),
        ({"labels": torch.tensor([0, 1, 0])}, "length 3 but the graph has 4 nodes"),
        ({"v_in": []}, "v_in is empty"),
        ({"v_out": torch.zeros(4, dtype=torch.bool)}, "v_out is empty"),
        ({"v_out": [0]}, "v_in and v_out overlap"),
        ({"test": [2]}, "val and test overlap"),
        ({"features": torch.tensor([[1.0, float("nan"), 0], [0, 0, 0], [0, 0, 0], [0, 0, float("inf")]])}, "2 NaN or infinite"),
        ({"labels": torch.tensor([0, 5, 0, 1]), "num_classes": 2}, "outside \\[0, 2\\)"),
        ({"labels": torch.tensor([-1, 1, 0, 1])}, "outside"),
        ({"v_in": torch.ones(3, dtype=torch.bool)}, "mask has shape \\(3,\\)"),
        ({"v_in": [7]}, "outside \\[0, 4\\)"),
        ({"labels": torch.rand(4)}, "integer"),
        ({"task": "ranking"}, "task must be"),
    ],
)
def test_bad_input_is_named(override, message):
    with pytest.raises(DataError, match=message):
        _valid(**override)


def test_unlabelled_nodes_may_hold_placeholder_labels():
    graph = dgl.graph(([0, 1, 2, 3], [1, 2, 3, 4]), num_nodes=5)
    d = BilevelData(graph, torch.rand(5, 2), torch.tensor([0, 1, 0, 1, -1]), v_in=[0], v_out=[1], val=[2], test=[3])
    assert d.num_classes == 2


def test_from_dgl_reads_ndata_keys():
    g = _graph()
    g.ndata["feat"] = torch.rand(4, 3)
    g.ndata["label"] = torch.tensor([0, 1, 0, 1])
    g.ndata["train_mask"] = torch.tensor([True, False, False, False])
    g.ndata["val_mask"] = torch.tensor([False, False, True, False])
    g.ndata["test_mask"] = torch.tensor([False, False, False, True])
    d = BilevelData.from_dgl(g, v_out=[1])
    assert d.v_in.tolist() == [0] and d.test.tolist() == [3]
    with pytest.raises(DataError, match="no data key 'missing'"):
        BilevelData.from_dgl(g, v_out=[1], feat_key="missing")
