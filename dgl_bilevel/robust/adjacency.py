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
    """The symmetric 0/1 adjacency of a DGL graph: directions merged, duplicates and self-loops dropped."""
    n = graph.num_nodes()
    src, dst = graph.edges()
    adj = torch.zeros(n, n, dtype=dtype)
    adj[src.long(), dst.long()] = 1.0
    adj = torch.maximum(adj, adj.T)
    adj.fill_diagonal_(0.0)
    return adj


def num_pairs(n: int) -> int:
    """Node pairs an attack may flip: ``n (n - 1) / 2``."""
    return n * (n - 1) // 2


def num_undirected_edges(adj: torch.Tensor) -> int:
    """Edges of a symmetric adjacency, each pair counted once."""
    return int(torch.triu(adj, 1).sum().round())


def budget_from_rate(rate: float, num_edges: int) -> int:
    """``round(rate * num_edges)``: the number of flips allowed at a perturbation rate."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or not 0 <= rate <= 1:
        raise ConfigError(f"the perturbation rate must be a number in [0, 1] (a fraction of the edges), got {rate!r}")
    if num_edges < 0:
        raise ConfigError(f"num_edges must be >= 0, got {num_edges}")
    return int(round(rate * num_edges))


def check_budget(budget: Any, n: int) -> int:
    """``budget`` as an int in ``[0, n (n - 1) / 2]``, or a ConfigError saying what is wrong."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not float(budget).is_integer():
        raise ConfigError(f"the budget must be a whole number of edge flips, got {budget!r}")
    budget = int(budget)
    if budget < 0:
        raise ConfigError(f"the budget must be >= 0 edge flips, got {budget}")
    if budget > num_pairs(n):
        raise ConfigError(f"the budget ({budget} flips) exceeds the {num_pairs(n)} node pairs of a {n}-node graph")
    return budget


def check_adjacency(adj: Any) -> torch.Tensor:
    """A ConfigError unless ``adj`` is a square, symmetric 0/1 float matrix with a zero diagonal."""
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
    (A contiguous copy of the transpose first: adding a transposed view is three times slower.)"""
    return s + s.T.contiguous()


def flip(adj: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``adj + (1 - 2 adj) * (s + s^T)``: binary ``s`` flips pairs; fractional ``s`` interpolates
    (the continuous relaxation). Differentiable in ``s``."""
    return torch.addcmul(adj, 1.0 - 2.0 * adj, symmetric(s))


class FlipSpace:
    """The perturbations of one adjacency, with ``1 - 2 adj`` computed once: ``apply(s)`` is
    :func:`flip` and ``pair_gradient(g)`` maps ``dL/dadj'`` to ``dL/ds`` on the strict upper
    triangle, ``(1 - 2 adj)_ij (g_ij + g_ji)``, without autograd through the flip."""

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
    """The pairs ``(i, j)``, ``i < j``, set in a binary strictly upper-triangular ``s`` (``[m, 2]``)."""
    return torch.triu(s, 1).nonzero()
