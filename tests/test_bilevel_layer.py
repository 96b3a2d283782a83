"""The continuous bilevel layer (``dgl_bilevel.layers``), in float64, against closed forms and
central finite differences of the whole forward solve."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from dgl_bilevel._dgl import dgl
from dgl_bilevel.errors import ConfigError
from dgl_bilevel.hypergrad.implicit_diff import ImplicitSolveWarning, SolveOptions, root_vjp
from dgl_bilevel.hypergrad.linalg import minres
from dgl_bilevel.layers import (BilevelLayer, BilevelSolveWarning, LaplacianProgram, LevelSolver, QuadraticProgram,
                                RobustLQ, SoftplusProgram)
from dgl_bilevel.layers.bilevel import preconditioned_minres

D = torch.float64
TIGHT = SolveOptions("minres", tol=1e-13, maxiter=1000)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm())


def layer_for(program, nx_shape, ny_shape, upper="newton", backward="exact", lr=0.1, **kwargs) -> BilevelLayer:
    steps = 20 if upper == "newton" else 5000
    return BilevelLayer(program.upper, program.lower,
                        upper_solver=LevelSolver(upper, lr=lr, tol=1e-10, max_steps=steps),
                        lower_solver=LevelSolver("newton", tol=1e-12), backward=backward, solve=TIGHT,
                        x_init=torch.zeros(nx_shape, dtype=D), y_init=torch.zeros(ny_shape, dtype=D),
                        warm_start=False, **kwargs)


def loss_of(x: torch.Tensor, y: torch.Tensor, seed: int = 7) -> torch.Tensor:
    """A non-linear loss on both outputs (so both cotangents are non-zero and vary)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(x.shape, generator=gen, dtype=D)
    b = torch.randn(y.shape, generator=gen, dtype=D)
    return (a * x).sum() + (b * y).sum() + 0.5 * (x * x).sum() + torch.tanh(y).sum()


def gradient(layer: BilevelLayer, z: torch.Tensor) -> torch.Tensor:
    z = z.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_of(*layer(z)), z)
    return g


def central_differences(layer: BilevelLayer, z: torch.Tensor, h: float, directions=None) -> torch.Tensor:
    """``dL/dz`` (or ``<dL/dz, v>`` per direction) by central differences of the whole forward solve."""
    directions = torch.eye(z.numel(), dtype=D).reshape(-1, *z.shape) if directions is None else directions
    out = []
    with torch.no_grad():
        for v in directions:
            plus, minus = loss_of(*layer(z + h * v)), loss_of(*layer(z - h * v))
            out.append((plus - minus) / (2 * h))
    return torch.stack(out)


# ----------------------------------------------------------------- (a) quadratic-quadratic, closed form
@pytest.fixture(scope="module")
def quad():
    return QuadraticProgram(nx=3, ny=4, nz=2, seed=0)


@pytest.fixture(scope="module")
def z_quad(quad):
    return torch.randn(quad.nz, generator=torch.Generator().manual_seed(1), dtype=D)


def closed_form_gradient(quad, z):
    z = z.detach().clone().requires_grad_(True)
    x, y = quad.solution(z)  # affine in z: autograd through the closed form is the reference
    (g,) = torch.autograd.grad(loss_of(x, y), z)
    jx, jy = quad.jacobians()
    x, y = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
    gx, gy = torch.autograd.grad(loss_of(x, y), (x, y))
    assert rel(jx.T @ gx + jy.T @ gy, g) < 1e-12  # the two references agree
    return g


@pytest.mark.parametrize("upper,backward", [("newton", "exact"), ("gradient", "exact"), ("adam", "exact"),
                                            ("newton", "second_order"), ("gradient", "unrolled")])
def test_quadratic_matches_closed_form(quad, z_quad, upper, backward):
    layer = layer_for(quad, quad.nx, quad.ny, upper=upper, backward=backward, lr=0.05 if upper == "adam" else 0.15)
    z = z_quad.clone().requires_grad_(True)
    x, y = layer(z)
    xs, ys = quad.solution(z_quad)
    assert rel(x, xs) < 1e-9 and rel(y, ys) < 1e-9
    report = layer.last_forward
    assert report.converged and report.upper_gradient <= 1e-10 and report.lower_gradient <= 1e-12
    (g,) = torch.autograd.grad(loss_of(x, y), z)
    assert rel(g, closed_form_gradient(quad, z_quad)) < 1e-8
    if backward != "unrolled":
        assert layer.last_backward.converged and layer.last_backward.residual <= 1e-13


