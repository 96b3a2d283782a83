"""The paper's GNN's hand-derived second derivatives, and the unroll that runs on them, against
autograd in float64 (dgl_bilevel.inner.sumagg_derivatives, dgl_bilevel.hypergrad.recorded)."""
from __future__ import annotations

import pytest
import torch
import torchopt

from conftest import random_graph_data
from dgl_bilevel.hypergrad import Implicit, Truncated, Unrolled
from dgl_bilevel.hypergrad.checkpointed import record_adjoints
from dgl_bilevel.inner.flat_adam import FlatLayout
from dgl_bilevel.inner import TrainedGNN, default_adam
from dgl_bilevel.inner.optimizers import InnerOptimizer
from dgl_bilevel.inner.sumagg_derivatives import SumAggDerivatives
from dgl_bilevel.losses import task_loss
from dgl_bilevel.models import GCN, SumAggGNN


def _data(sparse: bool = False, seed: int = 1):
    data = random_graph_data(n=30, num_edges=80, features=6, classes=3, seed=seed)
    if sparse:  # most entries zero: the model receives SparseFeatures
        data.features[data.features < 0.8] = 0
    return data


def _problem(data, layers=2, sparse=False, **kwargs):
    kwargs.setdefault("steps", 10)
    return TrainedGNN(SumAggGNN(6, 5, 3, num_layers=layers), sparse_features=sparse, **kwargs).bind(data, data.graph)


