"""Top-k selection solvers (maximisers): the ``k`` best items, globally or per node of a graph.

All are vectorised torch (no Python loop over items or nodes) and batched over leading
dimensions. Ties go to the lower index (stable sorts), so results are deterministic.
"""
from __future__ import annotations

from typing import Union

import torch

from .._dgl import dgl
from ..errors import ConfigError
from .base import Solver, positive_int
from .registry import SOLVERS

GraphOrCount = Union["dgl.DGLGraph", int]


def topk_mask(c: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 mask of the ``k`` largest entries of ``c`` along its last dimension (ties: lower index).

    Args:
        c: scores, any shape; leading dimensions are independent rows.
        k: how many entries to mark per row (no check: :class:`TopK` validates it).

    Returns:
        A tensor shaped like ``c`` with ``c``'s dtype, ``k`` ones per row; not differentiable.

    Example:
        >>> import torch
        >>> from dgl_bilevel.combinatorial import topk_mask
        >>> topk_mask(torch.tensor([[0.3, 0.9, 0.1, 0.9], [1.0, 0.0, 2.0, 3.0]]), 2)
        tensor([[0., 1., 0., 1.],
                [0., 0., 1., 1.]])
    """
    order = torch.argsort(c.detach(), dim=-1, descending=True, stable=True)
    mask = torch.zeros(c.shape, dtype=c.dtype, device=c.device)
    return mask.scatter_(-1, order[..., :k], 1.0)


@SOLVERS.register("topk", help="the k highest scores along the last dimension (0/1 mask)")
class TopK(Solver):
    """``argmax <c, y>`` over 0/1 vectors with exactly ``k`` ones: the ``k`` highest scores.

    Args:
        k: how many items to select (a positive integer, at most the last dimension of ``c``).

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``k`` is not a positive integer; when called, if ``k`` exceeds the number
            of items or the scores are invalid.

    Example:
        >>> import torch
        >>> from dgl_bilevel.combinatorial import TopK
        >>> TopK(2)(torch.tensor([0.5, 2.0, -1.0, 1.0]))
        tensor([0., 1., 0., 1.])
        >>> TopK(5)(torch.tensor([0.5, 2.0, -1.0, 1.0]))
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: cannot select k=5 of 4 items; lower k
    """

    sense = "max"

    def __init__(self, k: int) -> None:
        self.k = positive_int("k", k, " (the number of items to select)")

    def check(self, c: torch.Tensor) -> None:
        super().check(c)
        if self.k > c.shape[-1]:
            raise ConfigError(f"cannot select k={self.k} of {c.shape[-1]} items; lower k")

    def solve(self, c: torch.Tensor) -> torch.Tensor:
        return topk_mask(c, self.k)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"


def _num_edges(graph: GraphOrCount) -> int:
    return int(graph) if isinstance(graph, int) else int(graph.num_edges())


@SOLVERS.register("edge_budget", help="the B highest-scoring edges of a graph (global budget)")
class EdgeBudget(TopK):
    """The ``budget`` highest-scoring edges of a graph: a 0/1 mask over its edge ids.

    Args:
        graph: the candidate graph (or its number of edges); scores are one per edge, in edge-id order.
        budget: how many edges to keep, ``1 <= budget <= num_edges``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``budget`` is not in ``1..num_edges``; when called, if the scores do not
            have one entry per edge.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.combinatorial import EdgeBudget
        >>> graph = dgl.graph(([0, 1, 2, 3, 0], [1, 2, 3, 0, 2]))
        >>> EdgeBudget(graph, budget=2)(torch.tensor([0.1, 0.7, 0.3, 0.9, 0.2]))
        tensor([0., 1., 0., 1., 0.])
    """

    def __init__(self, graph: GraphOrCount, budget: int) -> None:
        self.num_edges = _num_edges(graph)
        budget = positive_int("budget", budget, " (the number of edges to keep)")
        if budget > self.num_edges:
            raise ConfigError(f"edge budget B={budget} exceeds the graph's {self.num_edges} edges; "
                              f"choose B <= {self.num_edges}")
        super().__init__(budget)

    def check(self, c: torch.Tensor) -> None:
        super().check(c)
        if c.shape[-1] != self.num_edges:
            raise ConfigError(f"scores have {c.shape[-1]} entries in their last dimension; "
                              f"the graph has {self.num_edges} edges (one score per edge)")

    def __repr__(self) -> str:
        return f"EdgeBudget(num_edges={self.num_edges}, budget={self.k})"


@SOLVERS.register("per_node_topk", help="for each node, its k highest-scoring in-edges (or out-edges)")
class PerNodeTopK(Solver):
    """For each node, keep its ``k`` highest-scoring incident edges (all of them if it has fewer).

    ``by="dst"`` (default) ranks each node's in-edges (edges grouped by destination), ``"src"`` its
    out-edges. The result maximises ``<c, y>`` over edge sets with at most ``k`` edges per node
    (exactly ``min(k, degree)``). Vectorised: edges are sorted by (node, -score) and ranked within
    each node's segment.

    Args:
        graph: the candidate graph; scores are one per edge, in edge-id order.
        k: edges kept per node (a positive integer).
        by: ``"dst"`` (rank in-edges) or ``"src"`` (rank out-edges).

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``by`` or ``k`` is invalid; when called, if the scores do not have one
            entry per edge.

    Example:
        Node 2 has three in-edges (ids 0, 1, 2) and keeps its best one; node 3 keeps its only one.

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.combinatorial import PerNodeTopK
        >>> graph = dgl.graph(([0, 1, 3, 2], [2, 2, 2, 3]))
        >>> PerNodeTopK(graph, k=1)(torch.tensor([0.2, 0.8, 0.5, 0.1]))
        tensor([0., 1., 0., 1.])
    """

    sense = "max"

    def __init__(self, graph: "dgl.DGLGraph", k: int, by: str = "dst") -> None:
        if by not in ("dst", "src"):
            raise ConfigError(f"by must be 'dst' (rank in-edges) or 'src' (rank out-edges), got {by!r}")
        self.k = positive_int("k", k, " (edges kept per node)")
        self.by = by
        src, dst = graph.edges()
        self.node = (dst if by == "dst" else src).long()
        self.num_edges = int(graph.num_edges())
        counts = torch.bincount(self.node, minlength=graph.num_dst_nodes() if by == "dst" else graph.num_src_nodes())
        self.segment_start = torch.cumsum(counts, 0) - counts

    def check(self, c: torch.Tensor) -> None:
        super().check(c)
        if c.shape[-1] != self.num_edges:
            raise ConfigError(f"scores have {c.shape[-1]} entries in their last dimension; "
                              f"the graph has {self.num_edges} edges (one score per edge)")

    def solve(self, c: torch.Tensor) -> torch.Tensor:
        flat = c.detach().reshape(-1, self.num_edges)
        node = self.node.to(flat.device)
        by_score = torch.argsort(flat, dim=-1, descending=True, stable=True)
        by_node = torch.argsort(node[by_score], dim=-1, stable=True)  # stable: keeps score order per node
        order = by_score.gather(-1, by_node)  # edge ids sorted by (node, -score)
        position = torch.arange(self.num_edges, device=flat.device)
        rank = position - self.segment_start.to(flat.device)[node[order]]
        mask = torch.zeros_like(flat).scatter_(-1, order, (rank < self.k).to(flat.dtype))
        return mask.reshape(c.shape)

    def __repr__(self) -> str:
        return f"PerNodeTopK(num_edges={self.num_edges}, k={self.k}, by={self.by!r})"


__all__ = ["TopK", "EdgeBudget", "PerNodeTopK", "topk_mask"]
