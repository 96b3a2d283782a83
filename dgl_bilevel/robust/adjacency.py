"""Dense adjacency matrices and edge flips: the object a structure attack perturbs.

The attack may flip *any* node pair, so its variable has one entry per pair: ``N (N - 1) / 2``
of them (3.7 million on Cora). An edge-weighted DGL graph over all candidate pairs would store
each pair twice plus its indices, far more than a dense ``N x N`` float matrix (29 MB on Cora in
float32), and dense matrix products are the fastest way to propagate over it. Memory is
``O(N^2)``: fine up to about 20,000 nodes.

Conventions: an adjacency ``adj`` is a symmetric 0/1 ``N x N`` matrix with a zero diagonal (no
self-loops; the GCN adds them). A perturbation ``s`` is an ``N x N`` matrix whose strict upper
triangle holds one value per pair (in ``[0, 1]``; binary for a discrete attack) and which is zero
on and below the diagonal. Flipping is ``adj' = adj + (1 - 2 adj) * (s + s^T)``.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import ConfigError


def dense_adjacency(graph: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The symmetric 0/1 adjacency of a DGL graph: directions merged, duplicates and self-loops dropped.

    Args:
        graph: a homogeneous DGL graph.
        dtype: a floating dtype for the matrix.

    Returns:
        The dense ``N x N`` adjacency (zero diagonal).

    Example:
        A one-way edge 1 -> 2 becomes both directions; the self-loop on node 2 is dropped.

        >>> import dgl
        >>> from dgl_bilevel.robust import dense_adjacency
        >>> dense_adjacency(dgl.graph(([0, 1, 1, 2], [1, 0, 2, 2])))
        tensor([[0., 1., 0.],
                [1., 0., 1.],
                [0., 1., 0.]])
    """
    n = graph.num_nodes()
    src, dst = graph.edges()
    adj = torch.zeros(n, n, dtype=dtype)
    adj[src.long(), dst.long()] = 1.0
    adj = torch.maximum(adj, adj.T)
    adj.fill_diagonal_(0.0)
    return adj


def num_pairs(n: int) -> int:
    """Node pairs an attack may flip: ``n (n - 1) / 2``.

    Example:
        >>> from dgl_bilevel.robust import num_pairs
        >>> num_pairs(6), num_pairs(2708)
        (15, 3665278)
    """
    return n * (n - 1) // 2


def num_undirected_edges(adj: torch.Tensor) -> int:
    """Edges of a symmetric adjacency, each pair counted once.

    Args:
        adj: a symmetric adjacency (see :func:`dense_adjacency`).

    Returns:
        The number of pairs ``i < j`` joined by an edge.

    Example:
        >>> import dgl
        >>> from dgl_bilevel.robust import dense_adjacency, num_undirected_edges
        >>> two_triangles = dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3]))
        >>> num_undirected_edges(dense_adjacency(two_triangles))
        7
    """
    return int(torch.triu(adj, 1).sum().round())


def budget_from_rate(rate: float, num_edges: int) -> int:
    """``round(rate * num_edges)``: the number of flips allowed at a perturbation rate.

    Args:
        rate: the perturbation rate, a fraction of the edges in [0, 1].
        num_edges: the graph's undirected edges (:func:`num_undirected_edges`).

    Returns:
        The budget, an int.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``rate`` is not a number in [0, 1] or ``num_edges`` is negative.

    Example:
        5% of Cora's 5,278 undirected edges:

        >>> from dgl_bilevel.robust import budget_from_rate
        >>> budget_from_rate(0.05, 5278)
        264
        >>> budget_from_rate(5, 5278)
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: the perturbation rate must be a number in [0, 1] ..., got 5
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or not 0 <= rate <= 1:
        raise ConfigError(f"the perturbation rate must be a number in [0, 1] (a fraction of the edges), got {rate!r}")
    if num_edges < 0:
        raise ConfigError(f"num_edges must be >= 0, got {num_edges}")
    return int(round(rate * num_edges))


def check_budget(budget: Any, n: int) -> int:
    """``budget`` as an int in ``[0, n (n - 1) / 2]``, or a ConfigError saying what is wrong.

    Args:
        budget: the number of edge flips (an int, or a float with a whole value).
        n: the number of nodes.

    Returns:
        ``budget`` as an int.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``budget`` is not a whole number, is negative or exceeds the node pairs.

    Example:
        >>> from dgl_bilevel.robust import check_budget
        >>> check_budget(3.0, n=6)
        3
        >>> check_budget(16, n=6)
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: the budget (16 flips) exceeds the 15 node pairs of a 6-node graph
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not float(budget).is_integer():
        raise ConfigError(f"the budget must be a whole number of edge flips, got {budget!r}")
    budget = int(budget)
    if budget < 0:
        raise ConfigError(f"the budget must be >= 0 edge flips, got {budget}")
    if budget > num_pairs(n):
        raise ConfigError(f"the budget ({budget} flips) exceeds the {num_pairs(n)} node pairs of a {n}-node graph")
    return budget


