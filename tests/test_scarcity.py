"""Gradient scarcity: Theorem III.3 exactly, distances, the Laplacian bound, and the mitigations."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import dgl_bilevel as dbl
from dgl_bilevel._dgl import dgl
from dgl_bilevel.data import BilevelData
from dgl_bilevel.diagnostics import (
    ScarcityRecorder, edge_distances, hop_distances, hypergradient_profile, laplacian_bound, refined_edges,
)
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.losses import task_loss


def _path(n: int) -> "dgl.DGLGraph":
    src = torch.arange(n - 1)
    return dgl.graph((torch.cat([src, src + 1]), torch.cat([src + 1, src])), num_nodes=n)


def _grid(rows: int, cols: int) -> "dgl.DGLGraph":
    idx = torch.arange(rows * cols).reshape(rows, cols)
    right = (idx[:, :-1].flatten(), idx[:, 1:].flatten())
    down = (idx[:-1, :].flatten(), idx[1:, :].flatten())
    src = torch.cat([right[0], down[0], right[1], down[1]])
    dst = torch.cat([right[1], down[1], right[0], down[0]])
    return dgl.graph((src, dst), num_nodes=rows * cols)


def _data(graph, v_in, v_out, seed=0):
    n = graph.num_nodes()
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    rest = [i for i in range(n) if i not in set(v_in) | set(v_out)]
    return BilevelData(graph, torch.rand(n, 4, generator=gen, dtype=torch.float64), labels,
                       v_in=v_in, v_out=v_out, val=rest[: len(rest) // 2], test=rest[len(rest) // 2:])


def _hypergradient(data, problem, method):
    problem.bind(data, data.graph)
    w = (0.5 + torch.rand(data.num_edges, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).requires_grad_(True)
    solution = method.solve(problem, w, problem.starting_params(torch.Generator().manual_seed(2)))
    loss = task_loss(problem.predict(solution.params, w), data.labels, data.v_out, data.task)
    return torch.autograd.grad(loss, w)[0]


@pytest.mark.parametrize("layers", [2, 3])
@pytest.mark.parametrize("method", [dbl.Unrolled(), dbl.Implicit(maxiter=30)], ids=["unrolled", "implicit"])
def test_theorem_iii3_on_a_path(layers, method):
    graph = _path(16)
    data = _data(graph, v_in=[0, 1], v_out=[2])
    problem = dbl.TrainedGNN(dbl.models.SumAggGNN(4, 5, 3, num_layers=layers), steps=10)
    grad = _hypergradient(data, problem, method)
    dist = edge_distances(graph, data.v_in, data.v_out, "gnn")
    far = dist >= layers
    assert far.sum() > 10
    assert torch.equal(grad[far], torch.zeros_like(grad[far]))  # exactly zero, not just small
    near = (dist >= 0) & (dist < layers)
    assert (grad[near] != 0).any()
    # the edge carrying messages into V_out from one hop further is among the non-zero ones
    e = graph.edge_ids(torch.tensor([3]), torch.tensor([2]))
    assert grad[e].abs().item() > 0


def test_theorem_iii3_on_a_grid():
    graph = _grid(8, 8)
    data = _data(graph, v_in=[0, 9], v_out=[63])
    problem = dbl.TrainedGNN(dbl.models.SumAggGNN(4, 5, 3), steps=10)
    grad = _hypergradient(data, problem, dbl.Unrolled())
    dist = edge_distances(graph, data.v_in, data.v_out, "gnn")
    assert torch.equal(grad[dist >= 2], torch.zeros_like(grad[dist >= 2]))
    assert (grad[dist == 0] != 0).any() and (grad[dist == 1] != 0).any()
    rows = {r.distance: r for r in hypergradient_profile(grad, dist)}
    assert rows[2].zero_fraction == 1.0 and rows[0].zero_fraction < 1.0
    assert sum(r.edges for r in rows.values()) == graph.num_edges()


def test_hop_and_edge_distances():
    graph = dgl.add_nodes(_path(6), 2)  # nodes 6, 7 isolated
    graph = dgl.add_edges(graph, torch.tensor([6]), torch.tensor([7]))
    assert hop_distances(graph, torch.tensor([0])).tolist() == [0, 1, 2, 3, 4, 5, -1, -1]
    assert hop_distances(graph, torch.tensor([0, 5])).tolist() == [0, 1, 2, 2, 1, 0, -1, -1]
    gnn = edge_distances(graph, torch.tensor([0]), torch.tensor([5]), "gnn")
    lap = edge_distances(graph, torch.tensor([0]), torch.tensor([5]), "laplacian")
    src, dst = graph.edges()
    e = graph.edge_ids(torch.tensor([2]), torch.tensor([3]))
    assert int(gnn[e]) == 2 and int(lap[e]) == 5
    assert int(gnn[-1]) == -1 and int(lap[-1]) == -1


def test_laplacian_bound_holds_on_every_edge():
    data = dbl.data.synthetic1("low", seed=0).to(torch.float64)
    problem = dbl.LaplacianRegularization(loss="mse", ridge=0.0).bind(data, data.graph)
    w = data.observed_weights().clone().requires_grad_(True)
    y = problem.predict(dbl.Adjoint(tol=1e-12).solve(problem, w, ()).params, w)
    grad = torch.autograd.grad(task_loss(y, data.labels, data.v_out, data.task), w)[0]
    yd = y.detach().requires_grad_(True)
    outer = torch.autograd.grad(task_loss(yd, data.labels, data.v_out, data.task), yd)[0]
    dist = edge_distances(data.graph, data.v_in, data.v_out, "laplacian")
    bound = laplacian_bound(problem, w, outer, max_distance=int(dist.max()))
    assert 0 < bound.mu_min < bound.mu_max and 0 < bound.rho < 1
    reach = dist >= 0
    limit = torch.tensor([bound.at(int(d)) for d in dist[reach]], dtype=torch.float64)
    assert bool((grad[reach].abs() <= limit).all())
    # and the measured decay is real: far edges get orders of magnitude less than near ones
    assert grad[dist == int(dist.max())].abs().max() < 1e-3 * grad[dist == 1].abs().max()


def test_refined_edges_counts_above_one_percent_of_max():
    assert refined_edges(torch.tensor([1.0, 0.02, 0.009, 0.5])) == 3


# ------------------------------------------------------------------ mitigations
def test_power_support_is_the_r_hop_graph():
    g = dbl.power_support(_path(6), r=2)
    pairs = set(zip(g.edges()[0].tolist(), g.edges()[1].tolist()))
    assert pairs == {(i, j) for i in range(6) for j in range(6) if 0 < abs(i - j) <= 2}
    hops = dict(zip(zip(g.edges()[0].tolist(), g.edges()[1].tolist()), g.edata["hops"].tolist()))
    assert hops[(0, 2)] == 2 and hops[(0, 1)] == 1
    assert g.edata["observed"][g.edge_ids(torch.tensor([0]), torch.tensor([2]))].item() == 0.0
    assert dbl.power_support(_path(6), r=5).num_edges() == 30
    with pytest.raises(ConfigError, match="edge budget of 10"):
        dbl.power_support(_path(6), r=3, max_edges=10)


def test_power_support_shrinks_distances_and_scarcity():
    graph = _path(20)
    data = _data(graph, v_in=[0, 1], v_out=[2])
    square = dbl.power_support(graph, 2)
    plain = edge_distances(graph, data.v_in, data.v_out, "gnn")
    powered = edge_distances(square, data.v_in, data.v_out, "gnn")
    assert powered.max() < plain.max()


def test_knn_support_is_symmetric_without_loops():
    x = torch.rand(30, 3, generator=torch.Generator().manual_seed(0))
    g = dbl.knn_support(x, k=4)
    src, dst = g.edges()
    assert not (src == dst).any() and bool(g.has_edges_between(dst, src).all())
    assert g.in_degrees().min() >= 4


def test_log_degree_regulariser_reaches_every_edge():
    graph = _path(12)
    structure = dbl.EdgeWeights(graph, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = structure()
    value = dbl.LogDegree(gamma=2.0)(structure, w)
    src = graph.edges()[0]
    degree = torch.zeros(12, dtype=torch.float64).index_add(0, src, w)
    assert torch.allclose(value, -2.0 * torch.log(degree).mean())
    (grad,) = torch.autograd.grad(value, structure.theta)
    assert bool((grad != 0).all())


def test_g2g_moves_edges_far_from_the_labels():
    graph = _path(16)
    data = _data(graph, v_in=[0, 1], v_out=[2])
    far = edge_distances(graph, data.v_in, data.v_out, "gnn") >= 2
    g2g = dbl.G2G(graph, data.features, hidden=8, layers=1, generator=torch.Generator().manual_seed(0)).double()
    w0 = g2g().detach().clone()
    assert float(w0.min()) > 0 and float(w0.max()) < 1
    inner = dbl.TrainedGNN(dbl.models.SumAggGNN(4, 5, 3), steps=10)
    dbl.fit(data, g2g, inner, outer_steps=2, lr=1e-2, progress=False)
    assert (g2g().detach()[far] - w0[far]).abs().max() > 0  # shared parameters: far edges move too
    edges = dbl.EdgeWeights(graph, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    e0 = edges().detach().clone()
    dbl.fit(data, edges, dbl.TrainedGNN(dbl.models.SumAggGNN(4, 5, 3), steps=10), outer_steps=2, progress=False)
    assert torch.equal(edges().detach()[far], e0[far])  # plain refinement cannot touch them


def test_g2g_last_layer_scale_starts_uniform():
    graph = _path(8)
    g2g = dbl.G2G(graph, torch.rand(8, 3), hidden=4, last_layer_scale=1e-5, output_scale=2.0)
    w = g2g().detach()
    assert torch.allclose(w, torch.ones_like(w), atol=1e-4)


def test_g2g_inputs_binary_and_scaled_make_row_normalised_differences_order_one():
    from dgl_bilevel.config import ExperimentConfig
    from dgl_bilevel.structure.g2g import G2G_INPUTS

    graph = _path(6)
    counts = torch.tensor([[1.0, 0, 2, 0], [0, 3, 0, 1], [1, 1, 0, 0], [0, 0, 4, 0], [2, 0, 0, 2], [0, 1, 1, 1]])
    features = counts / counts.sum(1, keepdim=True)  # row-normalised, as DGL loads Cora
    binary = dbl.G2G(graph, features, inputs="binary").features
    assert torch.equal(binary, (counts > 0).float())
    scaled = dbl.G2G(graph, features, inputs="scaled").features
    assert torch.allclose(scaled, features / features[features > 0].mean())
    assert float(scaled[scaled > 0].mean()) == pytest.approx(1.0)
    assert torch.equal(dbl.G2G(graph, features).features, features)  # the paper's code: as loaded
    with pytest.raises(ConfigError, match="G2G inputs must be one of"):
        dbl.G2G(graph, features, inputs="standardised")
    option = next(f for f in dataclasses.fields(ExperimentConfig) if f.name == "g2g_inputs")
    assert tuple(option.metadata["choices"]) == G2G_INPUTS


def test_recorder_and_scarcity_command(tmp_path, capsys):
    graph = _path(10)
    data = _data(graph, v_in=[0, 1], v_out=[2])
    recorder = ScarcityRecorder("gnn", keep=[1])
    dbl.fit(data, dbl.EdgeWeights(graph, dtype=torch.float64), dbl.TrainedGNN(dbl.models.SumAggGNN(4, 5, 3), steps=5),
            outer_steps=3, progress=False, callbacks=[recorder])
    assert [h["iteration"] for h in recorder.history] == [0, 1, 2]
    assert 1 in recorder.hypergradients and recorder.hypergradients[1].shape == (graph.num_edges(),)

    from dgl_bilevel.cli import main

    assert main(["scarcity", "--dataset", "cheaters", "--iteration", "1", "--outer-steps", "2", "--inner-steps", "5",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "exactly zero hypergradient" in out and "unreach" not in out.split("distance")[0]
    payload = json.loads((tmp_path / "cheaters-gnn-bo-scarcity" / "scarcity.json").read_text())
    assert payload["iteration"] == 1 and (tmp_path / "cheaters-gnn-bo-scarcity" / "scarcity.png").is_file()


@pytest.mark.parametrize("method", ["bo+power", "bo+reg", "bo+g2g"])
def test_mitigations_run_from_the_cli(tmp_path, method):
    from dgl_bilevel.cli import main

    assert main(["run", "--dataset", "cheaters", "--method", method, "--outer-steps", "2", "--inner-steps", "3",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    summary = json.loads((tmp_path / f"cheaters-gnn-{method}" / "summary.json").read_text())
    assert summary["per_seed"][0]["outer_iterations"] == 2


def test_every_plot_writes_a_png(tmp_path):
    from dgl_bilevel.diagnostics.plots import plot_curves, plot_edge_heatmap, plot_profile, plot_profile_lines

    g = dgl.graph((torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 0])), num_nodes=4)
    grad = torch.tensor([1e-1, 1e-3, 0.0, 1e-2])
    dist = torch.tensor([0, 1, 2, 1])
    rows = hypergradient_profile(grad, dist)
    plot_profile(grad, dist, tmp_path / "profile.png", title="t", bound={0: 1.0, 1: 0.1, 2: 0.01}, rate=0.1)
    plot_edge_heatmap(g, grad, tmp_path / "heat.png", title="t", marks=[("V_in", [0]), ("V_out", [3])])
    plot_curves({"a": [1, 2, 3], "b": [3, 2, 1]}, tmp_path / "curves.png", ylabel="y", logy=True)
    plot_profile_lines({"run": rows}, tmp_path / "lines.png", title="t")
    for name in ("profile", "heat", "curves", "lines"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
