"""Implicit differentiation of a root ``F(x, theta) = 0``, on ``torch.autograd.grad``.

If ``x*(theta)`` solves ``F(x*, theta) = 0`` and ``J = dF/dx`` is invertible there, the implicit
function theorem gives ``dx*/dtheta = -J^-1 dF/dtheta``. The vector-Jacobian product of a
cotangent ``u`` (the outer loss's gradient with respect to ``x*``) is therefore ::

    solve  J^T v = u,        then   u^T dx*/dtheta = -(dF/dtheta)^T v.

Both ``J^T v`` and ``(dF/dtheta)^T v`` are vector-Jacobian products of ``F``: one
``torch.autograd.grad`` call each with ``grad_outputs=v`` on a graph of ``F`` built once. When
``F`` is itself a gradient (``F = dg/dx``, see :func:`stationarity`) these are double-backward
passes and ``J`` is the Hessian of ``g``. Nothing is ever formed densely.

This is the idea of jaxopt's / torchopt's ``custom_root``, which trace ``F`` with functorch;
DGL's autograd functions cannot be traced that way (DESIGN.md section 2), plain autograd can.

* :func:`root_vjp` -- the maths alone: gradients of ``<u, x*>`` with respect to ``args``;
* :func:`custom_root` -- a decorator making a solver's output differentiable by it;
* :func:`implicit_vjp` -- the same from two product closures, for callers that build
  ``J^T v`` and ``(dF/dtheta)^T v`` themselves (term by term, or in closed form).

Damping solves ``(J^T + damping I) v = u`` instead. For symmetric ``J`` with eigenpairs
``(lambda_i, q_i)`` this scales the component along ``q_i`` by ``lambda_i / (lambda_i + damping)``:
a bias towards zero in low-curvature directions, in exchange for a solvable system when ``J``
is singular or slightly indefinite (eigenvalues below ``-damping`` stay negative).
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch.autograd.function import once_differentiable
from torch.utils import _pytree as pytree

from ..errors import ConfigError
from ..registry import LINEAR_SOLVERS
from .linalg import SolveInfo, Solver, Vector, linear_solve

#: ``F(x, *args, **kwargs)``: zero at the solution; same structure and shapes as ``x``.
OptimalityFn = Callable[..., Any]


class ImplicitSolveWarning(RuntimeWarning):
    """A linear solve of implicit differentiation ended far from converged.

    Raised as a warning (not an error) by :func:`custom_root`'s backward and the implicit
    hypergradients when the solve's relative residual exceeds ``warn_residual``, once per
    decorated function or object; the message says what to change (more iterations, damping,
    another solver). Filter it with :mod:`warnings` like any ``RuntimeWarning``.

    Example:
        >>> import warnings
        >>> import torch
        >>> from dgl_bilevel.numerics import ImplicitSolveWarning, custom_root, stationarity
        >>> A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
        >>> objective = lambda x, theta: 0.5 * x @ A @ x - theta @ x
        >>> @custom_root(stationarity(objective), maxiter=1)  # one CG step cannot solve a 2x2 system
        ... def argmin(x0, theta):
        ...     return torch.linalg.solve(A, theta)
        >>> theta = torch.tensor([1.0, -1.0], dtype=torch.float64, requires_grad=True)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = torch.autograd.grad(argmin(None, theta).sum(), theta)
        >>> [w.category.__name__ for w in caught], argmin.last_info.converged
        (['ImplicitSolveWarning'], False)
    """


@dataclass(frozen=True)
class SolveOptions:
    """How ``(J^T + damping I) v = u`` is solved.

    Args:
        solve: ``"cg"`` (symmetric positive definite ``J``), ``"minres"`` (symmetric,
            possibly indefinite), ``"gmres"`` (any ``J``, e.g. fixed points ``T(x) - x``),
            ``"neumann"``, or a callable ``(matvec, rhs) -> (v, SolveInfo)``.
        tol: relative residual ``|u - (J^T + damping I) v| / |u|`` at which the solver stops.
        maxiter: products with ``J^T`` at most.
        damping: added to ``J``'s diagonal (see the module docstring for the bias).
        neumann_step: the Neumann series' step (``|1 - step * eig| < 1`` needed).
        restart: GMRES restart length.
        warn_residual: a solve ending above this relative residual warns (once per owner).

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown solver name, ``maxiter < 1``, ``tol < 0``,
            ``damping < 0``, ``neumann_step <= 0``, ``restart < 1`` or ``warn_residual <= 0``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.numerics import SolveOptions
        >>> S = torch.tensor([[2.0, 1, 0, 0], [1, -1, 1, 0], [0, 1, 3, 1], [0, 0, 1, -2]], dtype=torch.float64)
        >>> b = torch.tensor([1.0, 2, 3, 4], dtype=torch.float64)
        >>> options = SolveOptions(solve="minres", tol=1e-10, damping=0.5)  # S is indefinite: not CG
        >>> (v,), info = options.run(lambda v: (S @ v[0],), (b,))
        >>> bool(torch.allclose(v, torch.linalg.solve(S + 0.5 * torch.eye(4, dtype=torch.float64), b))), info.converged
        (True, True)
        >>> from dgl_bilevel.errors import ConfigError
        >>> try:
        ...     SolveOptions(maxiter=0)
        ... except ConfigError as error:
        ...     print(str(error).split(",")[0])
        implicit differentiation needs maxiter >= 1
    """

    solve: "str | Solver" = "cg"
    tol: float = 1e-6
    maxiter: int = 100
    damping: float = 0.0
    neumann_step: float = 1.0
    restart: int = 30
    warn_residual: float = 1e-2

    def __post_init__(self) -> None:
        if not callable(self.solve) and (not isinstance(self.solve, str) or self.solve not in LINEAR_SOLVERS):
            raise ConfigError(f"unknown linear solver {self.solve!r}; choose from "
                              f"{', '.join(LINEAR_SOLVERS.choices())} or pass a callable")
        if self.maxiter < 1 or self.tol < 0 or self.damping < 0 or self.neumann_step <= 0 or self.restart < 1:
            raise ConfigError("implicit differentiation needs maxiter >= 1, tol >= 0, damping >= 0, "
                              "neumann_step > 0 and restart >= 1")
        if self.warn_residual <= 0:
            raise ConfigError("warn_residual must be positive")

    def run(self, matvec: Callable[[Vector], Vector], rhs: Vector, x0: Optional[Vector] = None) -> tuple[Vector, SolveInfo]:
        """Solve ``(matvec + damping I) v = rhs``."""
        return linear_solve(matvec, rhs, self.solve, tol=self.tol, maxiter=self.maxiter, damping=self.damping,
                            x0=x0, neumann_step=self.neumann_step, restart=self.restart)


def residual_advice(solve: "str | Solver", maxiter: int, damping: float, parameter: str = "solve") -> str:
    """What to change when a solve of ``(J + damping I) v = u`` ended above its warning threshold, for the
    solver that ran (``parameter``: what the caller names the solver option, ``solve`` or ``solver``).

    More iterations or more damping help every solver; switching to MINRES is advised only where it is
    not already the solver and the solver used cannot handle an indefinite ``J`` (CG, Neumann)."""
    common = f"raise maxiter (now {maxiter}) or damping (now {damping:g})"
    if solve == "cg":
        return f"{common}, or use {parameter}='minres': CG breaks down on indefinite Hessians"
    if solve == "neumann":
        return (f"{common}, lower neumann_step (the series diverges where |1 - step * eigenvalue| >= 1), or use "
                f"{parameter}='minres'")
    if solve == "gmres":
        return f"{common}, or raise restart (GMRES may stagnate between restarts)"
    if solve == "minres":
        return f"{common}: MINRES already allows indefinite Hessians, and damping shifts their slow directions"
    return common


class ResidualWarner:
    """Warns once (per instance) when a solve ends with relative residual above a threshold, with advice
    that fits the solver that ran (:func:`residual_advice`, or the ``advice`` given to :meth:`check`)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.warned = False

    def check(self, info: SolveInfo, threshold: float, advice: str = "raise maxiter or add damping") -> None:
        if not self.warned and not info.residual <= threshold:  # NaN warns too
            self.warned = True
            warnings.warn(
                f"{self.where}: linear solve ended at relative residual {info.residual:.3g} after "
                f"{info.iterations} iterations (warning above {threshold:g}); the hypergradient is inexact. "
                f"{advice[:1].upper()}{advice[1:]}. (Shown once for this object.)",
                ImplicitSolveWarning,
                stacklevel=3,
            )


