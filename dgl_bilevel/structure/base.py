"""What every outer variable looks like: a module that outputs one weight per edge of a support graph."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

from .._dgl import dgl

if TYPE_CHECKING:
    from .sampling import GraphSampler


class GraphStructure(nn.Module):
    """Base class of learnable graph structures.

    A structure owns a fixed *support* graph (``self.graph``: the observed graph, a power of
    it, a k-NN graph, ...) and returns, from ``forward()``, a differentiable weight for each
    support edge. The inner problem runs on ``self.graph`` with those weights.

    Subclasses set ``self.graph`` and implement ``forward()``; constrained ones also override
    :meth:`project_`. ``weighted_graph()`` exports the current weights as a plain DGLGraph.

    Example:
        One learnable weight shared by every edge:

        >>> import dgl
        >>> import torch
        >>> ring = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0])))  # 12 edges
        >>> from dgl_bilevel.structure import GraphStructure
        >>> class SharedWeight(GraphStructure):
        ...     def __init__(self, graph):
        ...         super().__init__()
        ...         self.graph = graph
        ...         self.logit = torch.nn.Parameter(torch.zeros(()))
        ...     def forward(self):
        ...         return torch.sigmoid(self.logit).expand(self.graph.num_edges())
        >>> structure = SharedWeight(ring)
        >>> structure.num_edges, structure().shape, structure.sampler, structure.frozen
        (12, torch.Size([12]), None, False)
        >>> structure.weighted_graph().edata["w"][:3]
        tensor([0.5000, 0.5000, 0.5000])
    """

    graph: "dgl.DGLGraph"
    #: How graphs are drawn from the structure's output when it is a vector of edge probabilities
    #: (:class:`~dgl_bilevel.structure.sampling.GraphSampler`); None: the output is used as edge weights.
    sampler: Optional["GraphSampler"] = None
    #: True for a structure held at its initial value (the frozen-graph control): the outer loop
    #: runs, trains and evaluates as usual but takes no hypergradient and no step.
    frozen: bool = False

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
