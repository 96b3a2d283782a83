"""A graph-regularised MLP: the energy's graph term as a training regulariser (P-reg / GraphMLP style).

Training minimises ``CE(Z[mask], labels[mask]) + lam * G_rho(T(Z))`` with ``Z`` the MLP's outputs
on every node, ``T`` softmax (``on="probabilities"``) or the identity (``on="logits"``) and
``G_rho`` the energy's graph term (:mod:`.graph_terms`). This is the BloomGML energy with the
inner minimisation replaced by the MLP's prediction: the graph shapes training only, and
inference is ``model(feat)`` -- no graph, no message passing, MLP cost.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._dgl import dgl
from ..errors import ConfigError
from ..ops import Features
from .graph_terms import LaplacianTerm, as_edge_weight
from .layers import MLP
from .penalties import Penalty, make_penalty

OUTPUTS = ("probabilities", "logits")


class GraphRegularizedMLP(nn.Module):
    """An MLP whose training loss adds ``lam * G_rho`` of its outputs on the graph.

    Args:
        in_feats, hidden, out_feats, num_layers, dropout: the MLP (sparse-aware first layer).
        lam: weight of the graph regulariser.
        penalty: ``rho`` (a name or :class:`~.penalties.Penalty`).
        normalize: ``"none"`` or ``"sym"`` (see :mod:`.graph_terms`).
        on: regularise ``"probabilities"`` (softmax of the logits) or the ``"logits"``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown ``on``, ``lam < 0``, or as :class:`~.layers.MLP` and
            :func:`~.penalties.make_penalty`.

    Example:
        >>> import dgl
        >>> import torch
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> from dgl_bilevel.energy import GraphRegularizedMLP
        >>> _ = torch.manual_seed(0)
        >>> model = GraphRegularizedMLP(in_feats=3, hidden=8, out_feats=2, lam=0.5, on="logits")
        >>> feat = torch.randn(4, 3)
        >>> model(feat).shape  # inference: the MLP alone, no graph
        torch.Size([4, 2])
        >>> logits = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> model.regularizer(graph, logits).item()  # 0.5 * ||(1, -1)||^2 on the one edge 1-2 that differs
        1.0
        >>> loss = model.loss(graph, feat, torch.tensor([0, 0, 1, 1]), torch.tensor([True, False, False, True]))
        >>> loss.shape, bool(loss > 0)
        (torch.Size([]), True)
    """

    accepts_sparse_features = True

    def __init__(
        self,
        in_feats: int,
        hidden: int,
        out_feats: int,
        num_layers: int = 2,
        dropout: float = 0.0,
        lam: float = 1.0,
        penalty: "str | Penalty" = "quadratic",
        normalize: str = "none",
        on: str = "probabilities",
    ) -> None:
        super().__init__()
        if on not in OUTPUTS:
            raise ConfigError(f"on must be one of {OUTPUTS}, got {on!r}")
        if not lam >= 0:
            raise ConfigError(f"lam must be >= 0, got {lam}")
        self.mlp = MLP(in_feats, hidden, out_feats, num_layers, dropout)
        self.lam, self.on = float(lam), on
        self.penalty = make_penalty(penalty)
        self.term = LaplacianTerm(normalize)

    def forward(self, feat: Features) -> torch.Tensor:
        """Logits for every node: the MLP alone (inference needs no graph)."""
        return self.mlp(feat)

    def regularizer(self, graph: "dgl.DGLGraph", logits: torch.Tensor, edge_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``lam * G_rho(T(logits))`` on ``graph``."""
        z = torch.softmax(logits, -1) if self.on == "probabilities" else logits
        bound = self.term.bind(graph, as_edge_weight(graph, edge_weight, z))
        return self.lam * bound.value(z, self.penalty)

    def loss(self, graph: "dgl.DGLGraph", feat: Features, labels: torch.Tensor, mask: torch.Tensor,
             edge_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Training loss: cross-entropy on ``mask`` plus the graph regulariser on every node."""
        logits = self(feat)
        return F.cross_entropy(logits[mask], labels[mask]) + self.regularizer(graph, logits, edge_weight)
