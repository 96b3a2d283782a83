"""The GNN's hand-derived derivatives computed on the loss's receptive field only
(dgl_bilevel.inner.receptive_field): the kept nodes and edges in a closed-form case, and every
derivative against autograd on the whole graph in float64."""
from __future__ import annotations

import dgl
import pytest
import torch

from conftest import random_graph_data
from dgl_bilevel.hypergrad import Implicit, Unrolled
from dgl_bilevel.inner import TrainedGNN
from dgl_bilevel.inner.receptive_field import ReceptiveField
from dgl_bilevel.inner.sumagg_derivatives import SumAggDerivatives
from dgl_bilevel.models import SumAggGNN
from test_hand_derivatives import _hypergradient, _point, _relative, assert_derivatives_equal_autograd


def test_kept_nodes_and_edges_of_a_chain():
    """On the chain 0 -> 1 -> ... -> 9 a 2-layer loss on node 5 reads nodes 5, 4, 3 (in hop order)
    and the edges into 5 (the last layer's) and into 4 (the first layer's too)."""
    graph = dgl.graph((torch.arange(9), torch.arange(1, 10)))
    field = ReceptiveField(graph, [torch.tensor([5])], num_layers=2)
    assert field.nodes.tolist() == [5, 4, 3] and field.counts == [1, 2, 3]
    assert field.edges.tolist() == [4, 3] and field.edge_counts == [1, 2]
    first, last = field.layer_graph(0), field.layer_graph(1)
    assert (first.num_src_nodes(), first.num_dst_nodes(), last.num_src_nodes(), last.num_dst_nodes()) == (3, 2, 2, 1)
    assert [t.tolist() for t in first.edges()] == [[1, 2], [0, 1]]  # 4 -> 5 and 3 -> 4, as positions
    assert [t.tolist() for t in last.edges()] == [[1], [0]]
    stacked = field.layer_graph(0, copies=2)  # copy 1 shifted by the layer's rows
    assert [t.tolist() for t in stacked.edges()] == [[1, 2, 4, 5], [0, 1, 2, 3]]
    one = ReceptiveField(graph, [torch.tensor([5]), torch.tensor([8])], num_layers=1)  # two seeds: the union
    assert one.nodes.tolist() == [5, 8, 4, 7] and one.edges.tolist() == [4, 7]
    assert one.restrict_rows(torch.tensor([8, 5]), torch.tensor([0, 1])).tolist() == [1, 2]
    with pytest.raises(ValueError, match="outside the loss nodes"):
        one.restrict_rows(torch.tensor([4]))
    values = one.expand_edge_values(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), copies=2)
    assert values.reshape(2, 9)[:, [4, 7]].tolist() == [[1.0, 2.0], [3.0, 4.0]] and values.count_nonzero() == 4
    weights = one.restrict_weights(torch.arange(18.0), copies=2)
    assert weights.tolist() == [[4.0, 7.0], [13.0, 16.0]]
    assert ReceptiveField.worth_it(graph, [torch.arange(10)], 2) is None  # a loss on every node: the whole graph


def _sparse_data(seed: int = 4, v_in=(0, 1, 2, 3)):
    data = random_graph_data(n=200, num_edges=100, features=6, classes=3, seed=seed)
    rest = torch.tensor([i for i in range(200) if i not in v_in])
    return data.with_splits(v_in=torch.tensor(v_in), v_out=rest[:20], val=rest[20:30], test=rest[30:])


def _problem(data, layers=2, sparse=False, **kwargs):
    if sparse:
        data.features[data.features < 0.8] = 0
    kwargs.setdefault("steps", 10)
    return TrainedGNN(SumAggGNN(6, 5, 3, num_layers=layers), sparse_features=sparse, **kwargs).bind(data, data.graph)


@pytest.mark.parametrize("layers,sparse", [(1, False), (2, False), (2, True), (3, False)])
def test_derivatives_on_the_field_equal_autograd_on_the_whole_graph(layers, sparse):
    data = _sparse_data()
    problem = _problem(data, layers, sparse)
    field = problem.derivatives.field
    assert field is not None and field.nodes.numel() < 0.7 * data.num_nodes
    first = problem.derivatives.layer_graphs[0]
    assert first.num_src_nodes() == field.nodes.numel() and first.num_edges() == field.edges.numel()
    assert problem.derivatives.layer_graphs[-1].num_dst_nodes() == 4  # the last layer: only v_in
    assert_derivatives_equal_autograd(problem, *_point(problem, data))


def test_edges_outside_the_field_have_exactly_zero_inner_derivatives():
    """What the field drops is what autograd's mixed derivative leaves at zero, and only that."""
    data = _sparse_data()
    problem = _problem(data)
    params, weight = _point(problem, data)
    variables = tuple(p.detach().clone().requires_grad_(True) for p in params)
    w = weight.clone().requires_grad_(True)
    grads = torch.autograd.grad(problem.objective(variables, w), variables, create_graph=True)
    mixed = torch.autograd.grad(sum((g * torch.randn_like(g)).sum() for g in grads), w)[0]
    outside = torch.ones(data.num_edges, dtype=torch.bool)
    outside[problem.derivatives.field.edges] = False
    assert bool((mixed[outside] == 0).all()) and bool((mixed[~outside] != 0).all())


def test_stacked_seeds_on_the_union_of_their_fields():
    from dgl_bilevel.seeds import stack_problems

    problems, weights, params = [], [], []
    for s, v_in in enumerate([(0, 1, 2), (50, 60), (100, 101, 102, 103)]):
        data = _sparse_data(v_in=v_in)
        problem = _problem(data, sparse=True)
        point, weight = _point(problem, data, seed=s)
        problems.append(problem), params.append(point), weights.append(weight)
    stacked = stack_problems(problems)
    field = stacked.derivatives.field
    assert field is not None and field.nodes.numel() < 0.7 * 200
    assert stacked.derivatives.layer_graphs[0].num_src_nodes() == 3 * field.nodes.numel()
    assert stacked.derivatives.layer_graphs[-1].num_dst_nodes() == 3 * 9  # the union of the three v_in
    p, w = stacked.stack_params(params), torch.cat(weights)
    assert_derivatives_equal_autograd(stacked, p, w, seed=5)


@pytest.mark.parametrize("method", ["unrolled", "implicit"])
def test_hypergradients_on_the_field_equal_the_whole_graph(method):
    """Unrolled and implicit hypergradients (outer loss on v_out, outside the field) on the field
    equal those computed without it; the edges outside the field still get the outer loss's part."""
    data = _sparse_data()
    problem = _problem(data, steps=15)
    _, weight = _point(problem, data)
    make = (lambda: Unrolled()) if method == "unrolled" else (lambda: Implicit(tol=1e-13, maxiter=2000, damping=1e-2))
    on_field, _ = _hypergradient(problem, make(), data, weight)
    field = problem.derivatives.field
    problem.derivatives = SumAggDerivatives(  # the same derivatives on the whole graph
        problem.graph, problem.features, problem.weight_decay, [5, 3], data.v_in, data.labels[data.v_in],
        problem.derivatives.row_weights, problem.derivatives.row_seeds, 1, False, lambda per_seed: per_seed.sum())
    whole, _ = _hypergradient(problem, make(), data, weight)
    # the inner solve trains on the whole graph too (other rounding), which the implicit solve amplifies
    assert _relative(on_field, whole) < (1e-11 if method == "unrolled" else 1e-10)
    outside = torch.ones(data.num_edges, dtype=torch.bool)
    outside[field.edges] = False
    assert float(on_field[outside].abs().max()) > 1e-6
