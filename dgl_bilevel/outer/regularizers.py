"""Outer-loss regularisers on the learned edge weights: ``(structure, w) -> scalar``."""
from __future__ import annotations

from typing import Callable

import torch

from .._dgl import dgl
from ..errors import ConfigError
from ..registry import REGULARIZERS
from ..structure.base import GraphStructure

#: What :func:`~dgl_bilevel.fit` accepts as ``regularizer``.
Regularizer = Callable[[GraphStructure, torch.Tensor], torch.Tensor]


@REGULARIZERS.register("none", help="no regulariser")
def no_regularizer_from_config(config) -> None:
    return None


@REGULARIZERS.register("log_degree", help="-gamma * log-degree, keeps every node connected (--reg-gamma)")
class LogDegree:
    """``-gamma * reduce_i log(d_i)`` with ``d = A 1`` the weighted out-degrees (paper: gamma = 1).

    It penalises nodes whose edges all vanish, a prior that keeps every node connected -- and
    gives every edge a gradient, whatever its distance to the labelled nodes. ``reduction``
    ``"mean"`` matches the paper's code (``"sum"`` is the formula ``-gamma 1^T log(A 1)``).
    Nodes without support edges are left out (their degree is 0 for every ``w``).

    Args:
        gamma: the regulariser's weight.
        reduction: ``"mean"`` or ``"sum"`` over the nodes.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown ``reduction``.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.graph(([0, 1, 1, 2], [1, 0, 2, 1]))  # a path 0 - 1 - 2, both directions
        >>> structure = dbl.EdgeWeights(graph, init="constant")
        >>> regularizer = LogDegree(gamma=1.0)
        >>> round(float(regularizer(structure, torch.ones(4))), 4)  # -(log 1 + log 2 + log 1) / 3
        -0.231
        >>> round(float(LogDegree(reduction="sum")(structure, torch.ones(4))), 4)
        -0.6931
        >>> result = dbl.fit(dbl.BilevelData(graph, torch.eye(3), torch.tensor([0, 0, 1]), v_in=[0], v_out=[2],
        ...                                  val=[1], test=[]),
        ...                  structure, dbl.LabelPropagation(), outer_steps=1, progress=False,
        ...                  regularizer=regularizer)
        >>> result.history[0]["total_loss"] > result.history[0]["outer_loss"]  # the term is added
        True
    """

    def __init__(self, gamma: float = 1.0, reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ConfigError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.gamma, self.reduction = float(gamma), reduction
        self._cache: tuple = (None, None, None)

    @classmethod
    def from_config(cls, config) -> "LogDegree":
        return cls(config.reg_gamma, config.reg_reduction)

    def __call__(self, structure: GraphStructure, weights: torch.Tensor) -> torch.Tensor:
        graph = structure.graph
        if self._cache[0] is not graph:  # reversed graph: out-degrees by DGL's copy_e_sum
            self._cache = (graph, dgl.reverse(graph), graph.out_degrees() > 0)
        _, reverse, has_edges = self._cache
        degree = dgl.ops.copy_e_sum(reverse, weights)
        logs = torch.log(degree[has_edges])
        value = logs.mean() if self.reduction == "mean" else logs.sum()
        return -self.gamma * value

    def __repr__(self) -> str:
        return f"LogDegree(gamma={self.gamma}, reduction={self.reduction!r})"