def test_quadratic_matches_finite_differences_of_the_forward_solve(quad, z_quad):
    layer = layer_for(quad, quad.nx, quad.ny)
    fd = central_differences(layer, z_quad, 1e-4)
    assert rel(fd, closed_form_gradient(quad, z_quad)) < 1e-7
    assert rel(gradient(layer, z_quad), fd) < 1e-7


def test_ignoring_the_lower_response_in_the_upper_condition_is_measurably_wrong(quad, z_quad):
    """The bug the total derivative prevents: H = [F_x; G_y] (dy*/dx dropped) at the same solution."""
    layer = layer_for(quad, quad.nx, quad.ny)
    x, y = (t.detach() for t in layer(z_quad))
    nx = quad.nx

    def partial_conditions(u, z):
        xs, ys = u[:nx], u[nx:]
        fx = torch.autograd.grad(quad.upper(xs, ys, z), xs, create_graph=True)[0]
        gy = torch.autograd.grad(quad.lower(xs, ys, z), ys, create_graph=True)[0]
        return torch.cat([fx, gy])

    u = torch.cat([x, y]).requires_grad_(True)
    xs_, ys_ = u[:nx], u[nx:]
    cot = torch.cat(torch.autograd.grad(loss_of(xs_, ys_), (xs_, ys_)))
    (wrong,), info = root_vjp(partial_conditions, torch.cat([x, y]), (z_quad,), cot, solve="gmres", tol=1e-13)
    assert info.converged
    truth = closed_form_gradient(quad, z_quad)
    assert rel(gradient(layer, z_quad), truth) < 1e-8
    assert rel(wrong, truth) > 0.1  # measured 0.5-1 on this program: a test tolerance of 1e-6 catches it


# ----------------------------------------------------------------- (b) non-quadratic
@pytest.fixture(scope="module")
def soft():
    return SoftplusProgram(seed=0)


@pytest.fixture(scope="module")
def z_soft(soft):
    return 0.5 * torch.randn(soft.nz, generator=torch.Generator().manual_seed(2), dtype=D)


def test_non_quadratic_matches_finite_differences(soft, z_soft):
    layer = layer_for(soft, soft.nx, soft.ny)
    fd = central_differences(layer, z_soft, 1e-5)
    assert layer.last_forward.converged
    assert rel(gradient(layer, z_soft), fd) < 1e-6


def test_non_quadratic_unrolled_gradient_descent_agrees(soft, z_soft):
    exact = gradient(layer_for(soft, soft.nx, soft.ny), z_soft)
    unrolled = layer_for(soft, soft.nx, soft.ny, upper="gradient", backward="unrolled", lr=0.3)
    assert rel(gradient(unrolled, z_soft), exact) < 1e-6
    assert unrolled.last_forward.converged


def test_dropping_third_order_terms_is_an_approximation(soft, z_soft):
    """``second_order`` is exact when G is quadratic in (x, y) (programs (a) and (c)); here it is biased."""
    exact = gradient(layer_for(soft, soft.nx, soft.ny), z_soft)
    approx = gradient(layer_for(soft, soft.nx, soft.ny, backward="second_order"), z_soft)
    error = rel(approx, exact)
    assert 1e-3 < error < 1.0, error  # measured 0.05 (docs/bigrad.md)


# ----------------------------------------------------------------- (c) a graph program
def small_graph(n: int = 14, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (20,), generator=gen)
    dst = torch.randint(0, n, (20,), generator=gen)
    keep = src != dst
    ring = torch.arange(n)
    src, dst = torch.cat([src[keep], ring]), torch.cat([dst[keep], (ring + 1) % n])
    return dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=n)


@pytest.fixture(scope="module")
def graph_program():
    g = small_graph()
    gen = torch.Generator().manual_seed(3)
    n, c = g.num_nodes(), 3
    base = torch.randn(n, c, generator=gen, dtype=D)
    labels = torch.arange(n) % c
    return LaplacianProgram(g, base, labels, torch.arange(n) < 8, mu=0.7, alpha=0.5)


@pytest.mark.parametrize("per_node", [False, True], ids=["global_x", "per_node_x"])
def test_graph_program_matches_finite_differences(graph_program, per_node):
    g = graph_program.graph
    n, c = graph_program.base.shape
    layer = layer_for(graph_program, (n, c) if per_node else (c,), (n, c))
    gen = torch.Generator().manual_seed(4)
    z = 0.5 * torch.randn(g.num_edges(), generator=gen, dtype=D)
    directions = torch.randn(4, g.num_edges(), generator=gen, dtype=D)
    fd = central_differences(layer, z, 1e-5, directions)
    exact = gradient(layer, z)
    assert layer.last_forward.converged
    assert rel(directions @ exact, fd) < 1e-6
    # G is quadratic in (x, Y) (its Hessian depends on z only): dropping the third derivatives inside the
    # solve loses nothing, while the final product keeps d/dz (G_yy lam) -- which matters: without it the
    # per-node gradient is off by about 50% (a term mu d/dz <L(w) lam, w_y>; for a global x, w_y is constant
    # on nodes, in the Laplacian's kernel, and the term vanishes).
    approx = gradient(layer_for(graph_program, (n, c) if per_node else (c,), (n, c), backward="second_order"), z)
    assert rel(approx, exact) < 1e-9


