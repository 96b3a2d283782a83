"""Floating-point behaviour of unrolled hypergradients (issue 14.1).

Adam with torch's ``eps=1e-8`` made the unrolled derivative explode wherever a coordinate had
(almost) no gradient: a Xavier entry drawn as exactly 0 in the weight row of a feature absent
around ``v_in`` turned every float32 hypergradient entry into NaN (the adjoint grows ~23x per
inner step: 1e136 in float64, ``inf`` in float32, then ``inf * 0``), and near-balanced Laplacian
node values made float32 and float64 hypergradients disagree (cosine down to 0.09). The default
Adam now uses ``eps=1e-6`` (:func:`dgl_bilevel.inner.base.default_adam`); these tests fail with
``eps=1e-8``.
"""
from __future__ import annotations

import torch
import torchopt

from dgl_bilevel._dgl import dgl
from dgl_bilevel.data import BilevelData
from dgl_bilevel.hypergrad import Unrolled
from dgl_bilevel.hypergrad.checkpointed import record_adjoints
from dgl_bilevel.inner import LaplacianRegularization, TrainedGNN, default_adam
from dgl_bilevel.inner.optimizers import ADAM_EPS, adam_stability_bound, adam_step_gain
from dgl_bilevel.inner.training import update_step
from dgl_bilevel.losses import task_loss
from dgl_bilevel.models import SumAggGNN


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(a @ b / (a.norm() * b.norm()))


def unrolled_hypergradient(make_problem, data, weight, start, method=None):
    """d(outer loss on v_out)/dw through ``Unrolled`` in ``data``'s precision, from ``start`` (cast)."""
    problem = make_problem()
    problem.bind(data, data.graph)
    dtype = data.features.dtype
    w = weight.detach().to(dtype).clone().requires_grad_(True)
    params = tuple(p.detach().to(dtype).clone().requires_grad_(True) for p in start)
    solution = (method or Unrolled()).solve(problem, w, params)
    loss = task_loss(problem.predict(solution.params, w), data.labels, data.v_out, data.task)
    (grad,) = torch.autograd.grad(loss, w)
    return grad


# ----------------------------------------------------------------------------- the root cause
def test_default_adam_is_stable_on_a_coordinate_without_gradient():
    """theta = 0 under weight decay only: Adam stays at 0, and d theta_T / d theta_0 must not explode.

    With ``eps=1e-8`` (plus ``sqrt(eps_root)``) the gain is 1e-2 * 5e-4 / 2e-8 = 250 > 38 and the
    derivative after 100 steps is ~3e142; with the default it decays."""
    assert adam_step_gain(1e-2, 5e-4) < adam_stability_bound() / 4
    assert adam_step_gain(1e-2, 5e-4, eps=1e-8) > adam_stability_bound()
    theta0 = torch.zeros((), dtype=torch.float64, requires_grad=True)
    params, optimizer = (theta0,), default_adam(1e-2)
    state = optimizer.init(params)
    for _ in range(100):
        params, state, _ = update_step(lambda p: 0.5 * 5e-4 * p[0] ** 2, optimizer, params, state,
                                       mode="differentiable")
    (slope,) = torch.autograd.grad(params[0], theta0)
    assert float(params[0].detach()) == 0.0
    assert abs(float(slope)) < 1.0


def test_default_adam_steps_are_adams_with_eps_1e6():
    """The forward is torch's Adam with ``eps=1e-6`` (gradients from 1e-6 to 1: ``eps_root=1e-16``
    moves the smallest coordinate's steps by 1e-5 relative; torch's ``eps=1e-8`` by 25%)."""
    gen = torch.Generator().manual_seed(0)
    scales = torch.logspace(-6, 0, 40, dtype=torch.float64)
    target = 1 + torch.rand(40, dtype=torch.float64, generator=gen)  # out of reach of 50 steps of 1e-2

    def gradient(x):
        return scales * (x - target) * (1 + 0.5 * torch.cos(x))

    references = [torch.nn.Parameter(torch.zeros(40, dtype=torch.float64)) for _ in range(2)]
    optimizers = [torch.optim.Adam([r], lr=1e-2, eps=eps) for r, eps in zip(references, (ADAM_EPS, 1e-8))]
    params, optimizer = (torch.zeros(40, dtype=torch.float64),), default_adam(1e-2)
    state = optimizer.init(params)
    for _ in range(50):
        for reference, torch_adam in zip(references, optimizers):
            reference.grad = gradient(reference.detach())
            torch_adam.step()
        updates, state = optimizer.update((gradient(params[0]),), state, params=params, inplace=False)
        params = (torchopt.apply_updates(params, updates, inplace=False)[0],)
    assert torch.allclose(params[0], references[0].detach(), rtol=1e-4, atol=0)
    assert not torch.allclose(params[0], references[1].detach(), rtol=1e-2, atol=0)


# ------------------------------------------------- a stationary weight in float32 (the NaN)
def stationary_feature_data() -> BilevelData:
    """A 16-node ring, float64. Features 0-2 are dense; feature 3 is non-zero only on nodes 8-12,
    more than two hops from every v_in node (0, 1, 15), so the 2-layer GNN's weight row 3 has an
    exactly zero inner-loss gradient -- but v_out (9, 10) sees it."""
    n = 16
    ring = torch.arange(n)
    src, dst = torch.cat([ring, (ring + 1) % n]), torch.cat([(ring + 1) % n, ring])
    gen = torch.Generator().manual_seed(3)
    x = torch.zeros(n, 4, dtype=torch.float64)
    x[:, :3] = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    x[8:13, 3] = 1.0
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 0, 2])
    return BilevelData(dgl.graph((src, dst), num_nodes=n), x, labels, v_in=[0, 1, 15], v_out=[9, 10, 4],
                       val=[5, 6], test=[7, 11], name="stationary")


