"""Implicit differentiation (``hypergrad.implicit_diff``) and the linear solvers behind it, in float64,
against closed forms, dense references and central finite differences."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from dgl_bilevel._dgl import dgl
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.hypergrad.implicit_diff import (
    ImplicitSolveWarning,
    SolveOptions,
    custom_root,
    root_vjp,
    stationarity,
)
from dgl_bilevel.hypergrad.linalg import SolveInfo, gmres, linear_solve, minres
from dgl_bilevel.ops import symmetric_weighted_sum

D = torch.float64


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def spd(n: int, low: float, high: float, seed: int) -> torch.Tensor:
    """A dense symmetric matrix with eigenvalues spread over [low, high]."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=D))
    return q @ torch.diag(torch.linspace(low, high, n, dtype=D)) @ q.T


# ----------------------------------------------------------------- (a) quadratic, closed form
class Quadratic:
    """``A(theta) x = b(theta)`` with ``A(theta) = A0 + sum_k theta_k B_k`` (SPD near theta = 0) and
    ``b(theta) = b0 + C theta``: ``x* = A^-1 b`` and, for ``L = <c, x*>``, with ``A v = c``,
    ``dL/dtheta_k = v^T (C[:, k] - B_k x*)``."""

    def __init__(self, n=8, k=3, low=0.6, high=1.4, seed=0):
        gen = torch.Generator().manual_seed(seed + 100)
        self.a0 = spd(n, low, high, seed)
        sym = torch.randn(k, n, n, generator=gen, dtype=D)
        self.b_k = 0.02 * low * (sym + sym.transpose(1, 2))
        self.b0 = torch.randn(n, generator=gen, dtype=D)
        self.c_mat = torch.randn(n, k, generator=gen, dtype=D)
        self.theta = torch.randn(k, generator=gen, dtype=D)
        self.cot = torch.randn(n, generator=gen, dtype=D)

    def matrix(self, theta):
        return self.a0 + torch.einsum("k,kij->ij", theta, self.b_k)

    def rhs(self, theta):
        return self.b0 + self.c_mat @ theta

    def optimality(self, x, theta):
        return self.matrix(theta) @ x - self.rhs(theta)

    def solve(self, init, theta):
        return torch.linalg.solve(self.matrix(theta), self.rhs(theta))

    def closed_form(self, damping=0.0):
        a = self.matrix(self.theta)
        x = torch.linalg.solve(a, self.rhs(self.theta))
        v = torch.linalg.solve(a.T + damping * torch.eye(len(x), dtype=D), self.cot)
        return torch.stack([v @ (self.c_mat[:, k] - self.b_k[k] @ x) for k in range(len(self.theta))])


SOLVE_CASES = [("cg", {}), ("minres", {}), ("gmres", {}), ("neumann", {"neumann_step": 1.0, "maxiter": 200})]


@pytest.mark.parametrize("solve,extra", SOLVE_CASES, ids=[s for s, _ in SOLVE_CASES])
def test_quadratic_root_matches_closed_form(solve, extra):
    q = Quadratic()  # eigenvalues within about [0.5, 1.5]: every solver converges
    options = {"tol": 1e-14, "maxiter": 100, **extra}
    theta = q.theta.clone().requires_grad_(True)
    solver = custom_root(q.optimality, solve=solve, **options)(q.solve)
    x = solver(None, theta)
    assert not x.grad_fn.name().startswith("Linalg")  # the solver's own graph is discarded
    (grad,) = torch.autograd.grad((q.cot * x).sum(), theta)
    expected = q.closed_form()
    assert rel(grad, expected) < 1e-8
    assert solver.last_info.converged and solver.last_info.residual <= 1e-14
    (pure,), info = root_vjp(q.optimality, x.detach(), (q.theta,), q.cot, solve=solve, **options)
    assert rel(pure, expected) < 1e-8 and info.residual <= 1e-14


@pytest.mark.parametrize("solve", ["cg", "minres", "gmres"])
def test_quadratic_root_ill_conditioned(solve):
    q = Quadratic(n=12, low=1e-2, high=10.0, seed=1)  # condition number ~1e3
    (grad,), info = root_vjp(q.optimality, q.solve(None, q.theta), (q.theta,), q.cot, solve=solve, tol=1e-13, maxiter=200)
    assert info.converged
    assert rel(grad, q.closed_form()) < 1e-8


