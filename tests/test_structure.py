"""Learnable edge weights and their parametrizations."""
from __future__ import annotations

import pytest
import torch

from dgl_bilevel._dgl import dgl
from dgl_bilevel.errors import ConfigError, DataError
from dgl_bilevel.structure import Box, EdgeWeights, Sigmoid, Softplus, undirected_pair_index


def _undirected(n=6):
    src = torch.arange(n - 1)
    return dgl.graph((torch.cat([src, src + 1]), torch.cat([src + 1, src])), num_nodes=n)


@pytest.mark.parametrize("param", [Sigmoid(), Softplus(), Box(0.0, 2.0)])
def test_parametrization_inverse_round_trips(param):
    w = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    assert torch.allclose(param(param.inverse(w)), w)


def test_uniform_init_is_the_papers_logits():
    gen = torch.Generator().manual_seed(0)
    s = EdgeWeights(_undirected(), generator=gen)
    assert float(s.theta.detach().min()) >= 0 and float(s.theta.detach().max()) <= 1
    assert torch.allclose(s(), torch.sigmoid(s.theta))


def test_constant_scaled_and_observed_inits():
    g = _undirected()
    assert torch.allclose(EdgeWeights(g, init="constant", value=2.0)(), torch.sigmoid(torch.tensor(2.0)).expand(g.num_edges()))
    box = EdgeWeights(g, parametrization="box", scale=1e-5, generator=torch.Generator().manual_seed(0))
    w = box().detach()
    assert float(w.max()) <= 1e-5 and float(w.min()) >= 0
    g.edata["weight"] = torch.linspace(0.1, 0.9, g.num_edges())
    observed = EdgeWeights(g, parametrization="softplus", init="observed", weight_key="weight")
    assert torch.allclose(observed(), g.edata["weight"], atol=1e-5)
    given = EdgeWeights(g, init=torch.full((g.num_edges(),), 0.25))
    assert torch.allclose(given(), torch.full((g.num_edges(),), 0.25))


def test_tied_weights_are_symmetric_and_share_gradients():
    g = _undirected()
    s = EdgeWeights(g, tie_undirected=True, generator=torch.Generator().manual_seed(1))
    assert s.theta.numel() == g.num_edges() // 2
    w = s()
    src, dst = g.edges()
    reverse = g.edge_ids(dst, src)
    assert torch.equal(w, w[reverse])
    (w * torch.arange(w.numel())).sum().backward()
    assert s.theta.grad.shape == s.theta.shape


def test_box_projection_keeps_weights_feasible():
    s = EdgeWeights(_undirected(), parametrization="box", low=0.0, high=1.0, init="constant", value=0.5)
    with torch.no_grad():
        s.theta.add_(torch.linspace(-2, 2, s.theta.numel()))
    s.project_()
    w = s().detach()
    assert float(w.min()) == 0.0 and float(w.max()) == 1.0


def test_weighted_graph_feeds_dgl_modules():
    s = EdgeWeights(_undirected(), generator=torch.Generator().manual_seed(0))
    g = s.weighted_graph()
    assert torch.equal(g.edata["w"], s().detach())
    conv = dgl.nn.GraphConv(3, 2, norm="none", allow_zero_in_degree=True)
    out = conv(g, torch.rand(6, 3), edge_weight=g.edata["w"])
    assert out.shape == (6, 2)


def test_bad_structure_options():
    with pytest.raises(ConfigError, match="unknown parametrization"):
        EdgeWeights(_undirected(), parametrization="relu")
    with pytest.raises(ConfigError, match="unknown init"):
        EdgeWeights(_undirected(), init="gaussian")
    with pytest.raises(DataError, match="no edges"):
        EdgeWeights(dgl.graph(([], []), num_nodes=3))


def test_pair_index_groups_both_directions():
    g = dgl.graph(([0, 1, 1, 2], [1, 0, 2, 1]))
    index, count = undirected_pair_index(g)
    assert count == 2 and index[0] == index[1] and index[2] == index[3] and index[0] != index[2]