def test_jacobi_preconditioning_keeps_the_gradient_and_cuts_iterations(graph_program):
    n, c = graph_program.base.shape
    z = 2.0 * torch.randn(graph_program.graph.num_edges(), generator=torch.Generator().manual_seed(6), dtype=D)
    plain = layer_for(graph_program, (n, c), (n, c))
    jacobi = layer_for(graph_program, (n, c), (n, c), precondition=graph_program.jacobi)
    assert rel(gradient(jacobi, z), gradient(plain, z)) < 1e-9
    assert jacobi.last_backward.residual <= 1e-13
    assert jacobi.last_backward.iterations < plain.last_backward.iterations
    assert jacobi.last_forward.products < plain.last_forward.products


def test_preconditioned_minres_on_an_indefinite_badly_scaled_system():
    gen = torch.Generator().manual_seed(8)
    n = 80
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=D))
    core = q @ torch.diag(torch.cat([torch.linspace(-3, -0.5, 30, dtype=D), torch.linspace(0.5, 4, 50, dtype=D)])) @ q.T
    scale = torch.logspace(-2, 2, n, dtype=D)  # A = S core S: MINRES suffers from S, M = S^2 undoes it
    A = scale[:, None] * core * scale[None, :]
    b = torch.randn(n, generator=gen, dtype=D)
    truth = torch.linalg.solve(A, b)
    (x,), info = preconditioned_minres(lambda v: (A @ v[0],), (b,), lambda r: (r[0] / scale ** 2,), tol=1e-12,
                                       maxiter=2000)
    assert info.converged and rel(x, truth) < 1e-8
    assert float((A @ x - b).norm() / b.norm()) == pytest.approx(info.residual, rel=1e-6)
    (_,), plain = minres(lambda v: (A @ v[0],), (b,), tol=1e-12, maxiter=2000)
    assert info.iterations < plain.iterations / 3
    (x,), same = preconditioned_minres(lambda v: (A @ v[0],), (b,), lambda r: r, tol=1e-12, maxiter=2000)
    assert abs(same.iterations - plain.iterations) <= 2  # the identity gives MINRES back


# ----------------------------------------------------------------- parameters, user solvers, batches
class Upper(nn.Module):
    """The quadratic program's upper level with a learnable scale on the y-misfit."""

    def __init__(self, quad):
        super().__init__()
        self.quad = quad
        self.scale = nn.Parameter(torch.tensor(1.0, dtype=D))  # the closed form holds at 1

    def forward(self, x, y, z):
        d = y - self.quad.t
        return (0.5 * x @ self.quad.R @ x + 0.5 * self.scale * d @ self.quad.S @ d + x @ self.quad.W @ y
                + z @ self.quad.K @ x)


def test_module_parameters_get_implicit_gradients(quad, z_quad):
    upper = Upper(quad)
    layer = BilevelLayer(upper, quad.lower, upper_solver=LevelSolver("newton", tol=1e-11), lower_solver="newton",
                         solve=TIGHT, x_init=torch.zeros(3, dtype=D), y_init=torch.zeros(4, dtype=D), warm_start=False)
    assert [p for p in layer.parameters()] == [upper.scale]
    z = z_quad.clone().requires_grad_(True)
    loss_of(*layer(z)).backward()
    h = 1e-5
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            upper.scale += sign * h
            values.append(loss_of(*layer(z_quad)))
            upper.scale -= sign * h
    fd = (values[0] - values[1]) / (2 * h)
    assert abs(float(upper.scale.grad) - float(fd)) < 1e-7 * abs(float(fd))
    assert rel(z.grad, closed_form_gradient(quad, z_quad)) < 1e-8


