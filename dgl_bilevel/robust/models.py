"""A two-layer GCN on a dense adjacency, differentiable in the adjacency itself.

``dgl_bilevel.models.GCN`` takes a DGL graph with edge weights: an attack that may add any of the
``N (N - 1) / 2`` pairs would need a graph over all of them (see :mod:`.adjacency`), so the
robust-training code uses this dense twin instead. Same maths (Kipf & Welling 2017):
``softmax(P relu(P X W1) W2)`` with ``P = D^-1/2 (A + I) D^-1/2``, ``D`` the degrees of ``A + I``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def propagate(adj: torch.Tensor, h: torch.Tensor, dinv: torch.Tensor) -> torch.Tensor:
    """``D^-1/2 (A + I) D^-1/2 h`` without forming ``A + I`` (one dense product, no N x N temporaries)."""
    h = dinv.unsqueeze(1) * h
    return dinv.unsqueeze(1) * (adj @ h + h)


def inverse_sqrt_degrees(adj: torch.Tensor) -> torch.Tensor:
    """``(deg(A) + 1)^-1/2``: self-loops included. A relaxed (fractional) adjacency keeps degrees >= 1."""
    return (adj.sum(1) + 1.0).rsqrt()


def dropout_features(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout; on a sparse COO tensor only its stored entries are dropped (the zeros would stay
    zero anyway), which on bag-of-words features is ten times cheaper than dense dropout."""
    if not training or p == 0:
        return x
    if x.is_sparse:
        x = x.coalesce()
        return torch.sparse_coo_tensor(x.indices(), F.dropout(x.values(), p, True), x.shape,
                                       is_coalesced=True, check_invariants=False)
    return F.dropout(x, p, True)


class DenseGCN(nn.Module):
    """Two GCN layers (hidden width ``hidden``, ReLU, dropout on the input and the hidden layer).

    ``forward(adj, features)`` returns class logits ``[N, classes]``; ``adj`` is a symmetric
    ``N x N`` matrix without self-loops, possibly fractional and requiring grad; ``features``
    dense or sparse COO (``features.to_sparse()``: cheaper dropout and projection).

    Args:
        in_feats: input feature width.
        hidden: hidden width.
        classes: output width.
        dropout: dropout rate in [0, 1).

    Raises:
        ~dgl_bilevel.errors.ConfigError: on a non-positive size or a dropout outside [0, 1).

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.robust import DenseGCN, dense_adjacency
        >>> _ = torch.manual_seed(0)
        >>> adj = dense_adjacency(dgl.graph(([0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3])))
        >>> model = DenseGCN(in_feats=6, hidden=8, classes=2).eval()
        >>> logits = model(adj, torch.eye(6))
        >>> logits.shape, torch.allclose(model(adj, torch.eye(6).to_sparse()), logits)
        (torch.Size([6, 2]), True)
        >>> relaxed = adj.clone().requires_grad_(True)  # differentiable in the adjacency
        >>> model(relaxed, torch.eye(6)).sum().backward()
        >>> relaxed.grad.shape
        torch.Size([6, 6])
    """

    def __init__(self, in_feats: int, hidden: int, classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        if min(in_feats, hidden, classes) < 1:
            raise ConfigError(f"DenseGCN needs positive sizes, got in_feats={in_feats}, hidden={hidden}, classes={classes}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.lin1 = nn.Linear(in_feats, hidden, bias=False)
        self.lin2 = nn.Linear(hidden, classes, bias=False)
        self.bias1 = nn.Parameter(torch.zeros(hidden))  # after propagation, as in Kipf & Welling
        self.bias2 = nn.Parameter(torch.zeros(classes))
        self.dropout = dropout

    def forward(self, adj: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        dinv = inverse_sqrt_degrees(adj)
        h = dropout_features(features, self.dropout, self.training)
        h = torch.sparse.mm(h, self.lin1.weight.T) if h.is_sparse else self.lin1(h)
        h = F.relu(propagate(adj, h, dinv) + self.bias1)
        h = F.dropout(h, self.dropout, self.training)
        return propagate(adj, self.lin2(h), dinv) + self.bias2