def gnn_with_a_zero_weight(data, steps=60):
    """The default GNN inner problem and a start whose stationary row has one entry exactly 0."""
    def make():
        return TrainedGNN(SumAggGNN(4, 4, 3), steps=steps)

    problem = make().bind(data, data.graph)
    start = [p.detach().clone() for p in problem.starting_params(torch.Generator().manual_seed(1))]
    start[0][3, 1] = 0.0  # layers.0.weight is [in, 2 * hidden]: row 3 is the stationary feature
    return make, start


def test_float32_unrolled_hypergradient_with_an_exactly_stationary_weight_is_finite():
    data64 = stationary_feature_data()
    data32 = data64.to(torch.float32)
    make, start = gnn_with_a_zero_weight(data64)
    weight = 0.2 + torch.rand(data64.num_edges, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = unrolled_hypergradient(make, data64, weight, start)
    assert float(exact.norm()) > 1e-4
    for method in (Unrolled(), Unrolled(reverse="autograd")):
        single = unrolled_hypergradient(make, data32, weight, start, method)
        assert torch.isfinite(single).all()
        assert cosine(single, exact) > 0.9999


def test_adjoints_stay_bounded_through_a_stationary_weight():
    data = stationary_feature_data()
    make, start = gnn_with_a_zero_weight(data)
    weight = 0.2 + torch.rand(data.num_edges, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    method = Unrolled()
    with record_adjoints(method) as log:
        unrolled_hypergradient(make, data, weight, start, method)
    assert [entry["step"] for entry in log] == list(range(59, -1, -1))
    assert all(entry["nonfinite"] == 0 for entry in log)
    largest = max(max(entry["params"]) for entry in log)
    assert largest < 1e3  # eps=1e-8: 4.5e87 (float64)


def test_unrolled_through_a_stationary_weight_matches_finite_differences():
    """float64: the default Adam's unrolled hypergradient is exact for its trajectory."""
    data = stationary_feature_data()
    make, start = gnn_with_a_zero_weight(data, steps=30)
    weight = 0.2 + torch.rand(data.num_edges, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grad = unrolled_hypergradient(make, data, weight, start)
    problem = make().bind(data, data.graph)

    def loss(w):
        params = tuple(p.clone().requires_grad_(True) for p in start)
        solution = Unrolled(reverse="autograd").solve(problem, w.clone().requires_grad_(True), params)
        return float(task_loss(problem.predict(solution.params, w), data.labels, data.v_out, data.task))

    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        d = torch.randn(weight.shape, generator=gen, dtype=torch.float64)
        h = 1e-5
        fd = (loss(weight + h * d) - loss(weight - h * d)) / (2 * h)
        assert abs(float(grad @ d) - fd) <= 1e-5 * max(abs(fd), 1e-3)


# ----------------------------------------------------------------- the real data of the issue
def test_cora_gnn_float32_with_an_exact_zero_in_an_unseen_feature_row(cora):
    """Cora, paper settings: one Xavier entry exactly 0 in the row of a word that no node within
    two hops of v_in has (13 such words on Cora, far more on CiteSeer) -> NaN with eps=1e-8."""
    data64 = cora.to(torch.float64)
    data32 = cora.to(torch.float32)
    features = data64.features != 0
    graph = data64.graph
    near = torch.zeros(data64.num_nodes, dtype=torch.bool)
    near[data64.v_in] = True
    src, dst = graph.edges()
    for _ in range(2):
        reached = near.clone()
        reached[dst[near[src]]] = True
        reached[src[near[dst]]] = True
        near = reached
    unseen = (~features[near].any(0) & features.any(0)).nonzero().flatten()
    assert unseen.numel() > 0

    def make():
        return TrainedGNN(SumAggGNN(data64.num_features, 16, data64.out_dim), steps=100)

    problem = make().bind(data64, graph)
    start = [p.detach().clone() for p in problem.starting_params(torch.Generator().manual_seed(0))]
    start[0][unseen[0], 3] = 0.0
    weight = torch.sigmoid(torch.rand(data64.num_edges, generator=torch.Generator().manual_seed(10_000),
                                      dtype=torch.float64))
    exact = unrolled_hypergradient(make, data64, weight, start)
    single = unrolled_hypergradient(make, data32, weight, start)
    assert torch.isfinite(single).all()
    assert cosine(single, exact) > 0.999


def test_cora_laplacian_cross_entropy_float32_agrees_with_float64(cora):
    """The issue's second finding: unrolled Laplacian (cross-entropy, 500 steps) hypergradients in
    float32 and float64 from the same start. This draw gave cosine 0.09 with eps=1e-8."""
    data64 = cora.to(torch.float64)
    data32 = cora.to(torch.float32)

    def make():
        return LaplacianRegularization(loss="ce", steps=500)

    problem = make().bind(data64, data64.graph)
    start = [p.detach() for p in problem.starting_params(torch.Generator().manual_seed(6))]
    weight = torch.sigmoid(torch.rand(data64.num_edges, generator=torch.Generator().manual_seed(10_006),
                                      dtype=torch.float64))
    exact = unrolled_hypergradient(make, data64, weight, start)
    single = unrolled_hypergradient(make, data32, weight, start)
    assert cosine(single, exact) > 0.999
    assert float((single.double() - exact).norm() / exact.norm()) < 1e-2
