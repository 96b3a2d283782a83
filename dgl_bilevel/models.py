"""Node models for the trained-GNN inner problem.

Every model is an ``nn.Module`` called as ``model(graph, feat, edge_weight=w)``, like DGL's own
convolutions, so any ``dgl.nn`` module that takes ``edge_weight`` fits too. Models that set
``accepts_sparse_features = True`` receive :class:`~dgl_bilevel.ops.SparseFeatures` for sparse
inputs (Cora's bag of words): they project features *before* aggregating, never aggregating
the raw high-dimensional features.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._dgl import dgl
from .errors import ConfigError
from .ops import Features, project, weighted_sum
from .registry import MODELS


class Projection(nn.Module):
    """``feat @ W + b`` for dense or sparse features (a sparse-aware ``nn.Linear``)."""

    accepts_sparse_features = True

    def __init__(self, in_feats: int, out_feats: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_feats, out_feats))
        self.bias = nn.Parameter(torch.zeros(out_feats)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, feat: Features) -> torch.Tensor:
        out = project(feat, self.weight)
        return out if self.bias is None else out + self.bias


class SumAggConv(nn.Module):
    """The paper's eq. (4) layer: ``X W_self + A (X W_neigh) + b`` with weighted sum aggregation.

    This is PyG's ``GraphConv``; here ``[W_self | W_neigh]`` is applied first as one product,
    so only ``out_feats`` columns are ever aggregated.
    """

    accepts_sparse_features = True

    def __init__(self, in_feats: int, out_feats: int, bias: bool = True) -> None:
        super().__init__()
        self.out_feats = out_feats
        self.weight = nn.Parameter(torch.empty(in_feats, 2 * out_feats))
        self.bias = nn.Parameter(torch.zeros(out_feats)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, graph: "dgl.DGLGraph", feat: Features, edge_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``graph`` may be a DGL block (message-flow graph): ``feat`` are then its source nodes'
        features and the output is for its destination nodes (the first ``num_dst_nodes`` sources)."""
        self_part, neigh_part = torch.split(project(feat, self.weight), self.out_feats, dim=1)
        if edge_weight is None:
            edge_weight = torch.ones(graph.num_edges(), dtype=self_part.dtype, device=self_part.device)
        out = self_part[: graph.num_dst_nodes()] + weighted_sum(graph, neigh_part, edge_weight)
        return out if self.bias is None else out + self.bias

    def forward_seeds(self, graph: "dgl.DGLGraph", feat: Features, edge_weight: torch.Tensor, weight: torch.Tensor,
                      bias: Optional[torch.Tensor]) -> torch.Tensor:
        """``S`` independent copies of this layer at once (:mod:`dgl_bilevel.seeds`).

        ``weight`` is ``[S, in, 2 out]`` and ``bias`` ``[S, out]`` (one copy per seed); ``graph``
        holds ``S`` copies of the ``N``-node graph (``dgl.batch``) and ``edge_weight`` their
        ``S x E`` weights; ``feat`` is the shared ``[N, in]`` input (first layer: one product
        with every copy's weights side by side) or ``[S, N, in]``. Returns ``[S, N, out]``.
        """
        seeds, width = weight.shape[0], weight.shape[1]
        if isinstance(feat, torch.Tensor) and feat.dim() == 3:
            projected = torch.bmm(feat, weight)
        else:  # one product for every seed: [N, in] @ [in, S * 2 out]
            wide = project(feat, weight.permute(1, 0, 2).reshape(width, -1))
            projected = wide.reshape(wide.shape[0], seeds, -1).transpose(0, 1)
        self_part, neigh_part = torch.split(projected, self.out_feats, dim=-1)
        nodes = self_part.shape[1]
        aggregated = weighted_sum(graph, neigh_part.reshape(seeds * nodes, -1), edge_weight)
        out = self_part + aggregated.reshape(seeds, nodes, -1)
        return out if bias is None else out + bias.unsqueeze(1)