def test_closed_form_agrees_with_autograd_through_a_dense_solve():
    """Guards the reference itself."""
    q = Quadratic()
    theta = q.theta.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad((q.cot * q.solve(None, theta)).sum(), theta)
    assert rel(q.closed_form(), auto) < 1e-12


def test_tuple_solution_kwargs_and_passthrough_arguments():
    """x split in two tensors; theta inside a tuple argument and a keyword; a non-tensor flag."""
    q = Quadratic()
    n = q.b0.numel()

    def optimality(x, pack, flag, *, scale):
        assert flag == "passed"
        (theta,) = pack
        full = torch.cat([x[0], x[1]])
        r = scale * (q.matrix(theta) @ full - q.rhs(theta))
        return r[:3], r[3:]

    @custom_root(optimality, solve="minres", tol=1e-14)
    def solver(init, pack, flag, *, scale):
        assert not pack[0].requires_grad and not scale.requires_grad  # detached for the solver
        full = q.solve(None, pack[0])
        return full[:3], full[3:]

    theta = q.theta.clone().requires_grad_(True)
    scale = torch.tensor(2.0, dtype=D, requires_grad=True)
    x = solver(None, (theta,), "passed", scale=scale)
    assert isinstance(x, tuple) and x[0].shape == (3,) and x[1].shape == (n - 3,)
    loss = (q.cot[:3] * x[0]).sum() + (q.cot[3:] * x[1]).sum()
    g_theta, g_scale = torch.autograd.grad(loss, (theta, scale))
    assert rel(g_theta, q.closed_form()) < 1e-8
    assert abs(float(g_scale)) < 1e-12  # scaling F does not move its root


def test_no_gradient_requested_returns_detached_solution():
    q = Quadratic()
    solver = custom_root(q.optimality)(q.solve)
    x = solver(None, q.theta)
    assert not x.requires_grad and solver.last_info is None


def test_user_supplied_solver_is_called_with_the_damped_operator():
    q = Quadratic()
    calls = []

    def dense(matvec, rhs):
        n = rhs[0].numel()
        mat = torch.stack([matvec((e,))[0] for e in torch.eye(n, dtype=D)], 1)
        calls.append(mat)
        return (torch.linalg.solve(mat, rhs[0]),), SolveInfo(n, 0.0, True)

    (grad,), info = root_vjp(q.optimality, q.solve(None, q.theta), (q.theta,), q.cot, solve=dense, damping=0.25)
    a = q.matrix(q.theta)
    assert torch.allclose(calls[0], a.T + 0.25 * torch.eye(len(a), dtype=D), atol=1e-14)
    assert rel(grad, q.closed_form(damping=0.25)) < 1e-12 and info.converged


# ----------------------------------------------------- (b) logistic regression, finite differences
def logistic_data(seed=0, m=40, d=5):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, d, generator=gen, dtype=D)
    y = torch.where(x @ torch.randn(d, generator=gen, dtype=D) + 0.5 * torch.randn(m, generator=gen, dtype=D) > 0, 1.0, -1.0).to(D)
    return x[:30], y[:30], x[30:], y[30:]


X_TR, Y_TR, X_VAL, Y_VAL = logistic_data()


def logistic_objective(w, lam, s):
    """Per-sample weighted logistic loss plus ``lam/2 |w|^2``."""
    return (s * F.softplus(-Y_TR * (X_TR @ w))).sum() + 0.5 * lam * (w * w).sum()


def newton(init, lam, s):
    """Newton's method with the closed-form gradient and Hessian, to machine precision."""
    w = init.clone()
    for _ in range(100):
        margin = Y_TR * (X_TR @ w)
        grad = -X_TR.T @ (s * torch.sigmoid(-margin) * Y_TR) + lam * w
        hess = X_TR.T @ ((s * torch.sigmoid(margin) * torch.sigmoid(-margin)).unsqueeze(-1) * X_TR) + lam * torch.eye(len(w), dtype=D)
        step = torch.linalg.solve(hess, grad)
        w = w - step
        if float(step.norm()) < 1e-15:
            break
    return w