def _point(problem, data, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = tuple(p + 0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in problem.initial_params(gen))
    weight = 0.3 + torch.rand(data.num_edges, generator=gen, dtype=torch.float64)
    return params, weight


def _relative(a, b):
    return float((a.detach() - b.detach()).norm() / b.detach().norm())


def assert_derivatives_equal_autograd(problem, params, weight, seed=3):
    """``problem.derivatives``'s value, gradient, Hessian and mixed products against autograd on
    ``problem.objective`` at ``(params, weight)``."""
    params = tuple(p.detach() for p in params)
    loss, grads, record = problem.derivatives.gradient(params, weight)
    variables = tuple(p.clone().requires_grad_(True) for p in params)
    w = weight.clone().requires_grad_(True)
    objective = problem.objective(variables, w)
    auto = torch.autograd.grad(objective, variables, create_graph=True)
    assert abs(float(loss - objective.detach())) < 1e-12
    for mine, theirs in zip(grads, auto):
        assert _relative(mine, theirs) < 1e-12
    gen = torch.Generator().manual_seed(seed)
    cotangent = tuple(torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params)
    second = torch.autograd.grad(auto, variables + (w,), cotangent)
    hessian_part, edge_part = problem.derivatives.gradient_vjp(record, cotangent, weight)
    for mine, theirs in zip(hessian_part, second[:-1]):
        assert _relative(mine, theirs) < 1e-11
    assert float(second[-1].norm()) > 1e-3
    assert _relative(edge_part, second[-1]) < 1e-11
    # the same products prepared once for many vectors (implicit differentiation)
    hessian, mixed = problem.derivatives.hessian_products(record, weight)
    for mine, theirs in zip(hessian(cotangent), second[:-1]):
        assert _relative(mine, theirs) < 1e-11
    assert _relative(mixed(cotangent), second[-1]) < 1e-11


@pytest.mark.parametrize("layers,sparse", [(1, False), (2, False), (2, True), (3, False)])
def test_gradient_hessian_and_mixed_products_equal_autograd(layers, sparse):
    data = _data(sparse)
    problem = _problem(data, layers, sparse)
    assert isinstance(problem.derivatives, SumAggDerivatives)
    assert_derivatives_equal_autograd(problem, *_point(problem, data))


def _hypergradient(problem, method, data, weight, seed=1):
    start = problem.starting_params(torch.Generator().manual_seed(seed))
    w = weight.detach().clone().requires_grad_(True)
    solution = method.solve(problem, w, start)
    loss = task_loss(problem.predict(solution.params, w), data.labels, data.v_out, data.task)
    (grad,) = torch.autograd.grad(loss, w)
    return grad, solution


@pytest.mark.parametrize("layers,sparse,optimizer", [
    (2, False, "adam"), (2, True, "adam"), (3, False, "adam"), (1, False, "sgd"),
])
def test_hand_derived_unroll_equals_autograd_through_the_trajectory(layers, sparse, optimizer):
    data = _data(sparse)
    problem = _problem(data, layers, sparse, steps=15)
    if optimizer == "sgd":  # what a configuration's inner_optimizer: sgd builds
        problem.optimizer = InnerOptimizer.sgd(0.5)
    _, weight = _point(problem, data)
    lean, solution = _hypergradient(problem, Unrolled(), data, weight)
    assert solution.info["reverse"] == "hand-derived"
    reference, solution = _hypergradient(problem, Unrolled(reverse="autograd"), data, weight)
    assert solution.info["reverse"] == "autograd"
    assert float(reference.norm()) > 1e-4
    assert _relative(lean, reference) < 1e-11
    for k in (1, 6):  # starts from the optimizer state the undifferentiated steps reached
        lean, solution = _hypergradient(problem, Truncated(k), data, weight)
        reference, _ = _hypergradient(problem, Truncated(k, reverse="autograd"), data, weight)
        assert solution.info["reverse"] == "hand-derived"
        assert _relative(lean, reference) < 1e-11


def test_the_trajectory_and_its_monitor_are_those_of_plain_training():
    data = _data()
    problem = _problem(data, steps=7)
    _, weight = _point(problem, data)
    seen = []
    start = problem.starting_params(torch.Generator().manual_seed(1))
    solution = Unrolled().solve(problem, weight.clone().requires_grad_(True), start, monitor=seen.append)
    plain = Unrolled(reverse="autograd").solve(problem, weight.clone().requires_grad_(True), start)
    assert len(seen) == 7
    for mine, theirs, last in zip(solution.params, plain.params, seen[-1]):
        assert torch.allclose(mine, theirs, rtol=1e-12, atol=1e-14)
        assert torch.equal(mine.detach(), last)
    assert abs(solution.inner_objective - plain.inner_objective) < 1e-12


def test_adjoints_are_recorded_once_per_step():
    data = _data()
    problem = _problem(data, steps=5)
    _, weight = _point(problem, data)
    method = Unrolled()
    with record_adjoints(method) as log:
        _hypergradient(problem, method, data, weight)
    assert [entry["step"] for entry in log] == [4, 3, 2, 1, 0]
    assert len(log[0]["params"]) == 4 and all(entry["nonfinite"] == 0 for entry in log)
    assert method.adjoint_log is None  # the log belongs to the method, for the block only
    _hypergradient(problem, method, data, weight)
    assert len(log) == 5


class _OwnObjective(TrainedGNN):
    def objective(self, params, edge_weight):
        return super().objective(params, edge_weight) + sum((p ** 4).sum() for p in params)


@pytest.mark.parametrize("case", ["gcn", "own-objective", "user-optimizer", "regression"])
def test_problems_the_derivatives_do_not_describe_keep_autograd(case):
    data = random_graph_data(n=30, num_edges=80, features=6, classes=3, seed=1,
                             task="regression" if case == "regression" else "classification")
    out = 1 if case == "regression" else 3
    model = GCN(6, 5, out) if case == "gcn" else SumAggGNN(6, 5, out)
    cls = _OwnObjective if case == "own-objective" else TrainedGNN
    # a user's torchopt transform: the library assumes nothing of it (not even that it acts elementwise)
    optimizer = torchopt.adam(1e-2, eps=1e-6, eps_root=1e-16) if case == "user-optimizer" else None
    problem = cls(model, steps=6, optimizer=optimizer).bind(data, data.graph)
    _, weight = _point(problem, data)
    lean, solution = _hypergradient(problem, Unrolled(), data, weight)
    reference, _ = _hypergradient(problem, Unrolled(reverse="autograd"), data, weight)
    assert solution.info["reverse"] == "checkpointed"
    assert _relative(lean, reference) < 1e-11
    # plain training keeps autograd's gradient too, except with a user optimizer (the gradient is the same)
    assert (problem.derivatives is None) == (case != "user-optimizer")


@pytest.mark.parametrize("layers,sparse", [(1, False), (2, True)])
def test_plain_gnn_training_on_the_hand_gradient_follows_autograd(layers, sparse):
    from dgl_bilevel.inner.training import run_steps

    data = _data(sparse)
    problem = _problem(data, layers, sparse, steps=25)
    params, weight = _point(problem, data)
    hand, _, hand_value = run_steps(problem, weight, tuple(p.clone() for p in params), 25, differentiable=False)
    problem.derivatives = None
    auto, _, auto_value = run_steps(problem, weight, tuple(p.clone() for p in params), 25, differentiable=False)
    assert _relative(hand[0], params[0]) > 1e-2  # the steps moved the parameters
    for mine, theirs in zip(hand, auto):
        assert _relative(mine, theirs) < 1e-11
    assert abs(hand_value - auto_value) < 1e-12


def test_flat_layout_round_trips_parameters_and_adam_state():
    params = (torch.arange(6.0).reshape(3, 2), torch.tensor([7.0, 8.0]))
    optimizer = default_adam(0.1)
    state = optimizer.init(params)
    _, state = optimizer.update(tuple(p + 1 for p in params), state, inplace=False)
    layout = FlatLayout(params)
    flat = layout.flatten(params)
    assert torch.equal(flat, torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 8.0]))
    assert all(torch.equal(a, b) for a, b in zip(layout.split(layout.flatten(params)), params))
    back = layout.unflatten_state(optimizer, layout.flatten_state(optimizer, state), params)
    ours, _ = torchopt.pytree.tree_flatten(back)
    theirs, _ = torchopt.pytree.tree_flatten(state)
    assert len(ours) == len(theirs) and all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_optimizer_states_are_stored_every_sqrt_steps():
    from dgl_bilevel.hypergrad.recorded import state_segment

    assert [state_segment(n) for n in (0, 1, 2, 4, 5, 100, 101)] == [1, 1, 2, 2, 3, 10, 11]


