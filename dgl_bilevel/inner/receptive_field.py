"""The part of a graph an ``L``-layer message-passing GNN's loss on some nodes can read, layer by layer.

A GNN trained on ``v_in`` only (the semi-supervised setting the gradient-scarcity paper studies)
has an inner objective that depends on the features of the ``L``-hop in-neighbourhood of
``v_in`` and on the edges pointing into its ``(L-1)``-hop in-neighbourhood -- nothing else; and
its layer ``l`` is needed only on the ``(L-l)``-hop neighbourhood (the last layer on ``v_in``
alone). On Cora's public split (140 training nodes, 2-layer GNN) the first layer reads 1,664 of
2,708 nodes through 3,834 of 10,556 edges into 644 nodes, the second those 644 through 638 edges
into the 140. Computing the inner objective, its gradient and its second derivatives that way
gives the same numbers (each output row still sees all of its in-edges, and the loss rows are
the same), for a fraction of the sparse and dense products; every other edge's derivative of the
inner objective is exactly zero. This is the gradient scarcity of the paper seen from the
implementation side: only these edges ever receive an inner gradient.

:class:`ReceptiveField` holds the kept nodes and edges, builds each layer's DGL block and maps
edge weights and per-edge values between the full graph and the blocks; for ``S`` stacked seeds
(``S`` copies of the graph, one weight vector of ``S * E``) it keeps the union of the seeds'
fields in every copy.
"""
from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch

from .._dgl import dgl
from ..ops import Features, SparseFeatures

#: At or below this fraction of kept nodes or of kept edges the field is used; above both it would
#: save little and still add its bookkeeping (a chosen threshold, not a tuned one).
MAX_KEPT_FRACTION = 0.9


class ReceptiveField:
    """Nodes and edges of ``graph`` within ``num_layers`` hops upstream of ``loss_nodes``, layer by layer.

    With ``K_0`` the loss nodes and ``K_j`` the nodes within ``j`` hops upstream, layer ``l`` (``0``
    first) of an ``L``-layer model is needed on the nodes ``K_(L-1-l)`` only, reading ``K_(L-l)``
    through the edges into ``K_(L-1-l)``. Nodes are ordered so that every ``K_j`` is a prefix
    (``K_0`` first, then ``K_1 \\ K_0``, ...), and edges by their destination's position, so
    that every layer's edges are a prefix of the kept edges: each layer is a DGL block
    (:meth:`layer_graph`) on prefixes, like DGL's message flow graphs.

    Args:
        graph: the full (homogeneous) graph.
        loss_nodes: node ids whose outputs enter the loss (any number of seeds' sets; their union is used).
        num_layers: message-passing layers of the model.

    Attributes:
        nodes: kept node ids (``K_L``), in the nested order above.
        counts: ``[|K_0|, ..., |K_L|]``.
        edges: kept edge ids (those into ``K_(L-1)``), ordered by their destination's position.
        edge_counts: ``[edges into K_0, ..., edges into K_(L-1)]``.
    """

    def __init__(self, graph: "dgl.DGLGraph", loss_nodes: Sequence[torch.Tensor], num_layers: int) -> None:
        if num_layers < 1:
            raise ValueError(f"a receptive field needs at least one layer, got {num_layers}")
        self.num_nodes, self.num_edges, self.num_layers = graph.num_nodes(), graph.num_edges(), num_layers
        src, dst = graph.edges()
        hop = torch.full((self.num_nodes,), num_layers + 1, dtype=torch.long)  # hops upstream of the loss
        hop[torch.cat([torch.as_tensor(n).reshape(-1) for n in loss_nodes])] = 0
        for j in range(1, num_layers + 1):
            reached = src[hop[dst] < j]
            hop[reached] = torch.minimum(hop[reached], torch.tensor(j))
        order = torch.argsort(hop * self.num_nodes + torch.arange(self.num_nodes))
        self.counts = [int((hop <= j).sum()) for j in range(num_layers + 1)]
        self.nodes = order[: self.counts[-1]]
        self.position = torch.full((self.num_nodes,), -1, dtype=torch.long)
        self.position[self.nodes] = torch.arange(self.nodes.numel())
        kept = (hop[dst] <= num_layers - 1).nonzero().squeeze(1)
        self.edges = kept[torch.argsort(self.position[dst[kept]], stable=True)]
        self.edge_counts = [int((hop[dst[self.edges]] <= j).sum()) for j in range(num_layers)]
        self._src, self._dst = self.position[src[self.edges]], self.position[dst[self.edges]]
        self._idtype = graph.idtype

    @classmethod
    def worth_it(cls, graph: "dgl.DGLGraph", loss_nodes: Sequence[torch.Tensor], num_layers: int) -> Optional["ReceptiveField"]:
        """The field, or None when it keeps more than :data:`MAX_KEPT_FRACTION` of both the nodes
        and the edges (training sets covering most of the graph)."""
        field = cls(graph, loss_nodes, num_layers)
        if field.nodes.numel() > MAX_KEPT_FRACTION * field.num_nodes and \
                field.edges.numel() > MAX_KEPT_FRACTION * field.num_edges:
            return None
        return field

    def layer_sizes(self, layer: int) -> tuple[int, int, int]:
        """``(input rows, output rows, edges)`` of layer ``layer`` (0 = the first) for one copy."""
        level = self.num_layers - 1 - layer
        return self.counts[level + 1], self.counts[level], self.edge_counts[level]

    def layer_graph(self, layer: int, copies: int = 1) -> "dgl.DGLGraph":
        """Layer ``layer``'s block: its input rows as sources, its output rows as destinations,
        its edges (a prefix of :attr:`edges`) copy after copy."""
        n_in, n_out, m = self.layer_sizes(layer)
        offsets = torch.arange(copies).repeat_interleave(m)
        src = self._src[:m].repeat(copies) + offsets * n_in
        dst = self._dst[:m].repeat(copies) + offsets * n_out
        return dgl.create_block((src.to(self._idtype), dst.to(self._idtype)), num_src_nodes=copies * n_in,
                                num_dst_nodes=copies * n_out, idtype=self._idtype)

    # ------------------------------------------------------------- mapping
    def restrict_weights(self, edge_weight: torch.Tensor, copies: int = 1) -> torch.Tensor:
        """The kept edges' weights as ``[copies, kept edges]``, from a ``[copies * E]`` vector."""
        return edge_weight.reshape(copies, self.num_edges).index_select(1, self.edges)

    def layer_weights(self, kept_weights: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer ``layer``'s edge weights, copy after copy, from :meth:`restrict_weights`' result."""
        m = self.layer_sizes(layer)[2]
        return kept_weights[:, :m].reshape(-1)

    def expand_edge_values(self, values: torch.Tensor, copies: int = 1) -> torch.Tensor:
        """A ``[copies * E]`` vector holding ``values`` (``[copies, kept edges]``) and zero elsewhere."""
        full = values.new_zeros(copies, self.num_edges)
        return full.index_copy_(1, self.edges, values.reshape(copies, -1)).reshape(-1)

    def restrict_rows(self, nodes: torch.Tensor, copy: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Positions of loss nodes among the last layer's output rows (``K_0``), in copy ``copy``."""
        local = self.position[nodes]
        if (local < 0).any() or (local >= self.counts[0]).any():
            raise ValueError("a node outside the loss nodes the field was built for was asked for")
        return local if copy is None else local + copy * self.counts[0]

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