def check_adjacency(adj: Any) -> torch.Tensor:
    """A ConfigError unless ``adj`` is a square, symmetric 0/1 float matrix with a zero diagonal.

    Args:
        adj: the matrix to check.

    Returns:
        ``adj`` itself.

    Raises:
        ~dgl_bilevel.errors.ConfigError: saying which property fails.

    Example:
        >>> import torch
        >>> from dgl_bilevel.robust import check_adjacency
        >>> check_adjacency(torch.tensor([[0.0, 1.0], [1.0, 0.0]])).shape
        torch.Size([2, 2])
        >>> check_adjacency(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: the adjacency must be symmetric, 0/1, with a zero diagonal ...
    """
    if not isinstance(adj, torch.Tensor) or adj.dim() != 2 or adj.shape[0] != adj.shape[1]:
        shape = tuple(adj.shape) if isinstance(adj, torch.Tensor) else type(adj).__name__
        raise ConfigError(f"the adjacency must be a square N x N tensor (see dense_adjacency), got {shape}")
    if not adj.is_floating_point():
        raise ConfigError(f"the adjacency must be a floating tensor, got dtype {adj.dtype}")
    if not bool(((adj == 0) | (adj == 1)).all()) or not torch.equal(adj, adj.T) or bool(adj.diagonal().any()):
        raise ConfigError("the adjacency must be symmetric, 0/1, with a zero diagonal (dense_adjacency builds one)")
    return adj


def symmetric(s: torch.Tensor) -> torch.Tensor:
    """``s + s^T`` for a strictly upper-triangular ``s``: one value per unordered pair, both directions.
    (A contiguous copy of the transpose first: adding a transposed view is three times slower.)

    Example:
        >>> import torch
        >>> from dgl_bilevel.robust import symmetric
        >>> s = torch.zeros(3, 3)
        >>> s[0, 2] = 0.25
        >>> symmetric(s)
        tensor([[0.0000, 0.0000, 0.2500],
                [0.0000, 0.0000, 0.0000],
                [0.2500, 0.0000, 0.0000]])
    """
    return s + s.T.contiguous()


def flip(adj: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``adj + (1 - 2 adj) * (s + s^T)``: binary ``s`` flips pairs; fractional ``s`` interpolates
    (the continuous relaxation). Differentiable in ``s``.

    Args:
        adj: a symmetric 0/1 adjacency.
        s: a strictly upper-triangular perturbation, entries in [0, 1].

    Returns:
        The perturbed (symmetric) adjacency.

    Example:
        Flipping pair (0, 1) removes that edge; flipping (0, 5) adds one.

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.robust import dense_adjacency, flip
        >>> adj = dense_adjacency(dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3])))
        >>> s = torch.zeros(6, 6)
        >>> s[0, 1] = s[0, 5] = 1.0
        >>> adj[0].tolist(), flip(adj, s)[0].tolist()
        ([0.0, 1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0, 1.0])
        >>> s[0, 5] = 0.5  # relaxed: half an edge, in both directions
        >>> flip(adj, s)[5, 0].item()
        0.5
    """
    return torch.addcmul(adj, 1.0 - 2.0 * adj, symmetric(s))


class FlipSpace:
    """The perturbations of one adjacency, with ``1 - 2 adj`` computed once: ``apply(s)`` is
    :func:`flip` and ``pair_gradient(g)`` maps ``dL/dadj'`` to ``dL/ds`` on the strict upper
    triangle, ``(1 - 2 adj)_ij (g_ij + g_ji)``, without autograd through the flip.

    Args:
        adj: the clean adjacency (checked by :func:`check_adjacency`).

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``adj`` is not a valid adjacency.

    Example:
        ``pair_gradient`` agrees with autograd through :func:`flip` on the pairs (the strict
        upper triangle):

        >>> import torch
        >>> from dgl_bilevel.robust import FlipSpace, flip
        >>> adj = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> space = FlipSpace(adj)
        >>> s = torch.triu(torch.full((3, 3), 0.5), 1).requires_grad_(True)
        >>> weights = torch.arange(9.0).reshape(3, 3)
        >>> (flip(adj, s) * weights).sum().backward()
        >>> torch.equal(space.pair_gradient(weights), torch.triu(s.grad, 1)), space.num_nodes
        (True, 3)
        >>> space.apply(s.detach())
        tensor([[0.0000, 0.5000, 0.5000],
                [0.5000, 0.0000, 0.5000],
                [0.5000, 0.5000, 0.0000]])
    """

    def __init__(self, adj: torch.Tensor) -> None:
        self.adj = check_adjacency(adj)
        self.sign = 1.0 - 2.0 * adj
        self.sign_upper = torch.triu(self.sign, 1)

    @property
    def num_nodes(self) -> int:
        return self.adj.shape[0]

    def apply(self, s: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.adj, self.sign, symmetric(s))

    def pair_gradient(self, grad_adj: torch.Tensor) -> torch.Tensor:
        return self.sign_upper * (grad_adj + grad_adj.T.contiguous())


def flips_of(s: torch.Tensor) -> torch.Tensor:
    """The pairs ``(i, j)``, ``i < j``, set in a binary strictly upper-triangular ``s`` (``[m, 2]``).

    Example:
        >>> import torch
        >>> from dgl_bilevel.robust import flips_of
        >>> s = torch.zeros(4, 4)
        >>> s[0, 3] = s[1, 2] = 1.0
        >>> flips_of(s).tolist()
        [[0, 3], [1, 2]]
    """
    return torch.triu(s, 1).nonzero()