def test_stacked_seeds_derivatives_equal_autograd_on_the_stacked_objective():
    from dgl_bilevel.seeds import stack_problems

    problems, weights, params = [], [], []
    for s in range(3):
        data = _data(sparse=True)
        perm = torch.randperm(data.num_nodes, generator=torch.Generator().manual_seed(s))
        data = data.with_splits(v_in=perm[: 4 + s], v_out=perm[10:13], val=perm[13:15], test=perm[15:])
        problem = _problem(data, sparse=True)
        point, weight = _point(problem, data, seed=s)
        problems.append(problem), params.append(point), weights.append(weight)
    stacked = stack_problems(problems)
    assert isinstance(stacked.derivatives, SumAggDerivatives)
    p, w = stacked.stack_params(params), torch.cat(weights)
    stacked.derivatives.gradient(tuple(x.detach() for x in p), w)
    reported = stacked.per_seed_objective.clone()  # what the hand-derived gradient reported per seed
    stacked.objective(p, w)
    assert torch.allclose(reported, stacked.per_seed_objective, rtol=0, atol=1e-13)
    assert_derivatives_equal_autograd(stacked, p, w, seed=5)


def test_beyond_the_record_budget_steps_recompute_their_records(monkeypatch):
    """Large graphs keep each step's parameters instead of its record: the same hypergradient."""
    import dgl_bilevel.hypergrad.recorded as recorded

    data = _data()
    problem = _problem(data, steps=11)
    _, weight = _point(problem, data)
    kept, _ = _hypergradient(problem, Unrolled(), data, weight)
    monkeypatch.setattr(recorded, "RECORD_BUDGET_BYTES", 0)
    calls = []
    gradient = problem.derivatives.gradient
    monkeypatch.setattr(problem.derivatives, "gradient", lambda *a: calls.append(1) or gradient(*a))
    recomputed, _ = _hypergradient(problem, Unrolled(), data, weight)
    reference, _ = _hypergradient(problem, Unrolled(reverse="autograd"), data, weight)
    assert len(calls) == 22  # 11 steps forward, 11 again backward
    assert torch.equal(kept, recomputed)
    assert _relative(recomputed, reference) < 1e-11


@pytest.mark.parametrize("layers,sparse", [(1, False), (2, True)])
def test_implicit_on_hand_derived_products_equals_autograd_products(layers, sparse):
    """The implicit hypergradient solved on hand-derived Hessian products equals the one on autograd's
    double backward (both solves converged to 1e-13; damped, as the CLI does for the GNN)."""
    data = _data(sparse)
    problem = _problem(data, layers, sparse, steps=30)
    _, weight = _point(problem, data)
    method = Implicit(tol=1e-13, maxiter=2000, damping=1e-2)
    hand, solution = _hypergradient(problem, method, data, weight)
    assert solution.info["implicit_products"] == "hand-derived" and solution.info["implicit_converged"]
    problem.derivatives = None
    auto, solution = _hypergradient(problem, method, data, weight)
    assert solution.info["implicit_products"] == "autograd" and solution.info["implicit_converged"]
    assert float(auto.norm()) > 1e-4
    assert _relative(hand, auto) < 1e-9


# ------------------------------------------------------------------ the Laplacian's hand gradient
def _laplacian(loss="ce", normalize="edges", ridge=1e-5, task="classification", seed=2):
    from dgl_bilevel.inner import LaplacianRegularization

    data = random_graph_data(n=30, num_edges=80, features=6, classes=3, seed=seed, task=task)
    return data, LaplacianRegularization(lam=2.0, loss=loss, normalize=normalize, ridge=ridge, steps=40).bind(data, data.graph)