def test_user_solvers_give_the_same_gradient(quad, z_quad):
    P = quad.P

    def lower_solver(x, z, y0):
        return torch.linalg.solve(P, quad.C @ x + quad.Dm @ z + quad.e)

    def upper_solver(z, x0, y0):
        return quad.solution(z)

    truth = closed_form_gradient(quad, z_quad)
    for kwargs in ({"lower_solver": lower_solver, "upper_solver": LevelSolver("newton", tol=1e-11)},
                   {"upper_solver": upper_solver}):
        layer = BilevelLayer(quad.upper, quad.lower, solve=TIGHT, x_init=torch.zeros(3, dtype=D),
                             y_init=torch.zeros(4, dtype=D), **kwargs)
        assert rel(gradient(layer, z_quad), truth) < 1e-8
        assert layer.last_forward.upper_gradient < 1e-10 and layer.last_forward.lower_gradient < 1e-10


def test_robust_lq_closed_form_solver_and_batched_gradient():
    gen = torch.Generator().manual_seed(5)
    n, m, T, b = 3, 2, 4, 3
    A = 0.9 * torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=D))[0]
    drift = torch.randn(n, generator=gen, dtype=D)
    lq = RobustLQ(A, torch.randn(n, m, generator=gen, dtype=D), T, drift=drift)
    s0 = torch.randn(b, n, generator=gen, dtype=D)
    q = 0.5 + torch.rand(b, n, generator=gen, dtype=D)
    r = 0.1 + torch.rand(b, m, generator=gen, dtype=D)
    rho = 1.5 * lq.concavity_threshold(q)
    z = (s0, q, r, rho)
    u, d = lq.solve(z)
    state, rollout = s0, []  # the stacked states follow s_{t+1} = A s_t + B u_t + e + d_t
    for t in range(T):
        state = state @ A.T + u[:, t] @ lq.B.T + drift + d[:, t]
        rollout.append(state)
    assert torch.allclose(lq.states(s0, u, d), torch.cat(rollout, 1), atol=1e-12)
    assert torch.allclose(lq.worst_disturbance(s0, u, q, rho), d, atol=1e-12)  # d* is the adversary's best response
    generic = BilevelLayer(lq.upper, lq.lower, upper_solver=LevelSolver("newton", tol=1e-10), lower_solver="newton",
                           solve=TIGHT, x_init=torch.zeros(b, T, m, dtype=D), y_init=torch.zeros(b, T, n, dtype=D))
    closed = BilevelLayer(lq.upper, lq.lower, upper_solver=lq.solve, solve=TIGHT,
                          x_init=torch.zeros(b, T, m, dtype=D), y_init=torch.zeros(b, T, n, dtype=D))
    ug, dg = generic(z)
    assert rel(ug, u) < 1e-8 and rel(dg, d) < 1e-8
    assert closed.last_forward is None and generic.last_forward.converged

    def loss(z):
        u, d = closed(z)
        return (u ** 2).sum() + (d[..., 0] * torch.arange(T, dtype=D)).sum()

    leaves = [t.clone().requires_grad_(True) for t in z]
    grads = torch.autograd.grad(loss(tuple(leaves)), leaves)
    assert closed.last_forward.lower_gradient < 1e-10 and closed.last_forward.upper_gradient < 1e-10
    # autograd through the dense closed-form solve is an independent reference
    leaves2 = [t.clone().requires_grad_(True) for t in z]
    u2, d2 = lq.solve(tuple(leaves2))
    reference = torch.autograd.grad((u2 ** 2).sum() + (d2[..., 0] * torch.arange(T, dtype=D)).sum(), leaves2)
    for a, ref in zip(grads, reference):
        assert rel(a, ref) < 1e-8