def validation_loss(w):
    return F.softplus(-Y_VAL * (X_VAL @ w)).mean()


@pytest.mark.parametrize("solve", ["cg", "minres"])
def test_logistic_regression_hypergradient_matches_finite_differences(solve):
    solver = custom_root(stationarity(logistic_objective), solve=solve, tol=1e-13)(newton)
    init = torch.zeros(X_TR.shape[1], dtype=D)
    lam = torch.tensor(0.7, dtype=D, requires_grad=True)
    s = (0.5 + torch.rand(X_TR.shape[0], generator=torch.Generator().manual_seed(3), dtype=D)).requires_grad_(True)
    g_lam, g_s = torch.autograd.grad(validation_loss(solver(init, lam, s)), (lam, s))

    def loss_at(lam_, s_):
        return float(validation_loss(newton(init, lam_, s_)))

    h = 1e-5
    with torch.no_grad():
        fd_lam = (loss_at(lam + h, s) - loss_at(lam - h, s)) / (2 * h)
        fd_s = torch.tensor([(loss_at(lam, s + h * e) - loss_at(lam, s - h * e)) / (2 * h)
                             for e in torch.eye(len(s), dtype=D)], dtype=D)
    assert abs(fd_lam) > 1e-4 and float(fd_s.norm()) > 1e-3
    assert abs(float(g_lam) - fd_lam) / abs(fd_lam) < 1e-6
    assert rel(g_s, fd_s) < 1e-6


# ------------------------------------------------------------ (c) non-symmetric fixed point
class FixedPoint:
    """``T(x, theta) = 0.5 tanh(M x + U theta) + b`` with ``|M| < 1``, non-symmetric: a contraction."""

    def __init__(self, n=7, k=4, seed=0):
        gen = torch.Generator().manual_seed(seed)
        m = torch.randn(n, n, generator=gen, dtype=D)
        self.m = 0.9 * m / torch.linalg.matrix_norm(m, ord=2)
        self.u = torch.randn(n, k, generator=gen, dtype=D)
        self.b = torch.randn(n, generator=gen, dtype=D)
        self.theta = torch.randn(k, generator=gen, dtype=D)
        self.cot = torch.randn(n, generator=gen, dtype=D)

    def t(self, x, theta):
        return 0.5 * torch.tanh(self.m @ x + self.u @ theta) + self.b

    def residual(self, x, theta):  # F = T(x) - x
        return self.t(x, theta) - x

    def iterate(self, init, theta):
        x = init
        for _ in range(200):  # Lipschitz constant <= 0.45: 0.45^200 is far below rounding
            x = self.t(x, theta)
        return x

    def dense_reference(self, transpose=True):
        x = self.iterate(torch.zeros_like(self.b), self.theta)
        slope = 0.5 / torch.cosh(self.m @ x + self.u @ self.theta) ** 2
        jac = slope.unsqueeze(-1) * self.m - torch.eye(len(x), dtype=D)
        d_theta = slope.unsqueeze(-1) * self.u
        v = torch.linalg.solve(jac.T if transpose else jac, self.cot)
        return -d_theta.T @ v


def test_non_symmetric_fixed_point_with_gmres():
    p = FixedPoint()
    theta = p.theta.clone().requires_grad_(True)
    solver = custom_root(p.residual, solve="gmres", tol=1e-14)(p.iterate)
    (grad,) = torch.autograd.grad((p.cot * solver(torch.zeros_like(p.b), theta)).sum(), theta)
    expected = p.dense_reference()
    assert rel(grad, expected) < 1e-8
    assert rel(p.dense_reference(transpose=False), expected) > 1e-2  # J^T vs J matters here
    h = 1e-5
    with torch.no_grad():
        fd = torch.stack([((p.cot * p.iterate(torch.zeros_like(p.b), p.theta + h * e)).sum()
                           - (p.cot * p.iterate(torch.zeros_like(p.b), p.theta - h * e)).sum()) / (2 * h)
                          for e in torch.eye(len(p.theta), dtype=D)])
    assert rel(grad, fd) < 1e-6


