"""Every hypergradient method against central finite differences or another method, in float64."""
from __future__ import annotations

import pytest
import torch
import torchopt

from dgl_bilevel._dgl import dgl
from dgl_bilevel.data import BilevelData
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.hypergrad import Adjoint, FirstOrder, Implicit, Truncated, Unrolled, default_method
from dgl_bilevel.hypergrad.implicit_diff import ImplicitSolveWarning
from dgl_bilevel.hypergrad.linalg import column_dot, conjugate_gradient, neumann_series
from dgl_bilevel.inner import LabelPropagation, LaplacianRegularization, TrainedGNN
from dgl_bilevel.losses import task_loss
from dgl_bilevel.models import GCN, APPNPNet, GraphSAGE, SumAggGNN


def outer_loss_fn(problem, method, data, start):
    def loss(weight):
        solution = method.solve(problem, weight, start)
        return task_loss(problem.predict(solution.params, weight), data.labels, data.v_out, data.task)

    return loss


def hypergradient(problem, method, data, weight, seed=1):
    problem.bind(data, data.graph)
    start = problem.starting_params(torch.Generator().manual_seed(seed))
    weight = weight.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(outer_loss_fn(problem, method, data, start)(weight), weight)
    return grad, outer_loss_fn(problem, method, data, start)


def finite_difference(loss, weight, h=1e-5):
    out = torch.zeros_like(weight)
    with torch.no_grad():
        for e in range(weight.numel()):
            plus, minus = weight.clone(), weight.clone()
            plus[e] += h
            minus[e] -= h
            out[e] = (loss(plus) - loss(minus)) / (2 * h)
    return out


def directional_check(grad, loss, weight, directions=3, h=1e-4):
    """Largest relative error of <grad, d> against central differences along random directions d."""
    gen = torch.Generator().manual_seed(7)
    worst = 0.0
    with torch.no_grad():
        for _ in range(directions):
            d = torch.randn(weight.shape, generator=gen, dtype=weight.dtype)
            fd = (loss(weight + h * d) - loss(weight - h * d)) / (2 * h)
            worst = max(worst, abs(float((grad * d).sum() - fd)) / max(abs(float(fd)), 1e-12))
    return worst


def converging(lr=0.1):
    """Heavy-ball gradient descent: reaches gradient norm ~1e-9 on the test problems in 600 steps."""
    return torchopt.sgd(lr, momentum=0.9)


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


