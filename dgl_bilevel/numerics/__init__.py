"""The numerical kernels at the bottom of the package: matrix-free linear solvers
(:mod:`.linalg`), implicit differentiation of a root (:mod:`.implicit_diff`) and Adam's update
(:mod:`.adam`).

They import nothing of dgl_bilevel but its errors and its torch-free registries (tests/test_import_layers.py),
so every other subpackage -- hypergradients, energies, layers, inner optimizers -- may build on them
without import cycles.
"""
from __future__ import annotations

from .adam import adam_update
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
    "adam_update",
]
