"""A continuous bilevel program as a differentiable layer (BiGrad's continuous case, our interpretation).

Given parameters ``z``, the layer returns ``(x*, y*)`` with ::

    x* in argmin_x  f(x, z) := F(x, y*(x, z), z)          (upper level)
    y*(x, z) = argmin_y  G(x, y, z)                       (lower level, strongly convex in y)

**Optimality system.** ``y*`` zeroes ``G_y``. The upper condition is the *total* derivative
``df/dx = F_x + (dy*/dx)^T F_y`` with ``dy*/dx = -G_yy^-1 G_yx``. Introducing the adjoint
``lam = G_yy^-1 F_y`` it reads ``F_x - G_xy lam = 0``, so ``(x*, y*, lam*)`` is a stationary
point of the Lagrangian ::

    L(x, y, lam, z) = F(x, y, z) - <lam, G_y(x, y, z)>,

    dL/dx   = F_x - G_xy lam      (total upper gradient)
    dL/dy   = F_y - G_yy lam      (adjoint equation)
    dL/dlam = -G_y                (lower optimality).

This is the stacked system ``H = [df/dx; G_y] = 0`` with ``lam`` made a variable: eliminating
``lam`` and ``y`` from ``dL = 0`` gives back the total derivative. Its Jacobian in
``u = (x, y, lam)`` is the Hessian ``K = d^2 L / du^2``: **symmetric** (a saddle-point matrix,
indefinite), so the backward solves it with MINRES. ``K`` is invertible iff ``G_yy`` and the
Hessian of the total upper function ``f`` are (``f``'s Hessian is the Schur complement of the
``(y, lam)`` block). The implicit function theorem then gives, for a loss ``ell(x*, y*)``, ::

    K w = (dell/dx, dell/dy, 0),        dell/dz = -(d/dz dL/du)^T w.

**Third-order terms.** ``d^2 L`` contains ``d^2/du^2 <lam, G_y>``: third derivatives of ``G``
contracted with ``lam`` (the derivative of ``dy*/dx`` the reduced system needs), and
``d/dz dL/du`` contains ``d/dz (G_yy lam)`` (how ``z`` moves the adjoint). With
``backward="exact"`` (default) autograd forms all of them: each product ``K w`` is a
Hessian-vector product of ``L``, i.e. a third backward pass through ``G``.
``backward="second_order"`` drops the third derivatives of ``G`` in ``(x, y)`` inside the
solve (``K``'s block ``-d^2/du^2 <lam, G_y>`` over ``(x, y)``), so each of the solve's products
costs two backward passes; the single final product with ``d/dz dL/du`` stays exact. It is
exact when ``G`` is quadratic in ``(x, y)`` -- whatever its dependence on ``z`` (the graph and
control programs of :mod:`.programs`) -- and an approximation otherwise, whose error the tests
measure. ``backward="unrolled"`` back-propagates through the forward loops instead (the
reference the benchmark compares against).

Parameters reach the backward through ``z`` (any tensor or tuple/dict of tensors) and through
``upper``/``lower`` when they are ``nn.Module`` instances. Tensors captured in closures are constants.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils import _pytree as pytree

from ..errors import ConfigError
from ..numerics.adam import adam_update
from ..numerics.implicit_diff import ResidualWarner, SolveOptions, attach, implicit_vjp, residual_advice
from ..numerics.linalg import SolveInfo, conjugate_gradient, minres

#: ``objective(x, y, z) -> scalar``: ``upper`` is F, ``lower`` is G.
Objective = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
#: A user lower solver ``(x, z, y0) -> y`` (detached inputs).
LowerSolverFn = Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]
#: A user bilevel solver ``(z, x0, y0) -> (x, y)`` (detached inputs).
UpperSolverFn = Callable[[Any, torch.Tensor, torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]
#: ``(x, y, z) -> (v -> M^-1 v)``: an SPD approximation ``M`` of ``G_yy`` at ``(x, y, z)``, inverted.
Preconditioner = Callable[[torch.Tensor, torch.Tensor, Any], Callable[[torch.Tensor], torch.Tensor]]

METHODS = ("gradient", "adam", "newton")
BACKWARDS = ("exact", "second_order", "unrolled")


class BilevelSolveWarning(RuntimeWarning):
    """The forward solve of a bilevel layer stopped before reaching its stationarity tolerance.

    A warning, shown once per layer (``warn=False`` silences it): the outputs and their
    gradients are then inexact. :attr:`BilevelLayer.last_forward` says how far from stationarity
    the solve stopped.

    Example:
        >>> import warnings
        >>> import torch
        >>> from dgl_bilevel.layers import BilevelLayer, BilevelSolveWarning, LevelSolver
        >>> layer = BilevelLayer(lambda x, y, z: ((y - z) ** 2).sum() + (x ** 2).sum(),
        ...                      lambda x, y, z: ((y - x) ** 2).sum() + 0.1 * (y ** 2).sum(),
        ...                      upper_solver=LevelSolver("gradient", max_steps=3),  # too few steps
        ...                      x_init=torch.zeros(3, dtype=torch.float64), y_init=torch.zeros(3, dtype=torch.float64))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     x, y = layer(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
        >>> [w.category.__name__ for w in caught], layer.last_forward.converged
        (['BilevelSolveWarning'], False)
    """


@dataclass(frozen=True)
class LevelSolver:
    """A built-in loop for one level.

    Args:
        method: ``"gradient"`` (fixed step ``lr``), ``"adam"`` (step ``lr``, ``betas``, ``eps``)
            or ``"newton"``. Lower level: Newton-CG on ``G_yy`` with Armijo backtracking.
            Upper level: Newton on the total function ``f``, its step taken from the
            saddle-point system ``K`` (MINRES), with backtracking on ``f`` (each trial re-solves
            the lower level); a non-descent direction falls back to ``-lr * df/dx``.
        tol: stop when the level's gradient norm (``|G_y|``, or ``|df/dx|``) is at most ``tol``;
            ``None`` (default): 1e-8 in float64, 1e-4 in float32 (what its rounding allows on
            problems of unit scale), 1e-2 in lower precisions.
        max_steps: updates at most (the level's gradient is evaluated once more at the end).
        patience: a loop whose gradient norm has not improved for ``patience`` updates stops early
            (stalled at rounding level) and reports itself unconverged; ``None``: 10 updates
            for Newton (each of its steps must improve), 500 for gradient and Adam (which may
            oscillate for a while).
        lr: the step of ``"gradient"`` and ``"adam"``; Newton's fallback step along ``-gradient``.
        betas, eps: Adam's moment decay rates and denominator offset.
        cg_tol, cg_maxiter: the Newton systems' relative residual (``None``: 1e-10 in float64,
            1e-5 in float32) and iteration cap.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown ``method`` or an option out of range.

    Example:
        >>> import torch
        >>> from dgl_bilevel.layers import BilevelLayer, LevelSolver
        >>> lower = LevelSolver("gradient", lr=0.4)  # G_yy = 2.2 I below: each step shrinks the error 8-fold
        >>> lower.for_dtype(torch.float64).tol, lower.for_dtype(torch.float32).tol  # tol=None follows the precision
        (1e-08, 0.0001)
        >>> layer = BilevelLayer(lambda x, y, z: ((y - z) ** 2).sum() + (x ** 2).sum(),
        ...                      lambda x, y, z: ((y - x) ** 2).sum() + 0.1 * (y ** 2).sum(),
        ...                      upper_solver=LevelSolver("gradient", lr=0.27), lower_solver=lower,  # f'' = 3.65
        ...                      x_init=torch.zeros(3, dtype=torch.float64), y_init=torch.zeros(3, dtype=torch.float64))
        >>> x, y = layer(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
        >>> layer.last_forward.converged, layer.last_forward.upper_steps < 10, layer.last_forward.lower_steps > 0
        (True, True, True)
        >>> bool(torch.allclose(x, torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) * 1.1 / 2.21))
        True
        >>> from dgl_bilevel.errors import ConfigError
        >>> try:
        ...     LevelSolver("lbfgs")
        ... except ConfigError as error:
        ...     print(str(error).split(";")[0])
        unknown level solver 'lbfgs'
    """

    method: str = "gradient"
    lr: float = 0.1
    tol: Optional[float] = None
    max_steps: int = 1000
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    cg_tol: Optional[float] = None
    cg_maxiter: int = 500
    patience: Optional[int] = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown level solver {self.method!r}; choose from {METHODS} or pass a callable")
        if not (self.lr > 0 and (self.tol is None or self.tol >= 0) and self.max_steps >= 0
                and (self.cg_tol is None or self.cg_tol >= 0) and self.cg_maxiter >= 1 and (self.patience is None or self.patience >= 1)
                and self.eps > 0 and len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)):
            raise ConfigError("a level solver needs lr > 0, tol >= 0, max_steps >= 0, cg_tol >= 0, cg_maxiter >= 1, "
                              f"patience >= 1, eps > 0 and two betas in [0, 1); got {self}")

    def for_dtype(self, dtype: torch.dtype) -> "LevelSolver":
        """This solver with the tolerances left at ``None`` set for ``dtype``."""
        tol = self.tol if self.tol is not None else _by_precision(dtype, 1e-8, 1e-4, 1e-2)
        cg_tol = self.cg_tol if self.cg_tol is not None else _by_precision(dtype, 1e-10, 1e-5, 1e-3)
        patience = self.patience if self.patience is not None else (10 if self.method == "newton" else 500)
        return replace(self, tol=tol, cg_tol=cg_tol, patience=patience)


def _by_precision(dtype: torch.dtype, double: float, single: float, lower: float) -> float:
    if dtype == torch.float64:
        return double
    return single if dtype == torch.float32 else lower


class _Stall:
    """Counts updates since a loop's gradient norm last improved (rounding-level stagnation)."""

    def __init__(self, patience: int) -> None:
        self.patience, self.best, self.since = patience, math.inf, 0

    def __call__(self, gnorm: float) -> bool:
        if gnorm < 0.999 * self.best:
            self.best, self.since = gnorm, 0
        else:
            self.since += 1
        return self.since >= self.patience


@dataclass
class ForwardReport:
    """How far from stationarity the forward solve ended.

    ``upper_gradient`` is ``|df/dx|`` (the total derivative), ``lower_gradient`` is ``|G_y|``,
    both at the returned ``(x, y)``; ``adjoint`` is the solve of ``G_yy lam = F_y`` behind
    ``df/dx``. ``lower_steps`` sums the lower loop's updates over every lower solve;
    ``linear_solves`` and ``products`` count the forward's Krylov solves (Newton steps and
    adjoints) and their matrix-vector products, the unit the backward's cost compares to.
    ``upper_steps`` counts the upper loop's updates, ``upper_value`` is ``F`` at the returned
    point and ``converged`` says whether both gradients reached their solvers' ``tol``.
    :attr:`BilevelLayer.last_forward` holds the latest one.

    Example:
        >>> import torch
        >>> from dgl_bilevel.layers import BilevelLayer
        >>> layer = BilevelLayer(lambda x, y, z: ((y - z) ** 2).sum() + (x ** 2).sum(),
        ...                      lambda x, y, z: ((y - x) ** 2).sum() + 0.1 * (y ** 2).sum(), upper_solver="newton",
        ...                      x_init=torch.zeros(3, dtype=torch.float64), y_init=torch.zeros(3, dtype=torch.float64))
        >>> x, y = layer(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
        >>> report = layer.last_forward
        >>> report.converged, report.upper_gradient < 1e-8, report.lower_gradient < 1e-8
        (True, True, True)
        >>> round(report.upper_value, 4)  # closed form: |z|^2 (1.21^2 + 1.1^2) / 2.21^2
        2.8744
        >>> sorted(report.as_dict()["adjoint"])
        ['converged', 'iterations', 'residual']
    """

    upper_steps: int
    lower_steps: int
    upper_gradient: float
    lower_gradient: float
    adjoint: SolveInfo
    upper_value: float
    converged: bool
    linear_solves: int = 0
    products: int = 0

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["adjoint"] = self.adjoint.as_dict()
        return out


def _zeros_for_none(grads: Sequence[Optional[torch.Tensor]], like: Sequence[torch.Tensor]) -> tuple:
    return tuple(torch.zeros_like(t) if g is None else g for g, t in zip(grads, like))


def _vjp(values: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], cotangents: Sequence[torch.Tensor],
         create_graph: bool = False) -> tuple:
    """``sum_i <cotangents[i], d values[i] / d inputs>``, zeros where nothing depends on an input."""
    live = [i for i, v in enumerate(values) if v.requires_grad]
    if not live or not inputs:
        return tuple(torch.zeros_like(t) for t in inputs)
    grads = torch.autograd.grad([values[i] for i in live], list(inputs), grad_outputs=[cotangents[i] for i in live],
                                retain_graph=True, create_graph=create_graph, allow_unused=True)
    return _zeros_for_none(grads, inputs)