# ----------------------------------------------------------------- reports, warnings, errors
def test_forward_report_and_non_convergence_warning(quad, z_quad):
    layer = BilevelLayer(quad.upper, quad.lower, upper_solver=LevelSolver("gradient", lr=0.01, max_steps=3),
                         x_init=torch.zeros(3, dtype=D), y_init=torch.zeros(4, dtype=D))
    with pytest.warns(BilevelSolveWarning, match="stopped at"):
        layer(z_quad)
    report = layer.last_forward
    assert report.upper_steps == 3 and not report.converged and report.upper_gradient > 1e-3
    assert report.lower_gradient < 1e-8 and report.adjoint.converged
    assert set(report.as_dict()) >= {"upper_gradient", "lower_gradient", "adjoint", "upper_steps", "lower_steps"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", BilevelSolveWarning)
        layer(z_quad)  # shown once per layer


def test_backward_residual_is_reported_and_warned(quad, z_quad):
    layer = BilevelLayer(quad.upper, quad.lower, upper_solver=LevelSolver("newton", tol=1e-11),
                         solve=SolveOptions("minres", tol=1e-12, maxiter=2, warn_residual=1e-6),
                         x_init=torch.zeros(3, dtype=D), y_init=torch.zeros(4, dtype=D))
    with pytest.warns(ImplicitSolveWarning, match="relative residual"):
        gradient(layer, z_quad)
    assert layer.last_backward.iterations == 2 and not layer.last_backward.converged


def test_no_gradient_when_nothing_requires_it(quad, z_quad):
    layer = layer_for(quad, 3, 4)
    x, y = layer(z_quad)
    assert not x.requires_grad and layer.last_backward is None
    with torch.no_grad():
        x, y = layer(z_quad.clone().requires_grad_(True))
    assert not x.requires_grad


@pytest.mark.parametrize("kwargs,match", [
    ({"solve": SolveOptions("cg")}, "MINRES|minres"),
    ({"backward": "implicit"}, "unknown backward"),
    ({"upper_solver": "bfgs"}, "unknown level solver"),
    ({"backward": "unrolled", "upper_solver": "newton"}, "upper Newton"),
    ({"backward": "unrolled", "adjoint": SolveOptions("minres")}, "adjoint"),
    ({"upper_solver": 3}, "LevelSolver"),
])
def test_configuration_errors(quad, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BilevelLayer(quad.upper, quad.lower, **kwargs)


def test_runtime_errors_are_instructive(quad, z_quad):
    with pytest.raises(ConfigError, match="starting points"):
        BilevelLayer(quad.upper, quad.lower)(z_quad)
    vector = BilevelLayer(lambda x, y, z: y, quad.lower, x_init=torch.zeros(3, dtype=D),
                          y_init=torch.zeros(4, dtype=D))
    with pytest.raises(ConfigError, match="scalar"):
        vector(z_quad)
    with pytest.raises(ConfigError, match="lr > 0"):
        LevelSolver("gradient", lr=0.0)


def test_float32_defaults_converge_without_running_to_max_steps():
    """Default tolerances follow the precision: in float32 the documented example converges in a
    few Newton steps (float64's 1e-8 is below float32 rounding: the lower loop ran 1000 steps per
    solve and the forward reported itself unconverged)."""
    layer = BilevelLayer(lambda x, y, z: ((y - z) ** 2).sum() + (x ** 2).sum(),
                         lambda x, y, z: ((y - x) ** 2).sum() + 0.1 * (y ** 2).sum(),
                         upper_solver="newton", lower_solver="newton", x_init=torch.zeros(3), y_init=torch.zeros(3))
    z = torch.tensor([0.3, -1.2, 2.0], requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, y = layer(z)
        (x.sum() + y.sum()).backward()
    report = layer.last_forward
    assert report.converged and report.upper_steps <= 5 and report.lower_steps <= 20
    assert layer.last_backward.converged
    z64 = z.detach().double().requires_grad_(True)
    layer64 = BilevelLayer(layer.upper, layer.lower, upper_solver="newton", x_init=torch.zeros(3, dtype=D),
                           y_init=torch.zeros(3, dtype=D))
    x64, y64 = layer64(z64)
    (x64.sum() + y64.sum()).backward()
    assert rel(z.grad.double(), z64.grad) < 1e-5


def test_a_stalled_level_loop_stops_and_reports_unconverged():
    solver = LevelSolver("gradient", lr=1e-3, tol=0.0, max_steps=10_000, patience=5)
    layer = BilevelLayer(lambda x, y, z: ((y - z) ** 2).sum() + (x ** 2).sum(),
                         lambda x, y, z: ((y - x) ** 2).sum(), upper_solver=LevelSolver("gradient", tol=0.0,
                                                                                          max_steps=3),
                         lower_solver=solver, x_init=torch.zeros(2, dtype=D), y_init=torch.zeros(2, dtype=D),
                         warn=False)
    layer(torch.ones(2, dtype=D))  # tol 0 is never reached: the lower loop stops when |G_y| stops improving
    assert layer.last_forward.lower_steps < 4 * 10_000 and not layer.last_forward.converged


def test_robust_control_recipe_trains_the_bilevel_layer_and_keeps_the_oracle_ordering():
    """A short run of recipes/robust_control.py: training lowers the bilevel layer's worst-case
    cost, the min-max oracle is no worse under the worst case than the nominal LQR plan."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "recipes" / "robust_control.py"
    spec = importlib.util.spec_from_file_location("robust_control_recipe", path)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    rows = recipe.run(horizon=5, seed=0, steps=8, lr=0.03, n_train=16, n_test=64)["rows"]
    bilevel = rows["bilevel layer"]
    assert bilevel["worst"] < bilevel["initial_worst"]
    assert rows["min-max plan, true weights (oracle)"]["worst"] <= rows["LQR plan"]["worst"]
