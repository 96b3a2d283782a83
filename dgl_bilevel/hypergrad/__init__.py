"""Hypergradient methods: how the inner solution is differentiated with respect to edge weights."""
from __future__ import annotations

from ..errors import ConfigError
from ..inner.base import InnerProblem
from .adjoint import Adjoint
from .base import HypergradMethod, Solution, optimize
from .implicit import Implicit
from .linalg import SolveInfo, conjugate_gradient, neumann_series
from .unrolled import FirstOrder, Truncated, Unrolled

METHODS = {
    "unrolled": Unrolled,
    "truncated": Truncated,
    "first_order": FirstOrder,
    "implicit": Implicit,
    "adjoint": Adjoint,
}


def get_method(name: "str | HypergradMethod", **options) -> HypergradMethod:
    """A method by name (``unrolled``, ``truncated``, ``first_order``, ``implicit``, ``adjoint``)."""
    if isinstance(name, HypergradMethod):
        return name
    if name not in METHODS:
        raise ConfigError(f"unknown hypergradient method {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name](**options)


def default_method(problem: InnerProblem) -> HypergradMethod:
    """The fastest method that is exact for ``problem``: the adjoint for quadratic problems,
    otherwise differentiation through the inner trajectory."""
    return Adjoint() if problem.is_quadratic else Unrolled()


__all__ = [
    "HypergradMethod",
    "Solution",
    "optimize",
    "Unrolled",
    "Truncated",
    "FirstOrder",
    "Implicit",
    "Adjoint",
    "SolveInfo",
    "conjugate_gradient",
    "neumann_series",
    "METHODS",
    "get_method",
    "default_method",
]
