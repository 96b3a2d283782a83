"""What every outer variable looks like: a module that outputs one weight per edge of a support graph."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .._dgl import dgl


class GraphStructure(nn.Module):
    """Base class of learnable graph structures.

    A structure owns a fixed *support* graph (``self.graph``: the observed graph, a power of
    it, a k-NN graph, ...) and returns, from ``forward()``, a differentiable weight for each
    support edge. The inner problem runs on ``self.graph`` with those weights.
    """

    graph: "dgl.DGLGraph"

    def forward(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def project_(self) -> None:
        """Restore feasibility after an optimizer step (only constrained structures need it)."""

    @property
    def num_edges(self) -> int:
        return self.graph.num_edges()

    @torch.no_grad()
    def weighted_graph(self, weight: Optional[torch.Tensor] = None, key: str = "w") -> "dgl.DGLGraph":
        """A plain DGLGraph on the support, with the current (or given) weights in ``edata[key]``.

        The result is detached: hand it to any DGL module that takes ``edge_weight``, or save it
        with ``dgl.save_graphs``.
        """
        g = dgl.graph(self.graph.edges(), num_nodes=self.graph.num_nodes())
        g.edata[key] = (self() if weight is None else weight).detach().clone()
        return g
