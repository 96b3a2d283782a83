"""The part of a graph an ``L``-layer message-passing GNN's loss on some nodes can read.

A GNN trained on ``v_in`` only (the semi-supervised setting the gradient-scarcity paper studies)
has an inner objective that depends on the features of the ``L``-hop in-neighbourhood of
``v_in`` and on the edges pointing into its ``(L-1)``-hop in-neighbourhood -- nothing else. On
Cora's public split (140 training nodes, 2-layer GNN) that is 1,664 of 2,708 nodes and 3,834 of
10,556 edges. Computing the inner objective, its gradient and its second derivatives on that
subgraph gives the same numbers (each kept node's layer outputs see all of its in-edges, and the
loss rows are the same), for a fraction of the sparse and dense products; every other edge's
derivative of the inner objective is exactly zero. This is the gradient scarcity of the paper
seen from the implementation side: only these edges ever receive an inner gradient.

:class:`ReceptiveField` holds the kept nodes and edges and maps between the full graph and the
subgraph; for ``S`` stacked seeds (``S`` copies of the graph, one weight vector of ``S * E``) it
keeps the union of the seeds' fields in every copy.
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence

import dgl
import torch

from ..ops import Features, SparseFeatures

#: Below this fraction of kept nodes or kept edges the subgraph is used; above both, the index
#: bookkeeping costs more than the smaller products save.
MAX_KEPT_FRACTION = 0.9


class ReceptiveField:
    """Nodes and edges of ``graph`` within ``num_layers`` hops upstream of ``loss_nodes``.

    Args:
        graph: the full (homogeneous) graph.
        loss_nodes: node ids whose outputs enter the loss (any number of seeds' sets; their union is used).
        num_layers: message-passing layers of the model.

    Attributes:
        nodes: kept node ids, ascending (the subgraph's node ``i`` is ``nodes[i]``).
        edges: kept edge ids, ascending (the subgraph's edge ``j`` is ``edges[j]``): those whose
            destination lies within ``num_layers - 1`` hops of ``loss_nodes``.
        graph: the subgraph on ``nodes`` with ``edges``.
    """

    def __init__(self, graph: "dgl.DGLGraph", loss_nodes: Sequence[torch.Tensor], num_layers: int) -> None:
        if num_layers < 1:
            raise ValueError(f"a receptive field needs at least one layer, got {num_layers}")
        self.num_nodes, self.num_edges = graph.num_nodes(), graph.num_edges()
        src, dst = graph.edges()
        inside = torch.zeros(self.num_nodes, dtype=torch.bool)
        inside[torch.cat([torch.as_tensor(n).reshape(-1) for n in loss_nodes])] = True
        for hop in range(num_layers):
            if hop == num_layers - 1:  # the last hop's edges are the ones whose destination is inside now
                kept_edges = inside[dst]
            reached = inside.clone()
            reached[src[inside[dst]]] = True
            inside = reached
        self.nodes = inside.nonzero().squeeze(1)
        self.edges = kept_edges.nonzero().squeeze(1)
        self.position = torch.full((self.num_nodes,), -1, dtype=torch.long)
        self.position[self.nodes] = torch.arange(self.nodes.numel())
        self.graph = dgl.graph((self.position[src[self.edges]], self.position[dst[self.edges]]),
                               num_nodes=self.nodes.numel(), idtype=graph.idtype)

    @classmethod
    def worth_it(cls, graph: "dgl.DGLGraph", loss_nodes: Sequence[torch.Tensor], num_layers: int) -> Optional["ReceptiveField"]:
        """The field, or None when it keeps more than :data:`MAX_KEPT_FRACTION` of both the nodes
        and the edges (training sets covering most of the graph)."""
        field = cls(graph, loss_nodes, num_layers)
        if field.nodes.numel() > MAX_KEPT_FRACTION * field.num_nodes and \
                field.edges.numel() > MAX_KEPT_FRACTION * field.num_edges:
            return None
        return field

    # ------------------------------------------------------------- mapping
    def restrict_weights(self, edge_weight: torch.Tensor, copies: int = 1) -> torch.Tensor:
        """The kept edges' weights, copy by copy, from a ``[copies * E]`` vector."""
        return edge_weight.reshape(copies, self.num_edges).index_select(1, self.edges).reshape(-1)

    def expand_edge_values(self, values: torch.Tensor, copies: int = 1) -> torch.Tensor:
        """A ``[copies * E]`` vector holding ``values`` (per kept edge, copy by copy) and zero elsewhere."""
        full = values.new_zeros(copies, self.num_edges)
        return full.index_copy_(1, self.edges, values.reshape(copies, -1)).reshape(-1)

    def restrict_rows(self, nodes: torch.Tensor, copy: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Kept-node positions of ``nodes`` (all inside the field), in copy ``copy`` of the stack."""
        local = self.position[nodes]
        if (local < 0).any():
            raise ValueError("a node outside the receptive field was asked for")
        return local if copy is None else local + copy * self.nodes.numel()

    def restrict_features(self, features: Features) -> Features:
        """The kept nodes' rows of a dense or :class:`~dgl_bilevel.ops.SparseFeatures` matrix (same kind)."""
        if isinstance(features, SparseFeatures):
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                rows = features.matrix.to_sparse_coo().index_select(0, self.nodes)
            return SparseFeatures(rows.to_dense())
        return features.index_select(0, self.nodes)

    def __repr__(self) -> str:
        return (f"ReceptiveField(nodes={self.nodes.numel()}/{self.num_nodes}, "
                f"edges={self.edges.numel()}/{self.num_edges})")