def test_fixed_point_as_x_minus_t_with_the_neumann_series():
    """``F = x - T(x)`` has ``J = I - T'``: the Neumann series with step 1 is the classic fixed-point
    adjoint iteration ``v <- u + T'^T v``."""
    p = FixedPoint()
    (grad,), info = root_vjp(lambda x, th: x - p.t(x, th), p.iterate(torch.zeros_like(p.b), p.theta), (p.theta,),
                             p.cot, solve="neumann", neumann_step=1.0, maxiter=200, tol=1e-15)
    assert rel(grad, p.dense_reference()) < 1e-8 and info.residual < 1e-12


# -------------------------------------------------------- (d) DGL message passing optimality
def dgl_problem(tiny):
    graph = tiny.graph
    reverse = dgl.reverse(graph)
    n, classes = tiny.num_nodes, 3
    ones = torch.ones(n, 1, dtype=D)

    def objective(y, w):
        """Cross-entropy on v_in + sum_e w_e |y_u - y_v|^2 + 0.05 |y|^2: strictly convex, not quadratic."""
        degree = symmetric_weighted_sum(graph, reverse, ones, w)  # (W + W^T) 1
        smooth = (degree * y * y).sum() - (y * symmetric_weighted_sum(graph, reverse, y, w)).sum()
        return F.cross_entropy(y[tiny.v_in], tiny.labels[tiny.v_in], reduction="sum") + smooth + 0.05 * (y * y).sum()

    def newton_solve(init, w):
        y = init.clone()
        for _ in range(50):
            flat = y.reshape(-1).requires_grad_(True)
            with torch.enable_grad():
                grad = torch.autograd.grad(objective(flat.reshape(n, classes), w), flat)[0]
            hess = torch.autograd.functional.hessian(lambda f: objective(f.reshape(n, classes), w), flat.detach())
            step = torch.linalg.solve(hess, grad)
            y = (flat.detach() - step).reshape(n, classes)
            if float(step.norm()) < 1e-14:
                break
        return y

    def outer(y):
        return F.cross_entropy(y[tiny.val], tiny.labels[tiny.val])

    return objective, newton_solve, outer, torch.zeros(n, classes, dtype=D)


@pytest.mark.parametrize("solve", ["cg", "minres"])
def test_dgl_laplacian_fit_matches_finite_differences_and_dense_reference(tiny, solve):
    objective, newton_solve, outer, init = dgl_problem(tiny)
    w0 = 0.2 + torch.rand(tiny.num_edges, generator=torch.Generator().manual_seed(0), dtype=D)
    w = w0.clone().requires_grad_(True)
    solver = custom_root(stationarity(objective), solve=solve, tol=1e-13, maxiter=200)(newton_solve)
    (grad,) = torch.autograd.grad(outer(solver(init, w)), w)
    assert solver.last_info.converged

    # dense reference: -(dF/dw)^T H^-1 dL/dy, everything by autograd on the flattened problem
    y = newton_solve(init, w0)
    n, c = y.shape
    hess = torch.autograd.functional.hessian(lambda f: objective(f.reshape(n, c), w0), y.reshape(-1))
    mixed = torch.autograd.functional.jacobian(lambda ww: _grad_y(objective, y, ww), w0)  # [n, c, E]
    yy = y.clone().requires_grad_(True)
    (dl_dy,) = torch.autograd.grad(outer(yy), yy)
    expected = -mixed.reshape(n * c, -1).T @ torch.linalg.solve(hess, dl_dy.reshape(-1))
    assert rel(grad, expected) < 1e-8

    gen = torch.Generator().manual_seed(5)
    h = 1e-5
    with torch.no_grad():
        for _ in range(3):
            d = torch.randn(w0.shape, generator=gen, dtype=D)
            fd = (outer(newton_solve(init, w0 + h * d)) - outer(newton_solve(init, w0 - h * d))) / (2 * h)
            assert abs(float(fd)) > 1e-5
            assert abs(float((grad * d).sum() - fd)) / abs(float(fd)) < 1e-6


