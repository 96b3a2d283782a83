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
    """A method by name (any registered in :data:`~dgl_bilevel.registry.HYPERGRADIENTS`), or the method itself."""
    if isinstance(name, HypergradMethod):
        return name
    return HYPERGRADIENTS.build(name, **options)


def default_method_name(problem: InnerProblem) -> str:
    """The fastest method that is exact for ``problem``: the adjoint for quadratic problems,
    otherwise differentiation through the inner trajectory."""
    return "adjoint" if problem.is_quadratic else "unrolled"


def default_method(problem: InnerProblem) -> HypergradMethod:
    """An instance of :func:`default_method_name` with its default settings."""
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
