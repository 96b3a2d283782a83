"""G2G on sparse inputs: the squared differences kept as a sparse [E, D] matrix give the dense
path's weights and gradients, and its dropout acts on exactly the entries that can be non-zero."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import dgl_bilevel as dbl
from dgl_bilevel._dgl import dgl
from dgl_bilevel.structure import g2g as g2g_module


def _graph_and_features(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, 40, (300,), generator=gen)
    dst = torch.randint(0, 40, (300,), generator=gen)
    src[:4], dst[:4] = torch.tensor([5, 5, 7, 9]), torch.tensor([6, 6, 7, 9])  # parallel edges, self loops
    features = torch.rand(40, 200, generator=gen, dtype=torch.float64)
    features[torch.rand(40, 200, generator=gen) > 0.05] = 0.0  # ~5% non-zero, as bag-of-words
    features[3] = 0.0  # a node without any input
    return dgl.graph((src, dst), num_nodes=40), features


def _pair(graph, features, monkeypatch, **kwargs):
    sparse = dbl.G2G(graph, features, generator=torch.Generator().manual_seed(1), **kwargs).double()
    monkeypatch.setattr(g2g_module, "SPARSE_MAX_DENSITY", 0.0)
    dense = dbl.G2G(graph, features, generator=torch.Generator().manual_seed(1), **kwargs).double()
    monkeypatch.undo()
    assert sparse.sparse and not dense.sparse
    return sparse, dense


@pytest.mark.parametrize("layers", [1, 2])
def test_sparse_path_equals_the_dense_one_in_float64(layers, monkeypatch):
    graph, features = _graph_and_features()
    sparse, dense = _pair(graph, features, monkeypatch, hidden=6, layers=layers, dropout=0.5)
    sparse.eval(), dense.eval()
    w_sparse, w_dense = sparse(), dense()
    assert torch.allclose(w_sparse, w_dense, rtol=0, atol=1e-14)
    target = torch.randn(graph.num_edges(), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    g_sparse = torch.autograd.grad((w_sparse * target).sum(), list(sparse.parameters()))
    g_dense = torch.autograd.grad((w_dense * target).sum(), list(dense.parameters()))
    for a, b in zip(g_sparse, g_dense):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)
        assert float(b.abs().max()) > 0


def test_sparse_dropout_masks_the_union_of_the_endpoints_inputs():
    """The weights under dropout are the MLP of a dense block whose entries outside the union of the
    endpoints' supports are zero and whose entries inside are the dropped-out squared differences."""
    graph, features = _graph_and_features(3)
    model = dbl.G2G(graph, features, hidden=5, layers=1, dropout=0.4, generator=torch.Generator().manual_seed(0)).double()
    model.train()
    torch.manual_seed(11)
    weights = model()
    src, dst = graph.edges()
    union = (features[src] != 0) | (features[dst] != 0)
    crow, col = model._sparse_crow.long(), model._sparse_col.long()
    rows = torch.repeat_interleave(torch.arange(graph.num_edges()), crow[1:] - crow[:-1])
    pattern = torch.zeros_like(union)
    pattern[rows, col] = True
    assert torch.equal(pattern, union)
    torch.manual_seed(11)
    kept = F.dropout((model._sparse_at_src - model._sparse_at_dst) ** 2, 0.4, True)
    block = torch.zeros(graph.num_edges(), features.shape[1], dtype=torch.float64)
    block[rows, col] = kept
    hidden = F.elu(model.hidden[0](block))
    assert torch.allclose(weights, torch.sigmoid(model.output(hidden).squeeze(-1)), rtol=0, atol=1e-14)
    model.eval()
    assert not torch.allclose(weights, model())  # dropout acted


def test_dense_inputs_take_the_dense_path():
    graph, _ = _graph_and_features()
    assert not dbl.G2G(graph, torch.rand(40, 8)).sparse
    assert dbl.G2G(graph, (torch.rand(40, 50) > 0.97).float()).sparse