def _laplacian_point(problem, data, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randn(data.num_nodes, problem.width, generator=gen, dtype=torch.float64)
    return y, 0.3 + torch.rand(data.num_edges, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("loss,normalize,ridge,task", [("ce", "edges", 1e-5, "classification"),
                                                       ("mse", "none", 0.3, "classification"),
                                                       ("mse", "edges", 0.0, "regression")])
def test_laplacian_value_and_gradient_equal_autograd(loss, normalize, ridge, task):
    data, problem = _laplacian(loss, normalize, ridge, task)
    y, weight = _laplacian_point(problem, data)
    value, (grad,) = problem.derivatives.value_and_gradient((y,), weight)
    variable = y.clone().requires_grad_(True)
    objective = problem.objective((variable,), weight)
    (expected,) = torch.autograd.grad(objective, variable)
    assert abs(float(value - objective.detach())) < 1e-12 * max(1.0, abs(float(objective.detach())))
    assert float(expected.norm()) > 1e-2 and _relative(grad, expected) < 1e-12


def test_plain_laplacian_training_on_the_hand_gradient_follows_autograd():
    from dgl_bilevel.inner.training import run_steps

    data, problem = _laplacian()
    y, weight = _laplacian_point(problem, data)
    hand, _, hand_value = run_steps(problem, weight, (y.clone(),), 40, differentiable=False)
    problem.derivatives = None
    auto, _, auto_value = run_steps(problem, weight, (y.clone(),), 40, differentiable=False)
    assert _relative(hand[0], y) > 1e-2  # the steps moved Y
    assert _relative(hand[0], auto[0]) < 1e-12 and abs(hand_value - auto_value) < 1e-12


def test_laplacian_subclass_with_its_own_objective_keeps_autograd():
    from dgl_bilevel.inner import LaplacianRegularization

    class Shifted(LaplacianRegularization):
        def objective(self, params, edge_weight):
            return super().objective(params, edge_weight) + params[0].sum()

    data = random_graph_data(n=30, num_edges=80, features=6, classes=3, seed=2)
    assert Shifted().bind(data, data.graph).derivatives is None


def test_stacked_laplacian_first_order_equals_autograd_and_reports_each_seed():
    from dgl_bilevel.seeds import stack_problems

    problems, points, weights = [], [], []
    for s in range(3):
        data, _ = _laplacian(seed=2)
        perm = torch.randperm(data.num_nodes, generator=torch.Generator().manual_seed(s))
        data = data.with_splits(v_in=perm[: 4 + s], v_out=perm[10:13], val=perm[13:15], test=perm[15:])
        problem = _laplacian()[1].bind(data, data.graph)
        y, weight = _laplacian_point(problem, data, seed=s)
        problems.append(problem), points.append((y,)), weights.append(weight)
    stacked = stack_problems(problems)
    assert stacked.derivatives is not None
    (y,), w = stacked.stack_params(points), torch.cat(weights)
    value, (grad,) = stacked.derivatives.value_and_gradient((y.detach(),), w)
    reported = stacked.per_seed_objective.clone()
    variable = y.detach().clone().requires_grad_(True)
    objective = stacked.objective((variable,), w)
    (expected,) = torch.autograd.grad(objective, variable)
    assert torch.allclose(reported, stacked.per_seed_objective, rtol=0, atol=1e-13)
    assert abs(float(value - objective.detach())) < 1e-12 and _relative(grad, expected) < 1e-12
    for s, problem in enumerate(problems):  # each seed's block is that seed's own gradient
        own = problem.derivatives.value_and_gradient(points[s], weights[s])[1][0]
        assert _relative(grad[s * 30:(s + 1) * 30], own) < 1e-12


@pytest.mark.parametrize("loss,normalize,ridge,task", [("ce", "edges", 1e-5, "classification"),
                                                       ("mse", "none", 0.3, "classification"),
                                                       ("mse", "edges", 0.0, "regression")])
def test_laplacian_hessian_and_mixed_products_equal_autograd(loss, normalize, ridge, task):
    from dgl_bilevel.inner.laplacian_derivatives import LaplacianDerivatives

    data, problem = _laplacian(loss, normalize, ridge, task)
    assert isinstance(problem.derivatives, LaplacianDerivatives)
    y, weight = _laplacian_point(problem, data)
    assert_derivatives_equal_autograd(problem, (y,), weight)


def test_laplacian_operator_is_the_laplacian_of_both_directions_with_self_loops_and_parallel_edges():
    """``laplacian_matrix`` against the dense ``scale (D - W - W^T) + shift I`` on a multigraph with a
    self-loop (which contributes nothing) and a pair of parallel edges."""
    import dgl

    from dgl_bilevel.ops import laplacian_matrix

    src, dst = torch.tensor([0, 1, 1, 2, 3, 3, 2]), torch.tensor([1, 2, 2, 0, 3, 0, 3])
    graph = dgl.graph((src, dst), num_nodes=5)
    weight = torch.tensor([0.5, 1.5, 2.0, 0.25, 3.0, 0.75, 1.25], dtype=torch.float64)
    dense_w = torch.zeros(5, 5, dtype=torch.float64).index_put_((src, dst), weight, accumulate=True)
    sym = dense_w + dense_w.T
    expected = 0.7 * (torch.diag(sym.sum(1)) - sym) + 0.2 * torch.eye(5, dtype=torch.float64)
    mine = laplacian_matrix(graph, weight, scale=0.7, shift=0.2).to_dense()
    assert torch.allclose(mine, expected, rtol=0, atol=1e-15)
    assert float(mine[3, 3]) == pytest.approx(0.7 * (0.75 + 1.25) + 0.2)  # the self-loop 3 -> 3 adds nothing


@pytest.mark.parametrize("loss,optimizer", [("ce", "adam"), ("mse", "adam"), ("ce", "sgd")])
def test_laplacian_hand_derived_unroll_equals_autograd_through_the_trajectory(loss, optimizer):
    data, problem = _laplacian(loss)
    problem.steps = 25
    if optimizer == "sgd":
        problem.optimizer = InnerOptimizer.sgd(0.5)
    _, weight = _laplacian_point(problem, data)
    lean, solution = _hypergradient(problem, Unrolled(), data, weight)
    assert solution.info["reverse"] == "hand-derived"
    reference, solution = _hypergradient(problem, Unrolled(reverse="autograd"), data, weight)
    assert solution.info["reverse"] == "autograd"
    assert float(reference.norm()) > 1e-6
    assert _relative(lean, reference) < 1e-10


def test_laplacian_implicit_on_hand_derived_products_equals_autograd_products():
    data, problem = _laplacian("ce")
    problem.steps = 300
    _, weight = _laplacian_point(problem, data)
    method = Implicit(tol=1e-13, maxiter=2000)
    hand, solution = _hypergradient(problem, method, data, weight)
    assert solution.info["implicit_products"] == "hand-derived" and solution.info["implicit_converged"]
    problem.derivatives = None
    auto, solution = _hypergradient(problem, method, data, weight)
    assert solution.info["implicit_products"] == "autograd" and solution.info["implicit_converged"]
    assert float(auto.norm()) > 1e-6
    assert _relative(hand, auto) < 1e-9


def test_stacked_laplacian_derivatives_equal_autograd_on_the_stacked_objective():
    from dgl_bilevel.seeds import stack_problems

    problems, points, weights = [], [], []
    for s in range(3):
        data, _ = _laplacian(seed=2)
        perm = torch.randperm(data.num_nodes, generator=torch.Generator().manual_seed(s))
        data = data.with_splits(v_in=perm[: 4 + s], v_out=perm[10:13], val=perm[13:15], test=perm[15:])
        problem = _laplacian()[1].bind(data, data.graph)
        y, weight = _laplacian_point(problem, data, seed=s)
        problems.append(problem), points.append((y,)), weights.append(weight)
    stacked = stack_problems(problems)
    assert stacked.derivatives is not None
    (y,), w = stacked.stack_params(points), torch.cat(weights)
    assert_derivatives_equal_autograd(stacked, (y.detach(),), w)


@pytest.mark.parametrize("shape", [(300, 7), (300, 16), (10, 3)])
def test_row_log_softmax_equals_torch_on_narrow_and_wide_rows(shape):
    from dgl_bilevel.losses import row_log_softmax

    logits = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    variable = logits.clone().requires_grad_(True)
    mine = row_log_softmax(variable)
    assert torch.allclose(mine, torch.log_softmax(logits, dim=1), rtol=0, atol=1e-14)
    cotangent = torch.randn(*shape, dtype=torch.float64)
    (grad,) = torch.autograd.grad(mine, variable, cotangent)
    reference = variable.detach().requires_grad_(True)
    (expected,) = torch.autograd.grad(torch.log_softmax(reference, dim=1), reference, cotangent)
    assert torch.allclose(grad, expected, rtol=0, atol=1e-13)