def _grad(value: torch.Tensor, inputs: Sequence[torch.Tensor], create_graph: bool = False) -> tuple:
    if not value.requires_grad:
        return tuple(torch.zeros_like(t) for t in inputs)
    grads = torch.autograd.grad(value, list(inputs), create_graph=create_graph, retain_graph=True, allow_unused=True)
    return _zeros_for_none(grads, inputs)


def _scalar(value: Any, which: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ConfigError(f"the {which} objective must return a scalar tensor (sum a batch of problems); got "
                          f"{type(value).__name__}{'' if not isinstance(value, torch.Tensor) else tuple(value.shape)}")
    return value.reshape(())


def _norm(t: torch.Tensor) -> float:
    return float(t.detach().norm())


class _Program:
    """``F``, ``G`` and their derivatives at fixed ``z``.

    ``differentiable=False``: every evaluation starts from detached leaves and returns detached
    results (the implicit backward's forward). ``True``: graphs are kept through every step
    (unrolling).
    """

    def __init__(self, upper: Objective, lower: Objective, z: Any, adjoint: SolveOptions, differentiable: bool,
                 precondition: Optional[Preconditioner] = None) -> None:
        self.upper, self.lower, self.z, self.adjoint, self.diff = upper, lower, z, adjoint, differentiable
        self.precondition = precondition
        self.lower_steps = self.solves = self.products = 0

    def count(self, info: SolveInfo) -> None:
        self.solves += 1
        self.products += info.iterations

    def leaf(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` as an input of partial derivatives. When unrolling, a fresh view: a gradient with
        respect to it follows only its own uses, not the other paths through the iterates' history
        (``x_k`` depends on ``y_{k-1}``), which would give total derivatives and blow the graph up."""
        if self.diff and t.requires_grad:
            return t.view_as(t)
        return t.detach().requires_grad_(True)

    def out(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.diff else t.detach()

    def F(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _scalar(self.upper(x, y, self.z), "upper")

    def G(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _scalar(self.lower(x, y, self.z), "lower")

    # ---------------------------------------------------------------- lower level
    def lower_gradient(self, x: torch.Tensor, y: torch.Tensor, create_graph: bool) -> tuple:
        x, y = self.leaf(x), self.leaf(y)
        with torch.enable_grad():
            value = self.G(x, y)
            (gy,) = _grad(value, (y,), create_graph=create_graph)
        return x, y, value, gy

    def solve_lower(self, x: torch.Tensor, y: torch.Tensor, solver: "LevelSolver | LowerSolverFn") -> tuple:
        """``(y, |G_y| at y)``; ``x`` is held fixed."""
        if callable(solver) and not isinstance(solver, LevelSolver):
            shape = y.shape
            y = solver(x.detach(), _detach_tree(self.z), y.detach())
            if not isinstance(y, torch.Tensor) or y.shape != shape:
                raise ConfigError(f"a lower solver must return one tensor shaped like y0 {tuple(shape)}")
            _, _, _, gy = self.lower_gradient(x, y, create_graph=False)
            return y.detach(), _norm(gy)
        m = v = None
        stalled = _Stall(solver.patience)
        for step in range(solver.max_steps + 1):
            newton = solver.method == "newton"
            xl, yl, value, gy = self.lower_gradient(x, y, create_graph=self.diff or newton)
            gnorm = _norm(gy)
            if gnorm <= solver.tol or step == solver.max_steps or not math.isfinite(gnorm) or stalled(gnorm):
                return self.out(yl), gnorm
            self.lower_steps += 1
            if solver.method == "gradient":
                y = yl - solver.lr * gy
            elif solver.method == "adam":
                y, m, v = _adam(yl, gy, m, v, step + 1, solver)
            else:
                y = self._newton_lower(xl, yl, value, gy, solver)

    def _newton_lower(self, x, y, value, gy, solver: LevelSolver) -> torch.Tensor:
        rhs = gy if self.diff else gy.detach()
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
            (d,), info = conjugate_gradient(lambda w: _vjp([gy], [y], w, create_graph=self.diff), (-rhs,),
                                            tol=solver.cg_tol, maxiter=solver.cg_maxiter,
                                            precondition=self.y_preconditioner(x, y))
        self.count(info)
        slope = float((gy.detach() * d.detach()).sum())
        if not slope < 0:  # G_yy not positive definite along d: steepest descent instead
            d, slope = -solver.lr * rhs, -solver.lr * _norm(gy) ** 2
        t = _backtrack(lambda s: self.G(x.detach(), (y + s * d).detach()), float(value.detach()), slope)
        return y + t * d

    # ---------------------------------------------------------------- upper level
    def y_preconditioner(self, x: torch.Tensor, y: torch.Tensor) -> Optional[Callable[[tuple], tuple]]:
        """The user's ``M^-1`` at ``(x, y)`` on one-tensor tuples (``None`` without one)."""
        if self.precondition is None:
            return None
        apply = self.precondition(x.detach(), y.detach(), _detach_tree(self.z))
        return lambda r: (apply(r[0]),)

    def total_gradient(self, x: torch.Tensor, y: torch.Tensor, lam0: Optional[torch.Tensor]) -> tuple:
        """``(F, df/dx, lam, adjoint info, x leaf, y leaf)`` at ``(x, y)``; ``lam`` solves ``G_yy lam = F_y``."""
        x, y = self.leaf(x), self.leaf(y)
        with torch.enable_grad():
            value = self.F(x, y)
            fx, fy = _grad(value, (x, y), create_graph=self.diff)
            (gy,) = _grad(self.G(x, y), (y,), create_graph=True)
            start = None if lam0 is None or lam0.shape != y.shape else (lam0 if self.diff else lam0.detach(),)
            with warnings.catch_warnings():  # the solver reads its residuals as floats, also when unrolled
                warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
                matvec = lambda w: _vjp([gy], [y], w, create_graph=self.diff)  # noqa: E731
                pre = self.y_preconditioner(x, y)
                if pre is not None and self.adjoint.solve == "cg" and not self.adjoint.damping:
                    (lam,), info = conjugate_gradient(matvec, (fy,), x0=start, tol=self.adjoint.tol,
                                                      maxiter=self.adjoint.maxiter, precondition=pre)
                else:
                    (lam,), info = self.adjoint.run(matvec, (fy,), start)
            (gxy_lam,) = _vjp([gy], [x], (lam,), create_graph=self.diff)
            g = fx - gxy_lam
        self.count(info)
        return self.out(value), self.out(g), self.out(lam), info, x, y


def _adam(p: torch.Tensor, g: torch.Tensor, m, v, t: int, s: LevelSolver) -> tuple:
    """One step of the package's Adam (:func:`~dgl_bilevel.numerics.adam.adam_update`) from moments
    ``m``, ``v`` (None: zeros) at step ``t``; bias corrections in Python floats, no ``eps_root``."""
    b1, b2 = s.betas
    m = torch.zeros_like(g) if m is None else m
    v = torch.zeros_like(g) if v is None else v
    update, m, v, _ = adam_update(g, m, v, 1 - b1 ** t, 1 - b2 ** t, lr=s.lr, b1=b1, b2=b2, eps=s.eps)
    return p + update, m, v


def _backtrack(evaluate: Callable[[float], torch.Tensor], value: float, slope: float, tries: int = 40) -> float:
    """Largest ``t`` in 1, 1/2, ... with Armijo decrease (a round-off slack keeps converged steps)."""
    slack = 64 * torch.finfo(torch.float64).eps * (1.0 + abs(value))
    t = 1.0
    with torch.no_grad():
        for _ in range(tries):
            trial = float(evaluate(t))
            if math.isfinite(trial) and trial - value <= 1e-4 * t * slope + slack:
                return t
            t *= 0.5
    return t


def _detach_tree(tree: Any) -> Any:
    return pytree.tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, tree)


def _differentiable(leaf: Any) -> bool:
    return isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.requires_grad


def preconditioned_minres(matvec: Callable[[tuple], tuple], rhs: tuple, precondition: Callable[[tuple], tuple], *,
                          tol: float = 1e-8, maxiter: int = 500) -> tuple[tuple, SolveInfo]:
    """Solve ``A x = rhs`` (``A`` symmetric, possibly indefinite) by MINRES preconditioned with an SPD ``M``.

    ``precondition`` applies ``M^-1``. The package's one MINRES,
    :func:`~dgl_bilevel.numerics.linalg.minres` with its ``precondition`` argument, under the
    name and defaults this module has always exported; the reported residual is the Euclidean
    one and ``iterations`` counts the Lanczos steps.
    """
    return minres(matvec, rhs, tol=tol, maxiter=maxiter, precondition=precondition)


class _Products:
    """Products with the saddle-point matrix ``K`` and with ``(d/dtheta dL/du)^T`` at ``u = (x, y, lam)``."""

    def __init__(self, upper: Objective, lower: Objective, z: Any, x: torch.Tensor, y: torch.Tensor,
                 lam: torch.Tensor, theta: Sequence[torch.Tensor], mode: str) -> None:
        self.u = tuple(t.detach().requires_grad_(True) for t in (x, y, lam))
        self.theta, self.mode = list(theta), mode
        xs, ys, ls = self.u
        with torch.enable_grad():
            f = _scalar(upper(xs, ys, z), "upper")
            g = _scalar(lower(xs, ys, z), "lower")
            if mode == "exact":
                (gy,) = _grad(g, (ys,), create_graph=True)
            else:
                self.f_grads = _grad(f, (xs, ys), create_graph=True)
                self.g_grads = _grad(g, (xs, ys), create_graph=True)
                gy = self.g_grads[1]
            lagrangian = f - (gy * ls).sum()
            self.values = _grad(lagrangian, self.u, create_graph=True)

    def matvec(self, w: tuple) -> tuple:
        xs, ys, _ = self.u
        if self.mode == "exact":
            return _vjp(self.values, self.u, w)
        wx, wy, wl = w
        fx, fy = _vjp(self.f_grads, (xs, ys), (wx, wy))
        gxl, gyl = _vjp(self.g_grads[1:], (xs, ys), (wl,))
        (gl,) = _vjp(self.g_grads, (ys,), (wx, wy))
        return fx - gxl, fy - gyl, -gl

    def theta_vjp(self, w: tuple) -> tuple:
        return _vjp(self.values, self.theta, w)  # exact in both modes: one product per backward


class BilevelLayer(nn.Module):
    """``(x*, y*) = layer(z)``: a bilevel program solved in the forward, differentiated in the backward.

    Args:
        upper: ``F(x, y, z) -> scalar``, minimised in ``x`` through the lower solution.
        lower: ``G(x, y, z) -> scalar``, minimised in ``y``; must be strongly convex in ``y``.
            Batches of independent problems: return the sum of their objectives.
        upper_solver: a :class:`LevelSolver`, a method name, or ``(z, x0, y0) -> (x, y)``
            solving the whole program (the layer then only reports its stationarity).
        lower_solver: a :class:`LevelSolver`, a method name, or ``(x, z, y0) -> y``.
        backward: ``"exact"`` (the module docstring's saddle-point system with its third-order
            terms), ``"second_order"`` (the same without ``G``'s third derivatives in ``(x, y)``
            inside the solve: cheaper, exact when ``G`` is quadratic in ``(x, y)``, an
            approximation otherwise) or ``"unrolled"`` (back-propagation through the forward loops).
        solve: the backward's linear solve (:class:`SolveOptions`; default MINRES, tol 1e-8 in
            float64 and 1e-5 in float32, 500 products). ``K`` is indefinite: ``"cg"`` is refused.
        adjoint: the solve of ``G_yy lam = F_y`` (default CG, tol 1e-12 in float64 and 1e-6 in
            float32, 500 products; CG or Neumann when unrolled, which back-propagates through it).
        x_init, y_init: starting points when ``forward`` gets none (shapes define ``x``, ``y``).
        precondition: ``(x, y, z) -> (v -> M^-1 v)`` with ``M`` an SPD approximation of ``G_yy``
            (e.g. its diagonal, :meth:`LaplacianProgram.jacobi`): preconditions the lower Newton
            and adjoint CG solves and, as ``diag(I, M, M)``, the backward's MINRES, whose
            iteration count grows with the condition number of ``G_yy`` (not its square root).
            It changes no converged solution; when unrolling it is held constant.
        warm_start: start each forward from the previous solution when shapes match.
        warn: warn (once per layer) when the forward ends above its tolerances or the
            backward's solve above ``solve.warn_residual``.

    ``last_forward`` (:class:`ForwardReport`) and ``last_backward`` (:class:`SolveInfo`) hold
    the latest solves.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``upper`` or ``lower`` not callable, an unknown
            ``backward`` or solver, ``solve="cg"`` (the backward system is indefinite), or a
            combination ``backward="unrolled"`` cannot go through; from :meth:`forward`: no
            starting points, or objectives that do not return a scalar.

    Example:
        Here ``y*(x) = x / 1.1`` and ``x*(z) = 1.1 z / 2.21``, so ``dx*/dz = 1.1 / 2.21 I``:

        >>> import torch
        >>> from dgl_bilevel.layers import BilevelLayer
        >>> layer = BilevelLayer(lambda x, y, z: ((y - z) ** 2).sum() + (x ** 2).sum(),
        ...                      lambda x, y, z: ((y - x) ** 2).sum() + 0.1 * (y ** 2).sum(), upper_solver="newton",
        ...                      x_init=torch.zeros(3, dtype=torch.float64), y_init=torch.zeros(3, dtype=torch.float64))
        >>> z = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
        >>> x, y = layer(z)
        >>> bool(torch.allclose(x, 1.1 * z / 2.21)), bool(torch.allclose(y, z / 2.21))
        (True, True)
        >>> (grad,) = torch.autograd.grad(x.sum(), z)  # the implicit backward (MINRES on the saddle point)
        >>> [round(g, 6) for g in grad.tolist()], layer.last_backward.converged
        ([0.497738, 0.497738, 0.497738], True)
    """

    def __init__(self, upper: Objective, lower: Objective, *,
                 upper_solver: Union[LevelSolver, str, UpperSolverFn] = "gradient",
                 lower_solver: Union[LevelSolver, str, LowerSolverFn] = "newton",
                 backward: str = "exact", solve: Optional[SolveOptions] = None, adjoint: Optional[SolveOptions] = None,
                 x_init: Optional[torch.Tensor] = None, y_init: Optional[torch.Tensor] = None,
                 precondition: Optional[Preconditioner] = None, warm_start: bool = True, warn: bool = True) -> None:
        super().__init__()
        if not callable(upper) or not callable(lower):
            raise ConfigError("BilevelLayer(upper, lower): both must be callables objective(x, y, z) -> scalar")
        if backward not in BACKWARDS:
            raise ConfigError(f"unknown backward {backward!r}; choose from {BACKWARDS}")
        self.upper, self.lower = upper, lower  # nn.Modules register here, so their parameters are the layer's
        self.upper_solver = LevelSolver(upper_solver) if isinstance(upper_solver, str) else upper_solver
        self.lower_solver = LevelSolver(lower_solver) if isinstance(lower_solver, str) else lower_solver
        for which, s in (("upper_solver", self.upper_solver), ("lower_solver", self.lower_solver)):
            if not isinstance(s, LevelSolver) and not callable(s):
                raise ConfigError(f"{which} must be a LevelSolver, one of {METHODS}, or a callable")
        self.backward_mode = backward
        self._solve_given, self._adjoint_given = solve, adjoint
        self.solve = solve if solve is not None else SolveOptions("minres", tol=1e-8, maxiter=500)
        self.adjoint = adjoint if adjoint is not None else SolveOptions("cg", tol=1e-12, maxiter=500)
        self._levels: tuple = (self.upper_solver, self.lower_solver)
        if self.solve.solve == "cg":
            raise ConfigError("the bilevel layer's backward system is a symmetric saddle-point matrix (indefinite): "
                              "CG can break down on it; use solve='minres' (default) or 'gmres'")
        if backward == "unrolled":
            if not (self.adjoint.solve in ("cg", "neumann")):
                raise ConfigError("backward='unrolled' back-propagates through the adjoint solve: use adjoint "
                                  "solve 'cg' or 'neumann' (MINRES and GMRES leave autograd)")
            if isinstance(self.upper_solver, LevelSolver) and self.upper_solver.method == "newton":
                raise ConfigError("backward='unrolled' cannot go through the upper Newton solver (its MINRES leaves "
                                  "autograd); use upper_solver 'gradient' or 'adam'")
            if not isinstance(self.upper_solver, LevelSolver) or not isinstance(self.lower_solver, LevelSolver):
                raise ConfigError("backward='unrolled' needs the built-in level solvers (a user solver's steps are "
                                  "not on the autograd graph); use backward='exact'")
        self.x_init = None if x_init is None else x_init.detach()
        self.y_init = None if y_init is None else y_init.detach()
        self.warm_start, self.warn = warm_start, warn
        if precondition is not None and not callable(precondition):
            raise ConfigError("precondition must be a callable (x, y, z) -> (v -> M^-1 v)")
        self.precondition = precondition
        self.last_forward: Optional[ForwardReport] = None
        self.last_backward: Optional[SolveInfo] = None
        self._previous: Optional[tuple] = None
        self._forward_warned = False
        self._warner = ResidualWarner(f"BilevelLayer(backward={backward!r}, solve={self.solve.solve!r})")

    # ---------------------------------------------------------------- forward
    def _start(self, x0: Optional[torch.Tensor], y0: Optional[torch.Tensor]) -> tuple:
        previous = self._previous if self.warm_start else None
        if x0 is None:
            x0 = previous[0] if previous is not None and (self.x_init is None or previous[0].shape == self.x_init.shape) \
                else self.x_init
        if y0 is None:
            y0 = previous[1] if previous is not None and (self.y_init is None or previous[1].shape == self.y_init.shape) \
                else self.y_init
        if x0 is None or y0 is None:
            raise ConfigError("the bilevel layer needs starting points: pass x0= and y0= to forward, or x_init= and "
                              "y_init= to BilevelLayer (their shapes define x and y)")
        if not isinstance(x0, torch.Tensor) or not isinstance(y0, torch.Tensor):
            raise ConfigError("x and y must each be one tensor (flatten several variables into one)")
        return x0.detach(), y0.detach()

    def solve_program(self, program: _Program, x: torch.Tensor, y: torch.Tensor) -> tuple:
        """Run the forward loops: ``(x, y, lam, report)``."""
        solver = self._levels[0]
        steps = 0
        if not isinstance(solver, LevelSolver):
            out = solver(_detach_tree(program.z), x.detach(), y.detach())
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise ConfigError("a user upper solver must return (x, y)")
            x, y = out[0].detach(), out[1].detach()
            _, gnorm = program.solve_lower(x, y, LevelSolver(max_steps=0).for_dtype(y.dtype))
            value, g, lam, info, _, _ = program.total_gradient(x, y, None)
            return x, y, lam, self._report(0, program, g, gnorm, info, value, solver)
        lam = m = v = None
        stalled = _Stall(solver.patience)
        for step in range(solver.max_steps + 1):
            y, gnorm = program.solve_lower(x, y, self._levels[1])
            value, g, lam, info, xl, yl = program.total_gradient(x, y, lam)
            x = xl
            gn = _norm(g)
            if gn <= solver.tol or step == solver.max_steps or not math.isfinite(gn) or stalled(gn):
                break
            steps += 1
            if solver.method == "gradient":
                x = x - solver.lr * g
            elif solver.method == "adam":
                x, m, v = _adam(x, g, m, v, step + 1, solver)
            else:
                x, y = self._newton_upper(program, x, y, lam, g, float(value))
        return program.out(x), program.out(y), lam, self._report(steps, program, g, gnorm, info, value, solver)

    def _newton_upper(self, program: _Program, x, y, lam, g, value: float) -> tuple:
        s = self._levels[0]
        products = _Products(program.upper, program.lower, program.z, x, y, lam, [], "exact")
        rhs = (-g.detach(), torch.zeros_like(y), torch.zeros_like(lam))
        (dx, dy, _), info = minres(products.matvec, rhs, tol=s.cg_tol, maxiter=s.cg_maxiter,
                                   precondition=self._block_preconditioner(program, x, y))
        program.count(info)
        slope = float((g * dx).sum())
        if not slope < 0:  # f not convex along dx: a gradient step
            dx, dy, slope = -s.lr * g.detach(), torch.zeros_like(y), -s.lr * _norm(g) ** 2
        x, y = x.detach(), y.detach()
        trials: dict = {}

        def f_at(t: float) -> torch.Tensor:
            yt, _ = program.solve_lower(x + t * dx, y + t * dy, self._levels[1])
            trials[t] = yt
            return program.F(x + t * dx, yt)

        t = _backtrack(f_at, value, slope, tries=30)
        return x + t * dx, trials.get(t, y)

    def _block_preconditioner(self, program: _Program, x: torch.Tensor, y: torch.Tensor):
        """``diag(I, M^-1, M^-1)`` on ``(x, y, lam)``, or ``None`` without a preconditioner."""
        pre = program.y_preconditioner(x, y)
        if pre is None:
            return None
        return lambda r: (r[0], pre((r[1],))[0], pre((r[2],))[0])

    def _report(self, steps: int, program: _Program, g: torch.Tensor, gnorm: float, info: SolveInfo,
                value: torch.Tensor, solver: Any) -> ForwardReport:
        upper_tol = solver.tol if isinstance(solver, LevelSolver) else math.inf
        lower = self._levels[1]
        lower_tol = lower.tol if isinstance(lower, LevelSolver) else math.inf
        gn = _norm(g)
        converged = gn <= upper_tol and gnorm <= lower_tol
        return ForwardReport(steps, program.lower_steps, gn, gnorm, info, float(value), converged, program.solves,
                             program.products)

    def _for_dtype(self, dtype: torch.dtype) -> None:
        """Tolerances left at their defaults follow the precision of ``y`` (float64: the values in
        the docstrings; float32: what its rounding allows, so that defaults converge)."""
        self._levels = tuple(s.for_dtype(dtype) if isinstance(s, LevelSolver) else s
                             for s in (self.upper_solver, self.lower_solver))
        if self._solve_given is None:
            self.solve = SolveOptions("minres", tol=_by_precision(dtype, 1e-8, 1e-5, 1e-3), maxiter=500)
        if self._adjoint_given is None:
            self.adjoint = SolveOptions("cg", tol=_by_precision(dtype, 1e-12, 1e-6, 1e-3), maxiter=500)

    def forward(self, z: Any, x0: Optional[torch.Tensor] = None, y0: Optional[torch.Tensor] = None) -> tuple:
        """Solve the program at ``z``; returns ``(x*, y*)``, differentiable in ``z`` (and the
        parameters of ``upper``/``lower`` when they are modules) as ``backward`` says."""
        x, y = self._start(x0, y0)
        self._for_dtype(y.dtype)
        unrolled = self.backward_mode == "unrolled" and torch.is_grad_enabled()
        if unrolled:
            program = _Program(self.upper, self.lower, z, self.adjoint, differentiable=True,
                               precondition=self.precondition)
            x, y, lam, report = self.solve_program(program, x, y)
        else:
            program = _Program(self.upper, self.lower, _detach_tree(z), self.adjoint, differentiable=False,
                               precondition=self.precondition)
            x, y, lam, report = self.solve_program(program, x, y)
        self.last_forward = report
        self._previous = (x.detach(), y.detach())
        if self.warn and not report.converged and not self._forward_warned:
            self._forward_warned = True
            warnings.warn(f"BilevelLayer: the forward solve stopped at |df/dx| = {report.upper_gradient:.3g}, "
                          f"|G_y| = {report.lower_gradient:.3g} after {report.upper_steps} upper steps (above the "
                          f"solvers' tol); the outputs and their gradients are inexact. Raise max_steps or lr, or use "
                          f"method 'newton'. (Shown once for this layer.)", BilevelSolveWarning, stacklevel=2)
        if unrolled or not torch.is_grad_enabled():
            return x, y
        leaves, spec = pytree.tree_flatten(z)
        wrt = [i for i, leaf in enumerate(leaves) if _differentiable(leaf)]
        params = [p for p in self.parameters() if p.requires_grad]
        if not wrt and not params:
            return x, y
        solution = (x.detach(), y.detach(), lam.detach())

        def pullback(cotangents: tuple) -> tuple:
            detached = [leaf.detach() if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
            for i in wrt:
                detached[i] = detached[i].requires_grad_(True)
            z_live = pytree.tree_unflatten(detached, spec)
            theta = [detached[i] for i in wrt] + params
            products = _Products(self.upper, self.lower, z_live, *solution, theta, self.backward_mode)
            ux, uy = cotangents
            rhs = (ux.detach(), uy.detach(), torch.zeros_like(solution[2]))
            # custom_root's root VJP (K w = u, then -(d/dtheta dL/du)^T w) on the layer's own products,
            # not custom_root itself: the parameters of module objectives reach L through closures, not
            # arguments; lam is part of the root but not an output; and backward="second_order" solves
            # with an approximation of K that autograd's Jacobian of dL/du would not give.
            options = self.solve
            pre = self._block_preconditioner(program, *solution[:2]) if options.solve == "minres" else None
            if pre is not None and not options.damping:
                tol, maxiter = options.tol, options.maxiter
                options = replace(options, solve=lambda matvec, b: minres(matvec, b, tol=tol, maxiter=maxiter,
                                                                          precondition=pre))
            grads, _, info = implicit_vjp(products.matvec, products.theta_vjp, rhs, options)
            self.last_backward = info
            if self.warn:
                self._warner.check(info, self.solve.warn_residual,
                                   residual_advice(self.solve.solve, self.solve.maxiter, self.solve.damping))
            return grads

        return attach((x, y), [leaves[i] for i in wrt] + params, pullback)

    def extra_repr(self) -> str:
        return f"backward={self.backward_mode!r}, solve={self.solve.solve!r}"


__all__ = ["BilevelLayer", "BilevelSolveWarning", "ForwardReport", "LevelSolver", "preconditioned_minres"]