def _as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _restructure(flat: Sequence[torch.Tensor], like: Any) -> Any:
    return tuple(flat) if isinstance(like, (tuple, list)) else flat[0]


def _is_differentiable(leaf: Any) -> bool:
    return isinstance(leaf, torch.Tensor) and (leaf.is_floating_point() or leaf.is_complex())


def _zeros_for_none(grads: Sequence[Optional[torch.Tensor]], like: Sequence[torch.Tensor]) -> tuple:
    return tuple(torch.zeros_like(t) if g is None else g for g, t in zip(grads, like))


def stationarity(objective: Callable[..., torch.Tensor]) -> OptimalityFn:
    """The optimality function ``F(x, ...) = d objective(x, ...) / dx`` of a minimisation.

    Built with ``create_graph=True`` so that its products are double-backward passes
    (``J`` is the Hessian, symmetric: ``cg`` or ``minres`` apply).

    Args:
        objective: ``objective(x, *args, **kwargs) -> scalar``, minimised in ``x`` (a tensor or a
            tuple of tensors).

    Returns:
        ``F(x, *args, **kwargs)``, the gradient in ``x``, shaped like ``x`` (zeros where the
        objective does not depend on a tensor). A constant ``x`` (no tensor requiring grad) is
        differentiated through a copy; where ``x`` requires grad (:func:`custom_root` and
        :func:`root_vjp` call ``F`` so) ``F`` stays on its graph.

    Example:
        >>> import torch
        >>> from dgl_bilevel.numerics import stationarity
        >>> F = stationarity(lambda x, a: 0.5 * a * (x ** 2).sum() - x.sum())  # minimised at x = 1 / a
        >>> F(torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor(3.0)).tolist()  # a x - 1
        [2.0, 5.0]
        >>> F(torch.full((2,), 0.5, requires_grad=True), torch.tensor(2.0)).tolist()  # zero at the minimiser
        [0.0, 0.0]
    """

    def optimality(x: Any, *args: Any, **kwargs: Any) -> Any:
        variables = _as_tuple(x)
        if not any(v.requires_grad for v in variables):  # a constant point: differentiate a copy of it
            variables = tuple(v.detach().requires_grad_(True) for v in variables)
            x = _restructure(variables, x)
        with torch.enable_grad():
            value = objective(x, *args, **kwargs)
            grads = torch.autograd.grad(value, variables, create_graph=True, allow_unused=True)
        return _restructure(_zeros_for_none(grads, variables), x)

    return optimality


