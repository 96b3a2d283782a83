"""Hypergradient methods: how the inner solution is differentiated with respect to edge weights."""
from __future__ import annotations

import sys

from ..inner.base import InnerProblem
from ..numerics import implicit_diff, linalg
from ..numerics.implicit_diff import ImplicitSolveWarning, SolveOptions, custom_root, root_vjp, stationarity
from ..numerics.linalg import SolveInfo, conjugate_gradient, gmres, linear_solve, minres, neumann_series
from ..registry import HYPERGRADIENTS
from .adjoint import Adjoint
from .base import HypergradMethod, Solution, optimize
from .implicit import Implicit
from .unrolled import REVERSE_ENGINES, FirstOrder, Truncated, Unrolled

# The solvers and implicit differentiation moved to the bottom package dgl_bilevel.numerics; their old
# addresses (``dgl_bilevel.hypergrad.linalg``, ``dgl_bilevel.hypergrad.implicit_diff``) stay importable
# as the very same module objects, so registrations, isinstance checks and warnings filters agree.
sys.modules.setdefault(f"{__name__}.linalg", linalg)
sys.modules.setdefault(f"{__name__}.implicit_diff", implicit_diff)

HYPERGRADIENTS.register("unrolled", Unrolled, help="back-propagation through every inner step (exact for the trajectory)",
                        options={"reverse": "reverse_engine"})
HYPERGRADIENTS.register("truncated", Truncated, help="back-propagation through the last k inner steps (--truncate-k)",
                        options={"k": "truncate_k", "reverse": "reverse_engine"})
HYPERGRADIENTS.register("first_order", FirstOrder, help="only the direct dependence of the predictions on w (biased, cheapest)",
                        options={})
HYPERGRADIENTS.register("implicit", Implicit, help="implicit function theorem at the inner solution (MINRES/CG on "
                        "Hessian-vector products)",
                        options={"solver": "implicit_solver", "maxiter": "cg_maxiter", "tol": "cg_tol",
                                 "damping": "damping", "neumann_step": "neumann_step",
                                 "warm_start": "implicit_warm_start"})
HYPERGRADIENTS.register("adjoint", Adjoint, help="exact solve plus one adjoint solve (quadratic inner problems)",
                        options={"maxiter": "cg_maxiter", "tol": "cg_tol"})


def get_method(name: "str | HypergradMethod", **options) -> HypergradMethod:
    """A method by name (any registered in :data:`~dgl_bilevel.registry.HYPERGRADIENTS`), or the method itself.

    Args:
        name: a registered name (``"unrolled"``, ``"truncated"``, ``"first_order"``,
            ``"implicit"``, ``"adjoint"``, ...) or a :class:`HypergradMethod`, returned as it is.
        **options: the method's constructor arguments (ignored for an instance).

    Returns:
        The method.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unregistered name (the message lists the registered ones) or an option
            out of range.

    Example:
        >>> get_method("truncated", k=5)
        Truncated(k=5, reverse=auto)
        >>> method = Unrolled()
        >>> get_method(method) is method
        True
        >>> from dgl_bilevel.errors import ConfigError
        >>> try:
        ...     get_method("truncated", k=-1)
        ... except ConfigError as exc:
        ...     print(exc)
        truncation length k must be >= 0, got -1
    """
    if isinstance(name, HypergradMethod):
        return name
    return HYPERGRADIENTS.build(name, **options)


def default_method_name(problem: InnerProblem) -> str:
    """The fastest method that is exact for ``problem``: the adjoint for quadratic problems,
    otherwise differentiation through the inner trajectory.

    Args:
        problem: an inner problem (bound or not: quadratic-ness is decided by its constructor).

    Returns:
        ``"adjoint"`` or ``"unrolled"``.

    Example:
        >>> import dgl_bilevel as dbl
        >>> default_method_name(dbl.LaplacianRegularization(loss="mse"))
        'adjoint'
        >>> default_method_name(dbl.LaplacianRegularization(loss="ce"))
        'unrolled'
    """
    return "adjoint" if problem.is_quadratic else "unrolled"


def default_method(problem: InnerProblem) -> HypergradMethod:
    """An instance of :func:`default_method_name` with its default settings.

    What :func:`~dgl_bilevel.fit` uses when it is given no ``hypergrad``.

    Args:
        problem: an inner problem.

    Returns:
        A new :class:`HypergradMethod`.

    Example:
        >>> import dgl_bilevel as dbl
        >>> default_method(dbl.LabelPropagation())
        Adjoint(...)
        >>> default_method(dbl.TrainedGNN(dbl.models.SumAggGNN(4, 8, 2)))
        Unrolled(reverse=auto)
    """
    return get_method(default_method_name(problem))


__all__ = [
    "HypergradMethod",
    "Solution",
    "optimize",
    "Unrolled",
    "Truncated",
    "FirstOrder",
    "REVERSE_ENGINES",
    "Implicit",
    "Adjoint",
    "SolveInfo",
    "conjugate_gradient",
    "neumann_series",
    "minres",
    "gmres",
    "linear_solve",
    "custom_root",
    "root_vjp",
    "stationarity",
    "SolveOptions",
    "ImplicitSolveWarning",
    "HYPERGRADIENTS",
    "get_method",
    "default_method",
    "default_method_name",
]
