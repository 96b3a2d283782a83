"""The numerical kernels at the bottom of the package: matrix-free linear solvers
(:mod:`.linalg`) and implicit differentiation of a root (:mod:`.implicit_diff`).

They import nothing of dgl_bilevel but its errors and its torch-free registries, so every other
subpackage -- hypergradients, energies, layers -- may build on them without import cycles.
"""
from __future__ import annotations

from .implicit_diff import ImplicitSolveWarning, SolveOptions, custom_root, root_vjp, stationarity
from .linalg import SolveInfo, conjugate_gradient, gmres, linear_solve, minres, neumann_series

__all__ = [
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
]