@MODELS.register("sumagg", help="the paper's eq. (4) sum-aggregation GNN (PyG's GraphConv)")
class SumAggGNN(nn.Module):
    """A k-layer stack of :class:`SumAggConv` with ELU between layers (the paper's inner GNN)."""

    accepts_sparse_features = True

    def __init__(self, in_feats: int, hidden: int, out_feats: int, num_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        dims = [in_feats] + [hidden] * (num_layers - 1) + [out_feats]
        self.layers = nn.ModuleList(SumAggConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout

    supports_blocks = True

    def forward(self, graph, feat: Features, edge_weight=None) -> torch.Tensor:
        """``graph`` is a DGLGraph, or a list of blocks (one per layer) with a list of per-block
        edge weights (DGL's mini-batch convention)."""
        blocks = graph if isinstance(graph, (list, tuple)) else [graph] * len(self.layers)
        weights = edge_weight if isinstance(edge_weight, (list, tuple)) else [edge_weight] * len(self.layers)
        h = feat
        for i, (layer, block, w) in enumerate(zip(self.layers, blocks, weights)):
            h = layer(block, h, w)
            if i < len(self.layers) - 1:
                h = F.dropout(F.elu(h), self.dropout, self.training)
        return h

    def forward_seeds(self, graph, feat: Features, edge_weight: torch.Tensor, params: dict) -> torch.Tensor:
        """``S`` independent copies of this model (eval mode) at once: ``params`` maps each parameter
        name to its ``[S, ...]`` stack; see :meth:`SumAggConv.forward_seeds`. Returns ``[S, N, out]``."""
        h = feat
        for i, layer in enumerate(self.layers):
            h = layer.forward_seeds(graph, h, edge_weight, params[f"layers.{i}.weight"], params.get(f"layers.{i}.bias"))
            if i < len(self.layers) - 1:
                h = F.elu(h)
        return h


@MODELS.register("gcn", help="Kipf & Welling's GCN with weighted symmetric normalisation")
class GCN(nn.Module):
    """Kipf & Welling's GCN with weighted symmetric normalisation (``dgl.nn.EdgeWeightNorm``).

    The first layer is a sparse-aware projection followed by a weight-free ``GraphConv``,
    which equals ``GraphConv(in, hidden)`` but never multiplies the raw features densely.
    """

    accepts_sparse_features = True

    def __init__(self, in_feats: int, hidden: int, out_feats: int, num_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        dims = [hidden] * (num_layers - 1) + [out_feats]
        self.input = Projection(in_feats, dims[0], bias=False)
        first = dgl.nn.GraphConv(dims[0], dims[0], norm="none", weight=False, allow_zero_in_degree=True)
        self.convs = nn.ModuleList([first])
        for a, b in zip(dims[:-1], dims[1:]):
            self.convs.append(dgl.nn.GraphConv(a, b, norm="none", allow_zero_in_degree=True))
        self.dropout = dropout

    def forward(self, graph, feat: Features, edge_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.input(feat)
        if edge_weight is None:
            edge_weight = torch.ones(graph.num_edges(), dtype=h.dtype, device=h.device)
        return _conv_stack(self.convs, graph, h, symmetric_edge_norm(graph, edge_weight), self.dropout, self.training)


def symmetric_edge_norm(graph, edge_weight: torch.Tensor) -> torch.Tensor:
    """``w_uv / sqrt(d_out(u) d_in(v))`` with weighted degrees: ``dgl.nn.EdgeWeightNorm(norm="both")``'s
    arithmetic, in the same order (the same values for positive weights), where zero weights are
    allowed -- a sampled 0/1 graph or a pruned edge -- and a node whose weighted degree is zero
    gets a zero factor instead of ``inf`` (DGL's refuses any weight <= 0)."""
    if (edge_weight < 0).any():
        raise ConfigError("GCN normalisation needs non-negative edge weights")
    with graph.local_scope():
        graph.edata["_w"] = edge_weight
        reverse = dgl.reverse(graph)
        reverse.edata["_w"] = edge_weight
        reverse.update_all(dgl.function.copy_e("_w", "m"), dgl.function.sum("m", "out_weight"))
        graph.update_all(dgl.function.copy_e("_w", "m"), dgl.function.sum("m", "in_weight"))
        src_norm = _inverse_sqrt(reverse.dstdata["out_weight"])
        dst_norm = _inverse_sqrt(graph.dstdata["in_weight"])
        graph.srcdata["_src"], graph.dstdata["_dst"] = src_norm, dst_norm
        graph.apply_edges(lambda e: {"_n": e.src["_src"] * e.dst["_dst"] * e.data["_w"]})
        return graph.edata["_n"]


def _inverse_sqrt(degree: torch.Tensor) -> torch.Tensor:
    """``degree ** -0.5`` where positive, 0 where the degree is 0 (and no NaN in its gradient)."""
    positive = degree > 0
    return torch.where(positive, torch.pow(torch.where(positive, degree, torch.ones_like(degree)), -0.5),
                       torch.zeros_like(degree))


def _conv_stack(convs, graph, h: torch.Tensor, edge_weight, dropout: float, training: bool) -> torch.Tensor:
    """``dgl.nn`` conv layers in sequence, with ELU and dropout between them (not after the last)."""
    for i, conv in enumerate(convs):
        h = conv(graph, h, edge_weight=edge_weight)
        if i < len(convs) - 1:
            h = F.dropout(F.elu(h), dropout, training)
    return h


@MODELS.register("sage", help="GraphSAGE, mean aggregator with weighted messages")
class GraphSAGE(nn.Module):
    """``dgl.nn.SAGEConv`` layers (mean aggregator, weighted messages); dense features."""

    accepts_sparse_features = False

    def __init__(
        self, in_feats: int, hidden: int, out_feats: int, num_layers: int = 2, dropout: float = 0.0, aggregator: str = "mean"
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        dims = [in_feats] + [hidden] * (num_layers - 1) + [out_feats]
        self.convs = nn.ModuleList(dgl.nn.SAGEConv(a, b, aggregator) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout

    def forward(self, graph, feat: torch.Tensor, edge_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        return _conv_stack(self.convs, graph, feat, edge_weight, self.dropout, self.training)


@MODELS.register("appnp", help="an MLP followed by APPNP propagation")
class APPNPNet(nn.Module):
    """An MLP followed by ``dgl.nn.APPNPConv`` propagation (Klicpera et al.), as in the paper's code."""

    accepts_sparse_features = True

    def __init__(
        self, in_feats: int, hidden: int, out_feats: int, num_layers: int = 2, dropout: float = 0.0, k: int = 10, alpha: float = 0.1
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        dims = [hidden] * (num_layers - 1) + [out_feats]
        self.input = Projection(in_feats, dims[0])
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.propagate = dgl.nn.APPNPConv(k, alpha)
        self.dropout = dropout

    def forward(self, graph, feat: Features, edge_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.input(feat)
        for layer in self.hidden:
            h = layer(F.dropout(F.elu(h), self.dropout, self.training))
        if edge_weight is None:
            return self.propagate(graph, h)
        return appnp_propagate(graph, h, symmetric_edge_norm(graph, edge_weight), self.propagate._k,
                               self.propagate._alpha)


def appnp_propagate(graph, feat: torch.Tensor, norm_weight: torch.Tensor, k: int, alpha: float) -> torch.Tensor:
    """``k`` steps of ``h <- (1 - alpha) A_norm h + alpha h_0`` on already normalised edge weights:
    ``dgl.nn.APPNPConv``'s weighted branch in the same operations (the same values for positive
    weights, edge dropout 0), where zero weights are allowed (DGL's normalisation refuses them)."""
    with graph.local_scope():
        feat_0 = feat
        graph.edata["w"] = norm_weight
        for _ in range(k):
            graph.ndata["h"] = feat
            graph.update_all(dgl.function.u_mul_e("h", "w", "m"), dgl.function.sum("m", "h"))
            feat = (1 - alpha) * graph.ndata.pop("h") + alpha * feat_0
        return feat


def build_model(name: str, in_feats: int, hidden: int, out_feats: int, num_layers: int = 2, **kwargs) -> nn.Module:
    """A registered model by name (:data:`~dgl_bilevel.registry.MODELS`: ``sumagg`` (paper eq. 4),
    ``gcn``, ``sage``, ``appnp``, ...), all built as ``cls(in_feats, hidden, out_feats, num_layers=...)``."""
    return MODELS.build(name, in_feats, hidden, out_feats, num_layers=num_layers, **kwargs)