def _grad_y(objective, y, w):
    """``dg/dy`` at fixed ``y`` as a differentiable function of ``w``."""
    yy = y.detach().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(objective(yy, w), yy, create_graph=True)[0]


# ---------------------------------------------------------------------------- (e) damping
@pytest.mark.parametrize("solve", ["cg", "minres", "gmres"])
def test_damped_solve_equals_the_dense_damped_reference(solve):
    q = Quadratic(low=0.05, high=2.0, seed=2)
    x = q.solve(None, q.theta)
    delta = 0.3
    (grad,), info = root_vjp(q.optimality, x, (q.theta,), q.cot, solve=solve, tol=1e-14, maxiter=200, damping=delta)
    assert info.converged
    expected = q.closed_form(damping=delta)
    assert rel(grad, expected) < 1e-10
    # the test discriminates: no damping or damping with the wrong sign are far away
    assert rel(q.closed_form(), expected) > 1e-2 and rel(q.closed_form(damping=-delta), expected) > 1e-2


# --------------------------------------------------------------------- (f) indefinite J
def indefinite(n=10, seed=0):
    """Symmetric ``A`` with eigenvalues ``+-[0.5, 2]`` and ``b`` with ``b^T A b = 0`` (CG's first step
    divides by zero curvature), plus a generic right-hand side."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=D))
    half = torch.linspace(0.5, 2.0, n // 2, dtype=D)
    lam = torch.cat([half, -half])
    coef = torch.rand(n // 2, generator=gen, dtype=D) + 0.5
    return q @ torch.diag(lam) @ q.T, q @ torch.cat([coef, coef]), q, lam


def test_minres_solves_an_indefinite_system_where_cg_does_not():
    a, b, _, _ = indefinite()
    theta = torch.zeros(len(b), dtype=D)
    optimality = lambda x, th: a @ x - th  # noqa: E731 -- dF/dtheta = -I: the gradient is A^-1 u
    (cg_grad,), cg_info = root_vjp(optimality, torch.linalg.solve(a, theta), (theta,), b, solve="cg", tol=1e-12, maxiter=50)
    assert not cg_info.converged and cg_info.residual > 0.5
    (grad,), info = root_vjp(optimality, torch.linalg.solve(a, theta), (theta,), b, solve="minres", tol=1e-12, maxiter=50)
    assert info.converged and info.iterations <= len(b) + 1
    assert rel(grad, torch.linalg.solve(a, b)) < 1e-10


def test_minres_and_gmres_match_dense_solves_on_random_indefinite_systems():
    a, _, _, _ = indefinite(n=16, seed=3)
    rhs = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=D)
    x0 = torch.ones(16, 2, dtype=D)
    for solver, kw in [(minres, {}), (gmres, {"restart": 40}), (gmres, {"restart": 6})]:
        for start in (None, (x0,)):
            (x,), info = solver(lambda v: (a @ v[0],), (rhs,), x0=start, tol=1e-12, maxiter=400, **kw)
            assert info.converged, (solver.__name__, kw)
            assert rel(x, torch.linalg.solve(a, rhs)) < 1e-9


def test_preconditioned_minres_with_start_and_damping_matches_the_dense_solve():
    a, _, _, _ = indefinite(n=16, seed=5)
    scale = torch.logspace(-1, 1, 16, dtype=D)
    a = scale[:, None] * a * scale[None, :]  # badly scaled: M = S^2 undoes the scaling
    rhs = torch.randn(16, 2, generator=torch.Generator().manual_seed(2), dtype=D)
    inverse = lambda r: (r[0] / scale[:, None] ** 2,)  # noqa: E731
    for damping, start in [(0.0, None), (0.0, (torch.ones(16, 2, dtype=D),)), (0.3, None)]:
        (x,), info = minres(lambda v: (a @ v[0],), (rhs,), x0=start, tol=1e-12, maxiter=400, damping=damping,
                            precondition=inverse)
        damped = a + damping * torch.eye(16, dtype=D)
        assert info.converged and rel(x, torch.linalg.solve(damped, rhs)) < 1e-9
        assert float((damped @ x - rhs).norm() / rhs.norm()) == pytest.approx(info.residual, rel=1e-6)
    (x,), info = minres(lambda v: (a @ v[0],), (torch.zeros(16, 2, dtype=D),), precondition=inverse)
    assert info.iterations == 0 and info.converged and not x.any()


# ------------------------------------------------------------- (g) residual report, warning
@pytest.mark.parametrize("solve", ["cg", "minres", "gmres", "neumann"])
def test_reported_residual_is_the_true_residual(solve):
    a = spd(12, 0.05, 1.5, seed=4)
    b = torch.randn(12, generator=torch.Generator().manual_seed(2), dtype=D)
    (x,), info = linear_solve(lambda v: (a @ v[0],), (b,), solve, tol=1e-14, maxiter=4, damping=0.1)
    true = float(((a + 0.1 * torch.eye(12, dtype=D)) @ x - b).norm() / b.norm())
    assert info.iterations == 4 and not info.converged
    assert abs(info.residual - true) <= 1e-10 * max(true, 1e-3)


def test_unconverged_solve_warns_once_per_decorated_function():
    q = Quadratic(n=12, low=1e-3, high=10.0, seed=5)

    def decorated():
        return custom_root(q.optimality, solve="cg", maxiter=1, tol=1e-12)(q.solve)

    first, second = decorated(), decorated()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for solver in (first, first, first, second):
            theta = q.theta.clone().requires_grad_(True)
            torch.autograd.grad((q.cot * solver(None, theta)).sum(), theta)
    ours = [w for w in caught if issubclass(w.category, ImplicitSolveWarning)]
    assert len(ours) == 2  # once for `first`, once for `second`
    assert "relative residual" in str(ours[0].message)
    assert first.last_info.iterations == 1 and first.last_info.residual > 1e-2 and not first.last_info.converged
    quiet = custom_root(q.optimality, solve="cg", maxiter=1, warn_residual=10.0)(q.solve)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplicitSolveWarning)
        theta = q.theta.clone().requires_grad_(True)
        torch.autograd.grad((q.cot * quiet(None, theta)).sum(), theta)


def test_warm_start_reuses_the_previous_solution():
    q = Quadratic(n=12, low=1e-2, high=10.0, seed=6)
    solver = custom_root(q.optimality, solve="cg", tol=1e-12, maxiter=200, warm_start=True)(q.solve)
    iterations = []
    for _ in range(2):
        theta = q.theta.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((q.cot * solver(None, theta)).sum(), theta)
        iterations.append(solver.last_info.iterations)
        assert rel(grad, q.closed_form()) < 1e-8
    assert iterations[0] > 5 and iterations[1] <= 1


def test_configuration_errors():
    q = Quadratic()
    with pytest.raises(ConfigError, match="solver"):
        custom_root(q.optimality, solve="lu")
    with pytest.raises(ConfigError, match="unknown"):
        custom_root(q.optimality, tolerance=1e-3)
    with pytest.raises(ConfigError):
        SolveOptions(maxiter=0)
    with pytest.raises(ConfigError):
        SolveOptions(damping=-1.0)
    with pytest.raises(ConfigError, match="unknown linear solver"):
        linear_solve(lambda v: v, (torch.ones(2, dtype=D),), "lu")
    solver = custom_root(lambda x, th: (q.matrix(th) @ x)[:3], solve="cg")(q.solve)
    theta = q.theta.clone().requires_grad_(True)
    with pytest.raises(ConfigError, match="shaped like the solution"):
        torch.autograd.grad(solver(None, theta).sum(), theta)


def test_stationarity_evaluates_at_a_constant_point():
    """F(x) = d objective / dx at a plain tensor, the same as at one that requires grad."""
    from dgl_bilevel.numerics.implicit_diff import stationarity

    F = stationarity(lambda x, a: ((x - a) ** 2).sum() + (x ** 3).sum())
    x, a = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
    expected = 2 * (x - a) + 3 * x ** 2
    assert torch.allclose(F(x, a), expected, rtol=1e-15, atol=0)
    assert torch.allclose(F(x.clone().requires_grad_(True), a), expected, rtol=1e-15, atol=0)
    assert not x.requires_grad
