"""Bilevel programs as differentiable layers (BiGrad's continuous case). ::

    from dgl_bilevel.layers import BilevelLayer
    layer = BilevelLayer(upper, lower, x_init=x0, y_init=y0)   # upper(x, y, z), lower(x, y, z) -> scalar
    x, y = layer(z)                                               # dL/dz by the implicit function theorem

See :mod:`dgl_bilevel.layers.bilevel` for the optimality system and docs/bigrad.md.
"""
from .bilevel import BilevelLayer, BilevelSolveWarning, ForwardReport, LevelSolver
from .programs import LaplacianProgram, QuadraticProgram, RobustLQ, SoftplusProgram

__all__ = [
    "BilevelLayer",
    "BilevelSolveWarning",
    "ForwardReport",
    "LevelSolver",
    "LaplacianProgram",
    "QuadraticProgram",
    "RobustLQ",
    "SoftplusProgram",
]