def optimality_products(
    optimality_fn: OptimalityFn,
    solution: Any,
    args: tuple,
    kwargs: Optional[dict] = None,
    wrt: Optional[Sequence[int]] = None,
) -> tuple[Callable[[Vector], Vector], Callable[[Vector], tuple], list]:
    """``(v -> J^T v, v -> (dF/dtheta)^T v, theta)`` from one evaluation of ``F`` at ``solution``.

    ``theta`` are the tensor leaves of ``(args, kwargs)`` (pytree order) whose positions are in
    ``wrt`` (default: every floating-point leaf); the second product returns one gradient each.
    The graph of ``F`` is built once and reused by every product.
    """
    kwargs = kwargs or {}
    leaves, spec = pytree.tree_flatten((tuple(args), kwargs))
    if wrt is None:
        wrt = [i for i, leaf in enumerate(leaves) if _is_differentiable(leaf)]
    wrt = list(wrt)
    leaves = [leaf.detach() if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
    for i in wrt:
        leaves[i] = leaves[i].requires_grad_(True)
    theta = [leaves[i] for i in wrt]
    args_, kwargs_ = pytree.tree_unflatten(leaves, spec)
    flat_x = tuple(s.detach().requires_grad_(True) for s in _as_tuple(solution))
    with torch.enable_grad():
        values = _as_tuple(optimality_fn(_restructure(flat_x, solution), *args_, **kwargs_))
    if len(values) != len(flat_x) or any(f.shape != x.shape for f, x in zip(values, flat_x)):
        raise ConfigError(
            f"the optimality function must return tensors shaped like the solution: got "
            f"{[tuple(f.shape) for f in values]} for {[tuple(x.shape) for x in flat_x]}"
        )
    live = [i for i, f in enumerate(values) if f.requires_grad]  # F entries with a graph

    def pull(v: Vector, inputs: Sequence[torch.Tensor]) -> tuple:
        if not live or not inputs:
            return tuple(torch.zeros_like(t) for t in inputs)
        grads = torch.autograd.grad([values[i] for i in live], inputs, grad_outputs=[v[i] for i in live],
                                    retain_graph=True, allow_unused=True)
        return _zeros_for_none(grads, inputs)

    return (lambda v: pull(v, flat_x)), (lambda v: pull(v, theta)), theta


def implicit_vjp(
    transpose_matvec: Callable[[Vector], Vector],
    args_vjp: Callable[[Vector], Sequence[Optional[torch.Tensor]]],
    cotangent: Vector,
    options: SolveOptions = SolveOptions(),
    x0: Optional[Vector] = None,
) -> tuple[tuple, Vector, SolveInfo]:
    """Solve ``(J^T + damping I) v = u`` and return ``(-(dF/dtheta)^T v, v, info)``.

    ``transpose_matvec`` is ``v -> J^T v``, ``args_vjp`` is ``v -> (dF/dtheta)^T v`` (one entry
    per parameter, ``None`` for no dependence); ``cotangent`` is ``u``, shaped like ``x``.
    """
    cotangent = tuple(cotangent)
    v, info = options.run(transpose_matvec, cotangent, x0)
    grads = tuple(None if g is None else -g for g in args_vjp(v))
    return grads, v, info


def _options(solve: "str | Solver", options: dict) -> SolveOptions:
    unknown = set(options) - set(SolveOptions.__dataclass_fields__) - {"warm_start"}
    if unknown:
        raise ConfigError(f"unknown implicit-differentiation options {sorted(unknown)}; "
                          f"choose from {sorted(SolveOptions.__dataclass_fields__)} and warm_start")
    return SolveOptions(solve=solve, **{k: v for k, v in options.items() if k != "warm_start"})


def root_vjp(
    optimality_fn: OptimalityFn,
    solution: Any,
    args: tuple,
    cotangent: Any,
    *,
    solve: "str | Solver" = "cg",
    x0: Optional[Any] = None,
    **options: Any,
) -> tuple[tuple, SolveInfo]:
    """Gradients of ``<cotangent, x*(args)>`` with respect to ``args`` at a root ``solution``.

    ``optimality_fn(solution, *args) == 0``; ``solution`` and ``cotangent`` are a tensor or a
    tuple of tensors of the same shapes. Returns the gradients in the structure of ``args``
    (``None`` for leaves that are not floating-point tensors) and the linear solve's
    :class:`SolveInfo`. ``options``: those of :class:`SolveOptions` (``tol`` default 1e-6,
    ``maxiter`` 100, ``damping`` 0, ...); ``x0`` starts the solver.

    Args:
        optimality_fn: ``F(x, *args)``, zero at the root; same structure and shapes as ``x``.
        solution: the root ``x*`` (a tensor or a tuple of tensors).
        args: ``F``'s other arguments, ``theta``; a pytree of tensors and other values.
        cotangent: ``u``, the gradient of a loss with respect to ``x*``, shaped like ``solution``.
        solve: the linear solver of ``J^T v = u`` (see :class:`SolveOptions`).
        x0: the linear solver's starting point, shaped like ``solution``.
        **options: the other fields of :class:`SolveOptions`.

    Returns:
        ``(grads, info)``: ``u^T dx*/dargs`` in the structure of ``args``, and the linear solve's
        :class:`SolveInfo`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown option or solver, or an ``optimality_fn``
            whose output is not shaped like ``solution``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.numerics import root_vjp
        >>> a = torch.tensor(4.0, dtype=torch.float64)
        >>> root = a.sqrt()  # the root of x^2 - a, whose derivative is 1 / (2 sqrt(a)) = 0.25
        >>> (grad,), info = root_vjp(lambda x, a: x ** 2 - a, root, (a,), torch.tensor(1.0, dtype=torch.float64))
        >>> grad.item(), info.converged
        (0.25, True)
    """
    opts = _options(solve, options)
    args = tuple(args)
    leaves, spec = pytree.tree_flatten((args, {}))
    wrt = [i for i, leaf in enumerate(leaves) if _is_differentiable(leaf)]
    matvec, args_vjp, _ = optimality_products(optimality_fn, solution, args, {}, wrt)
    start = None if x0 is None else _as_tuple(x0)
    grads, _, info = implicit_vjp(matvec, args_vjp, _as_tuple(cotangent), opts, start)
    out: list = [None] * len(leaves)
    for i, g in zip(wrt, grads):
        out[i] = g
    return pytree.tree_unflatten(out, spec)[0], info


class _Attach(torch.autograd.Function):
    """Identity on ``solution`` in the forward pass; ``pullback(cotangents)`` in the backward.

    The solution enters as a non-tensor argument (no graph to it); gradients go only to
    ``inputs``, in the order given.
    """

    @staticmethod
    def forward(ctx, pullback, solution, *inputs):
        ctx.pullback = pullback
        ctx.num_inputs = len(inputs)
        return tuple(s.detach().clone() for s in solution)

    @staticmethod
    @once_differentiable
    def backward(ctx, *cotangents):
        grads = tuple(ctx.pullback(cotangents))
        if len(grads) != ctx.num_inputs:
            raise RuntimeError(f"pullback returned {len(grads)} gradients for {ctx.num_inputs} inputs")
        return (None, None) + grads


def attach(solution: tuple, inputs: Sequence[torch.Tensor], pullback: Callable[[tuple], Sequence]) -> tuple:
    """``solution`` (detached copies) on the autograd graph of ``inputs``; its vector-Jacobian
    product is ``pullback(cotangents) -> one gradient (or None) per input``."""
    return _Attach.apply(pullback, tuple(solution), *inputs)


class RootSolver:
    """A solver whose output is differentiable by implicit differentiation (see :func:`custom_root`).

    Attributes:
        last_info: :class:`SolveInfo` of the latest backward solve (None before any).
    """

    def __init__(self, solver: Callable[..., Any], optimality_fn: OptimalityFn, options: SolveOptions,
                 warm_start: bool = False) -> None:
        functools.update_wrapper(self, solver)
        self.solver, self.optimality_fn, self.options, self.warm_start = solver, optimality_fn, options, warm_start
        self.last_info: Optional[SolveInfo] = None
        self._previous: Optional[tuple] = None
        self._warner = ResidualWarner(f"implicit differentiation of {getattr(solver, '__name__', solver)!r}")

    def __call__(self, init: Any, *args: Any, **kwargs: Any) -> Any:
        leaves, spec = pytree.tree_flatten((args, kwargs))
        wrt = [i for i, leaf in enumerate(leaves)
               if _is_differentiable(leaf) and leaf.requires_grad]
        detached = [leaf.detach() if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
        d_args, d_kwargs = pytree.tree_unflatten(detached, spec)
        solution = self.solver(init, *d_args, **d_kwargs)
        flat = tuple(s.detach() for s in _as_tuple(solution))
        if not wrt or not torch.is_grad_enabled():
            return _restructure(flat, solution)

        def pullback(cotangents: tuple) -> tuple:
            matvec, args_vjp, _ = optimality_products(self.optimality_fn, _restructure(flat, solution),
                                                      d_args, d_kwargs, wrt)
            x0 = self._previous if self.warm_start else None
            if x0 is not None and any(a.shape != c.shape for a, c in zip(x0, cotangents)):
                x0 = None
            grads, v, info = implicit_vjp(matvec, args_vjp, cotangents, self.options, x0)
            self.last_info = info
            if self.warm_start:
                self._previous = tuple(t.detach() for t in v)
            self._warner.check(info, self.options.warn_residual,
                               residual_advice(self.options.solve, self.options.maxiter, self.options.damping))
            return grads

        out = attach(flat, [leaves[i] for i in wrt], pullback)
        return _restructure(out, solution)


def custom_root(
    optimality_fn: OptimalityFn, solve: "str | Solver" = "cg", **solver_options: Any
) -> Callable[[Callable], RootSolver]:
    """Decorator: ``solver(init, *args, **kwargs) -> x`` with ``optimality_fn(x, *args, **kwargs) == 0``
    becomes differentiable in every tensor of ``args``/``kwargs`` that requires grad.

    The solver runs on detached arguments (its own graph is discarded); the returned ``x`` (a
    tensor or tuple of tensors, as the solver returns it) carries the implicit-function VJP
    (module docstring). ``solve`` and ``solver_options`` (``tol``, ``maxiter``, ``damping``,
    ``neumann_step``, ``restart``, ``warn_residual``, ``warm_start``) are those of
    :class:`SolveOptions`; ``warm_start=True`` starts each solve from the previous one's
    solution. The decorated object's ``last_info`` holds the latest solve's :class:`SolveInfo`;
    a solve ending above ``warn_residual`` warns once per decorated function. Non-tensor
    arguments (graphs, flags) pass through untouched. Not for methods: decorate a function.

    Args:
        optimality_fn: ``F(x, *args, **kwargs)``, zero at the solver's output (e.g.
            :func:`stationarity` of an objective); same structure and shapes as ``x``.
        solve: the linear solver of ``J^T v = u``: ``"cg"`` needs ``J`` symmetric positive
            definite; use ``"gmres"`` for a fixed point ``x - T(x)``.
        **solver_options: the other fields of :class:`SolveOptions`, and ``warm_start``.

    Returns:
        A decorator turning ``solver(init, *args, **kwargs)`` into a
        :class:`RootSolver` with the same call.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown option or solver, or invalid option values.

    Example:
        >>> import torch
        >>> from dgl_bilevel.numerics import custom_root
        >>> @custom_root(lambda x, a: x - torch.cos(a * x), solve="gmres", tol=1e-12)
        ... def fixed_point(x, a):  # x = cos(a x) by iteration; autograd never sees the loop
        ...     for _ in range(200):
        ...         x = torch.cos(a * x)
        ...     return x
        >>> a = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
        >>> x = fixed_point(torch.tensor(0.0, dtype=torch.float64), a)
        >>> round(x.item(), 6)
        0.739085
        >>> (dx_da,) = torch.autograd.grad(x, a)
        >>> s = torch.sin(x.detach())  # implicit function theorem: dx/da = -x sin(a x) / (1 + a sin(a x))
        >>> bool(torch.isclose(dx_da, -x.detach() * s / (1 + s))), fixed_point.last_info.converged
        (True, True)
    """
    options = _options(solve, solver_options)
    warm_start = bool(solver_options.get("warm_start", False))

    def decorator(solver: Callable) -> RootSolver:
        return RootSolver(solver, optimality_fn, options, warm_start)

    return decorator


__all__ = [
    "ImplicitSolveWarning",
    "ResidualWarner",
    "residual_advice",
    "RootSolver",
    "SolveOptions",
    "attach",
    "custom_root",
    "implicit_vjp",
    "optimality_products",
    "root_vjp",
    "stationarity",
]