def _weights(data, seed=0):
    return 0.2 + torch.rand(data.num_edges, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("model", [SumAggGNN, GCN, GraphSAGE, APPNPNet])
def test_unrolled_gnn_matches_finite_differences(tiny, model):
    kwargs = {"k": 3} if model is APPNPNet else {}
    problem = TrainedGNN(model(5, 4, 3, **kwargs), steps=15)
    w = _weights(tiny)
    grad, loss = hypergradient(problem, Unrolled(), tiny, w)
    fd = finite_difference(loss, w)
    assert float(fd.norm()) > 1e-4
    assert relative_error(grad, fd) < 1e-4


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_unrolled_laplacian_matches_finite_differences(tiny, loss):
    problem = LaplacianRegularization(lam=1.0, loss=loss, steps=40, lr=0.1)
    w = _weights(tiny)
    grad, fn = hypergradient(problem, Unrolled(), tiny, w)
    assert relative_error(grad, finite_difference(fn, w)) < 1e-4


def test_unrolled_laplacian_regression(tiny_regression):
    problem = LaplacianRegularization(lam=1.0, steps=40, lr=0.1)
    w = _weights(tiny_regression)
    grad, fn = hypergradient(problem, Unrolled(), tiny_regression, w)
    assert relative_error(grad, finite_difference(fn, w)) < 1e-4


def test_truncated_with_all_steps_equals_unrolled(tiny):
    problem = TrainedGNN(SumAggGNN(5, 4, 3), steps=12)
    w = _weights(tiny)
    full, _ = hypergradient(problem, Unrolled(), tiny, w)
    truncated, _ = hypergradient(problem, Truncated(k=12), tiny, w)
    longer, _ = hypergradient(problem, Truncated(k=50), tiny, w)
    assert torch.allclose(full, truncated, rtol=1e-10, atol=1e-14)
    assert torch.allclose(full, longer, rtol=1e-10, atol=1e-14)
    partial, _ = hypergradient(problem, Truncated(k=3), tiny, w)
    assert not torch.allclose(full, partial)


def test_first_order_keeps_only_the_direct_term(tiny):
    problem = TrainedGNN(SumAggGNN(5, 4, 3), steps=10)
    w = _weights(tiny)
    grad, _ = hypergradient(problem, FirstOrder(), tiny, w)
    problem.bind(tiny, tiny.graph)
    params = problem.starting_params(torch.Generator().manual_seed(1))
    params = Truncated(0).solve(problem, w, params).params
    weight = w.clone().requires_grad_(True)
    (direct,) = torch.autograd.grad(task_loss(problem.predict(params, weight), tiny.labels, tiny.v_out, tiny.task), weight)
    assert torch.allclose(grad, direct)


@pytest.mark.parametrize("ridge", [0.0, 1e-3])
def test_laplacian_adjoint_matches_finite_differences(tiny, ridge):
    problem = LaplacianRegularization(lam=1.0, loss="mse", ridge=ridge)
    w = _weights(tiny)
    grad, fn = hypergradient(problem, Adjoint(tol=1e-12, warm_start=False), tiny, w)
    assert float(grad.norm()) > 1e-4
    assert relative_error(grad, finite_difference(fn, w)) < 1e-5


def test_laplacian_adjoint_ignores_components_without_labels():
    """Nodes unreachable from v_in have Y = 0 for every w; v_out there must not break the solve."""
    g = dgl.graph((torch.tensor([0, 1, 1, 2, 3, 4, 5, 6]), torch.tensor([1, 0, 2, 1, 4, 3, 6, 5])), num_nodes=7)
    x = torch.rand(7, 2, dtype=torch.float64)
    data = BilevelData(g, x, torch.tensor([0, 1, 1, 1, 0, 1, 0]), v_in=[0, 2], v_out=[1, 4], val=[5], test=[6])
    problem = LaplacianRegularization(loss="mse", ridge=0.0)
    w = _weights(data)
    grad, fn = hypergradient(problem, Adjoint(tol=1e-12, warm_start=False), data, w)
    assert torch.isfinite(grad).all() and float(grad[:4].abs().max()) > 1e-3
    assert relative_error(grad, finite_difference(fn, w)) < 1e-5
    assert torch.equal(grad[4:], torch.zeros(4, dtype=grad.dtype))  # the other components


def test_label_propagation_adjoint_matches_finite_differences(tiny):
    problem = LabelPropagation(alpha=0.8)
    w = _weights(tiny)
    grad, fn = hypergradient(problem, Adjoint(tol=1e-12, warm_start=False), tiny, w)
    assert relative_error(grad, finite_difference(fn, w)) < 1e-5


def test_label_propagation_iterations_converge_to_the_adjoint(tiny):
    w = _weights(tiny)
    exact, _ = hypergradient(LabelPropagation(alpha=0.8), Adjoint(tol=1e-12, warm_start=False), tiny, w)
    unrolled, fn = hypergradient(LabelPropagation(alpha=0.8, steps=150), Unrolled(), tiny, w)
    assert directional_check(unrolled, fn, w) < 1e-6
    assert relative_error(unrolled, exact) < 1e-6


def test_implicit_equals_adjoint_at_the_exact_solution(tiny):
    w = _weights(tiny)
    exact, _ = hypergradient(LaplacianRegularization(loss="mse", ridge=1e-3, lam=50.0), Adjoint(tol=1e-12, warm_start=False), tiny, w)
    problem = LaplacianRegularization(loss="mse", ridge=1e-3, lam=50.0, steps=600, optimizer=converging())
    implicit, _ = hypergradient(problem, Implicit(tol=1e-12, maxiter=500), tiny, w)
    assert relative_error(implicit, exact) < 1e-6


def test_implicit_neumann_series_on_a_well_conditioned_problem(tiny):
    settings = dict(loss="mse", ridge=0.5, lam=0.5)  # Hessian eigenvalues within [0.5, 2]
    w = _weights(tiny)
    exact, _ = hypergradient(LaplacianRegularization(**settings), Adjoint(tol=1e-12, warm_start=False), tiny, w)
    problem = LaplacianRegularization(**settings, steps=300, optimizer=converging())
    neumann, _ = hypergradient(problem, Implicit(solver="neumann", neumann_step=0.5, maxiter=500, tol=1e-13), tiny, w)
    assert relative_error(neumann, exact) < 1e-6


def test_implicit_gnn_matches_finite_differences_and_unrolled_to_convergence(tiny):
    """A strongly regularised GNN trained to stationarity: implicit = d/dw of the converged solution."""
    problem = TrainedGNN(SumAggGNN(5, 3, 3, num_layers=1), steps=600, optimizer=converging(), weight_decay=0.1)
    w = _weights(tiny)
    # undamped: the exact derivative (a trained model's default damping, 1e-3, would bias it)
    implicit, fn = hypergradient(problem, Implicit(tol=1e-12, maxiter=300, damping=0.0), tiny, w)
    assert directional_check(implicit, fn, w) < 1e-5
    unrolled, _ = hypergradient(problem, Unrolled(), tiny, w)
    assert relative_error(implicit, unrolled) < 1e-5


def test_implicit_two_layer_gnn_with_damping_is_close(tiny):
    """Non-convex inner problem: damped CG still lands near the converged derivative."""
    problem = TrainedGNN(SumAggGNN(5, 4, 3), steps=2000, optimizer=converging(0.02), weight_decay=0.05)
    w = _weights(tiny)
    exact, fn = hypergradient(problem, Implicit(tol=1e-12, maxiter=500, damping=0.0), tiny, w)
    assert directional_check(exact, fn, w, directions=1) < 1e-4
    damped, _ = hypergradient(problem, Implicit(tol=1e-10, maxiter=500, damping=1e-3), tiny, w)
    assert 0 < relative_error(damped, exact) < 0.1


def test_implicit_laplacian_cross_entropy(tiny):
    problem = LaplacianRegularization(loss="ce", ridge=5e-2, lam=0.2, normalize="none", steps=600, optimizer=converging())
    w = _weights(tiny)
    implicit, fn = hypergradient(problem, Implicit(tol=1e-12, maxiter=500), tiny, w)
    assert directional_check(implicit, fn, w) < 1e-5


def dense_implicit_reference(problem, data, params, w, damping):
    """``dL/dw|_direct - (d^2 g / dw dphi)^T (H + damping I)^-1 dL/dphi`` with ``H`` built densely by autograd."""
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def unflat(f):
        return tuple(part.reshape(shape) for part, shape in zip(torch.split(f, sizes), shapes))

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    hess = torch.autograd.functional.hessian(lambda f: problem.objective(unflat(f), w), flat)

    def stationarity(weight):
        f = flat.clone().requires_grad_(True)
        return torch.autograd.grad(problem.objective(unflat(f), weight), f, create_graph=True)[0]

    mixed = torch.autograd.functional.jacobian(stationarity, w)  # [P, E]
    f, weight = flat.clone().requires_grad_(True), w.clone().requires_grad_(True)
    outer = task_loss(problem.predict(unflat(f), weight), data.labels, data.v_out, data.task)
    d_phi, direct = torch.autograd.grad(outer, (f, weight))
    eye = torch.eye(len(flat), dtype=flat.dtype)
    return direct - mixed.T @ torch.linalg.solve(hess + damping * eye, d_phi)


@pytest.mark.parametrize("solver,layers", [("cg", 1), ("minres", 2)])
def test_implicit_damping_equals_the_dense_damped_reference(tiny, solver, layers):
    """The damped solve is exactly ``(H + damping I)^-1``: dropping the damping or flipping its sign fails."""
    problem = TrainedGNN(SumAggGNN(5, 3, 3, num_layers=layers), steps=150, optimizer=converging(0.05), weight_decay=0.1)
    w = _weights(tiny)
    delta = 0.05
    method = Implicit(solver=solver, tol=1e-13, maxiter=500, damping=delta)
    grad, _ = hypergradient(problem, method, tiny, w)
    assert method.last_solve.converged
    problem.bind(tiny, tiny.graph)
    params = Implicit().solve(problem, w, problem.starting_params(torch.Generator().manual_seed(1))).params
    expected = dense_implicit_reference(problem, tiny, params, w, delta)
    assert relative_error(grad, expected) < 1e-8
    assert relative_error(dense_implicit_reference(problem, tiny, params, w, 0.0), expected) > 1e-3
    assert relative_error(dense_implicit_reference(problem, tiny, params, w, -delta), expected) > 1e-3


class _SplitObjective(LaplacianRegularization):
    """The same objective, declared as two terms (fit, and smoothness plus ridge)."""

    def objective_terms(self, edge_weight):
        full = lambda params: self.objective(params, edge_weight)  # noqa: E731
        fit = lambda params: LaplacianRegularization(loss="ce").bind(self.data, self.graph).objective(  # noqa: E731
            params, torch.zeros_like(edge_weight))
        return [fit, lambda params: full(params) - fit(params)]


@pytest.mark.parametrize("solver", ["cg", "minres"])
def test_implicit_term_by_term_equals_one_pass(tiny, solver):
    settings = dict(loss="ce", ridge=5e-2, lam=0.2, normalize="none", steps=100, optimizer=converging())
    w = _weights(tiny)
    one, _ = hypergradient(LaplacianRegularization(**settings), Implicit(solver=solver, tol=1e-12, maxiter=300), tiny, w)
    split, _ = hypergradient(_SplitObjective(**settings), Implicit(solver=solver, tol=1e-12, maxiter=300), tiny, w)
    assert relative_error(split, one) < 1e-10


def test_implicit_and_adjoint_report_their_solves(tiny):
    w = _weights(tiny).requires_grad_(True)
    for problem, method, keys in [
        (LaplacianRegularization(loss="mse", ridge=1e-3, steps=50, lr=0.1), Implicit(tol=1e-10, maxiter=200), ("implicit",)),
        (LaplacianRegularization(loss="mse", ridge=1e-3), Adjoint(tol=1e-10), ("forward", "adjoint")),
    ]:
        problem.bind(tiny, tiny.graph)
        solution = method.solve(problem, w, problem.starting_params(torch.Generator().manual_seed(0)))
        task_loss(problem.predict(solution.params, w), tiny.labels, tiny.v_out, tiny.task).backward()
        for key in keys:
            assert solution.info[f"{key}_converged"] is True
            assert 0 <= solution.info[f"{key}_residual"] <= 1e-10 and solution.info[f"{key}_iterations"] >= 1


def test_implicit_warns_once_when_the_solve_does_not_converge(tiny):
    problem = TrainedGNN(SumAggGNN(5, 4, 3), steps=5)
    method = Implicit(maxiter=1, tol=1e-12)
    with pytest.warns(ImplicitSolveWarning) as record:
        for _ in range(2):
            hypergradient(problem, method, tiny, _weights(tiny))
    assert sum("relative residual" in str(r.message) for r in record) == 1
    assert method.last_solve.iterations == 1 and method.last_solve.residual > 1e-2


def test_adjoint_refuses_non_quadratic_problems(tiny):
    problem = LaplacianRegularization(loss="ce").bind(tiny, tiny.graph)
    with pytest.raises(ConfigError, match="quadratic"):
        Adjoint().solve(problem, _weights(tiny), problem.starting_params())
    assert isinstance(default_method(problem), Unrolled)
    assert isinstance(default_method(LaplacianRegularization(loss="mse").bind(tiny, tiny.graph)), Adjoint)


def test_cg_reports_residual_and_solves_columns_independently():
    gen = torch.Generator().manual_seed(0)
    m = torch.rand(6, 6, generator=gen, dtype=torch.float64)
    a = m @ m.t() + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.rand(6, 3, generator=gen, dtype=torch.float64)
    b[:, 2] = 0
    (x,), info = conjugate_gradient(lambda v: (a @ v[0],), (b,), dot=column_dot, tol=1e-12, maxiter=50)
    assert info.converged and info.residual <= 1e-12 and info.iterations <= 7
    assert torch.allclose(a @ x, b)
    assert torch.equal(x[:, 2], torch.zeros(6, dtype=torch.float64))
    (y,), ninfo = neumann_series(lambda v: (a @ v[0],), (b,), step=1 / 20, maxiter=2000, tol=1e-14)
    assert torch.allclose(y, x, atol=1e-8) and ninfo.residual < 1e-8


def test_label_propagation_closed_form_equals_autograd_fallback(tiny):
    problem = LabelPropagation(alpha=0.7).bind(tiny, tiny.graph)
    w = _weights(tiny)
    gen = torch.Generator().manual_seed(3)
    p = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    f = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    closed = problem.edge_gradient(w, p, f)
    weight = w.clone().requires_grad_(True)
    system = problem.linear_system(weight)
    (auto,) = torch.autograd.grad((p * system.rhs).sum() - (p * system.matvec(f)).sum(), weight)
    assert torch.allclose(closed, auto, rtol=1e-10, atol=1e-12)


def test_laplacian_closed_form_equals_autograd_fallback(tiny):
    problem = LaplacianRegularization(loss="mse", ridge=1e-3).bind(tiny, tiny.graph)
    w = _weights(tiny)
    gen = torch.Generator().manual_seed(4)
    p, y = torch.randn(12, 3, generator=gen, dtype=torch.float64), torch.randn(12, 3, generator=gen, dtype=torch.float64)
    weight = w.clone().requires_grad_(True)
    system = problem.linear_system(weight)
    (auto,) = torch.autograd.grad((p * system.rhs).sum() - (p * system.matvec(y)).sum(), weight)
    assert torch.allclose(problem.edge_gradient(w, p, y), auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("problem", [
    lambda: TrainedGNN(SumAggGNN(5, 4, 3), steps=12),  # hand-derived second derivatives
    lambda: TrainedGNN(GCN(5, 4, 3), steps=12),  # recomputed steps
    lambda: LaplacianRegularization(loss="ce", steps=25, lr=0.1),
], ids=["gnn", "gcn", "laplacian"])
def test_checkpointed_unrolling_equals_the_full_autograd_graph(tiny, problem):
    w = _weights(tiny)
    plain, _ = hypergradient(problem(), Unrolled(reverse="autograd"), tiny, w)
    lean, _ = hypergradient(problem(), Unrolled(reverse="auto"), tiny, w)
    assert relative_error(lean, plain) < 1e-12
    t_plain, _ = hypergradient(problem(), Truncated(4, reverse="autograd"), tiny, w)
    t_lean, _ = hypergradient(problem(), Truncated(4, reverse="auto"), tiny, w)
    assert relative_error(t_lean, t_plain) < 1e-12
