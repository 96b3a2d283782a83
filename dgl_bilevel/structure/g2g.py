"""Latent graph learning (G2G): edge weights output by a network of the endpoint features.

    w_ij = output_scale * sigmoid(MLP((x_i - x_j)^2))

on a fixed support (observed graph, a power of it, or a k-NN graph). The outer variables are
the MLP's parameters: every edge shares them, so edges far from the labelled nodes move too
-- the paper's first remedy for gradient scarcity.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._dgl import dgl
from ..errors import ConfigError, DataError
from ..ops import _SparseMatmul, _narrow_indices  # noqa: PLC2701  (the library's constant-sparse product)
from ..registry import STRUCTURES
from .base import GraphStructure


#: What G2G's squared differences can be taken of (see :class:`G2G`'s ``inputs``).
G2G_INPUTS = ("features", "binary", "scaled")
#: Inputs at most this dense take the sparse path (see :class:`G2G`).
SPARSE_MAX_DENSITY = 0.1


def g2g_inputs(features: torch.Tensor, inputs: str) -> torch.Tensor:
    """The node vectors whose squared differences G2G reads (a new tensor)."""
    if inputs not in G2G_INPUTS:
        raise ConfigError(f"G2G inputs must be one of {G2G_INPUTS}, got {inputs!r}")
    if inputs == "binary":
        return (features != 0).to(features.dtype)
    if inputs == "scaled":
        nonzero = features[features != 0]
        return features / nonzero.abs().mean() if nonzero.numel() else features.clone()
    return features.clone()


@STRUCTURES.register("g2g", help="latent graph learning: an MLP of squared feature differences gives each weight")
class G2G(GraphStructure):
    """A graph-to-graph edge model.

    Args:
        graph: the support whose edges get weights.
        features: node features ``[N, D]`` (dense).
        hidden: width of the hidden layers.
        layers: number of hidden layers (the paper: 1 on Cora, 2 on cheaters).
        dropout: dropout on the squared differences while training (the paper's code: 0.5).
        last_layer_scale: multiplies the initial output-layer weights and bias; small values
            start every edge near ``output_scale * sigmoid(0)`` (the paper uses 1e-5 on cheaters).
        output_scale: multiplies the sigmoid.
        chunk_size: edges per chunk when the ``[E, D]`` differences would be large (dense inputs).
        generator: seeds the initialisation.
        inputs: what the squared differences are taken of (:data:`G2G_INPUTS`): ``"features"``
            as given (the paper's code), ``"binary"`` their non-zero indicators, ``"scaled"``
            the features divided by their mean non-zero magnitude. Row-normalised bag-of-words
            features (Cora's, as DGL loads them) give squared differences of about 1e-3, which
            an MLP at the paper's outer learning rate hardly learns to tell apart; ``binary``
            and ``scaled`` make them O(1) (GNN BO+G2G on Cora, docs/results.md).

    Sparse inputs (at most :data:`SPARSE_MAX_DENSITY` non-zero, such as bag-of-words features) never
    form the dense ``[E, D]`` block: the squared differences are non-zero only where one endpoint's
    input is, so they are kept once as a sparse ``[E, D]`` matrix (Cora: 0.35M entries instead of
    15M), dropout draws its mask on those entries alone, and the first layer is a sparse product.
    Same maths as the dense path (equal up to rounding without dropout); with dropout the masks are
    drawn from the same generator in another number, so runs differ from the dense path's draw by draw.

    Raises:
        ~dgl_bilevel.errors.DataError: on a graph without edges or features not ``[N, D]``.
        ~dgl_bilevel.errors.ConfigError: on ``layers`` or ``hidden`` below 1, or unknown ``inputs``.

    Example:
        The weight depends on the endpoints' features only, so ``u->v`` and ``v->u`` agree:

        >>> import dgl
        >>> import torch
        >>> ring = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0])))  # 12 edges
        >>> from dgl_bilevel.structure import G2G
        >>> features = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
        >>> g2g = G2G(ring, features, hidden=4, output_scale=2.0, generator=torch.Generator().manual_seed(0))
        >>> weights = g2g()
        >>> src, dst = ring.edges()
        >>> reverse = ring.edge_ids(dst, src)
        >>> weights.shape, bool(((weights > 0) & (weights < 2)).all()), torch.equal(weights, weights[reverse])
        (torch.Size([12]), True, True)
        >>> sum(p.numel() for p in g2g.parameters())  # (3 * 4 + 4) + (4 + 1): shared by every edge
        21
    """

    def __init__(
        self,
        graph: "dgl.DGLGraph",
        features: torch.Tensor,
        hidden: int = 32,
        layers: int = 1,
        dropout: float = 0.0,
        last_layer_scale: float = 1.0,
        output_scale: float = 1.0,
        chunk_size: int = 1 << 18,
        generator: Optional[torch.Generator] = None,
        inputs: str = "features",
    ) -> None:
        super().__init__()
        if graph.num_edges() == 0:
            raise DataError("graph has no edges: G2G needs a support (observed, power or k-NN graph)")
        if features.dim() != 2 or features.shape[0] != graph.num_nodes():
            raise DataError(f"features must be [num_nodes={graph.num_nodes()}, D], got {tuple(features.shape)}")
        if layers < 1 or hidden < 1:
            raise ConfigError("G2G needs layers >= 1 and hidden >= 1")
        self.graph = graph
        self.register_buffer("features", g2g_inputs(features.detach(), inputs), persistent=False)
        self.inputs = inputs
        dims = [features.shape[1]] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.output = nn.Linear(hidden, 1)
        self.dropout, self.output_scale, self.chunk_size = float(dropout), float(output_scale), int(chunk_size)
        self._init(generator, last_layer_scale)
        src, dst = graph.edges()
        self.register_buffer("src", src, persistent=False)
        self.register_buffer("dst", dst, persistent=False)
        self.sparse = float((self.features != 0).sum()) <= SPARSE_MAX_DENSITY * self.features.numel()
        if self.sparse:
            differences = _difference_pattern(self.features, src, dst)
            for name, tensor in zip(("crow", "col", "at_src", "at_dst", "crow_t", "col_t", "transpose_order"),
                                    differences):
                self.register_buffer(f"_sparse_{name}", tensor, persistent=False)

    @classmethod
    def from_config(cls, config, data, support, generator: Optional[torch.Generator] = None) -> "G2G":
        """The G2G model an experiment configuration describes, on ``support``."""
        return cls(support, data.features, hidden=config.g2g_hidden, layers=config.g2g_layers,
                   dropout=config.g2g_dropout, last_layer_scale=config.g2g_scale, generator=generator,
                   inputs=config.g2g_inputs)

    @torch.no_grad()
    def _init(self, generator: Optional[torch.Generator], last_layer_scale: float) -> None:
        for layer in list(self.hidden) + [self.output]:
            bound = (6.0 / (layer.in_features + layer.out_features)) ** 0.5
            layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
            layer.bias.zero_()
        self.output.weight.mul_(last_layer_scale)

    def edge_logits(self, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        h = (self.features[src] - self.features[dst]) ** 2
        if self.dropout > 0 and self.training:  # F.dropout(p=0) still copies the [E, D] block
            h = F.dropout(h, self.dropout, True)
        for layer in self.hidden:
            h = F.elu(layer(h))
        return self.output(h).squeeze(-1)

    def forward(self) -> torch.Tensor:
        if self.sparse:
            return self.output_scale * torch.sigmoid(self._sparse_logits())
        logits = [self.edge_logits(self.src[i : i + self.chunk_size], self.dst[i : i + self.chunk_size])
                  for i in range(0, self.src.numel(), self.chunk_size)]
        return self.output_scale * torch.sigmoid(torch.cat(logits))

    def _sparse_logits(self) -> torch.Tensor:
        """Every edge's logit from the sparse squared differences (the class docstring)."""
        values = (self._sparse_at_src - self._sparse_at_dst) ** 2
        if self.dropout > 0 and self.training:
            values = F.dropout(values, self.dropout, True)
        num_edges, width = self.src.numel(), self.features.shape[1]
        with warnings.catch_warnings():  # "sparse CSR support is in beta": only its product is used
            warnings.simplefilter("ignore", UserWarning)
            matrix = torch.sparse_csr_tensor(self._sparse_crow, self._sparse_col, values, (num_edges, width),
                                             check_invariants=False)
            matrix_t = torch.sparse_csr_tensor(self._sparse_crow_t, self._sparse_col_t,
                                               values.index_select(0, self._sparse_transpose_order), (width, num_edges),
                                               check_invariants=False)
        first = self.hidden[0]
        h = F.elu(_SparseMatmul.apply(first.weight.t(), matrix, matrix_t) + first.bias)
        for layer in self.hidden[1:]:
            h = F.elu(layer(h))
        return self.output(h).squeeze(-1)

    def extra_repr(self) -> str:
        return (f"num_edges={self.graph.num_edges()}, inputs={self.inputs}, dropout={self.dropout}, "
                f"output_scale={self.output_scale}")


def _difference_pattern(features: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> tuple:
    """Where ``(x_src - x_dst)^2`` can be non-zero, as a sparse ``[E, D]`` pattern: its CSR ``(crow,
    col)``, both endpoints' inputs at each entry (the squares are taken in the forward pass, in the
    module's current dtype, as the dense path takes them), and the transpose's ``(crow, col)`` with
    the order that takes values to it."""
    num_nodes, width = features.shape
    rows, cols = features.nonzero(as_tuple=True)  # row-major order
    node_start = torch.zeros(num_nodes + 1, dtype=torch.long)
    node_start[1:] = torch.cumsum(torch.bincount(rows, minlength=num_nodes), 0)

    def entries(endpoint: torch.Tensor) -> tuple:
        counts = node_start[endpoint + 1] - node_start[endpoint]
        edge = torch.repeat_interleave(torch.arange(endpoint.numel()), counts)
        first = torch.repeat_interleave(node_start[endpoint] - (torch.cumsum(counts, 0) - counts), counts)
        return edge, cols[first + torch.arange(int(counts.sum()))]

    edge_s, col_s = entries(src)
    edge_d, col_d = entries(dst)
    keys = torch.unique(torch.cat([edge_s, edge_d]) * width + torch.cat([col_s, col_d]))  # sorted: CSR order
    edge, col = torch.div(keys, width, rounding_mode="floor"), keys % width
    at_src, at_dst = features[src[edge], col], features[dst[edge], col]
    crow = torch.zeros(src.numel() + 1, dtype=torch.long)
    crow[1:] = torch.cumsum(torch.bincount(edge, minlength=src.numel()), 0)
    transpose_order = torch.argsort(col * max(1, src.numel()) + edge)
    crow_t = torch.zeros(width + 1, dtype=torch.long)
    crow_t[1:] = torch.cumsum(torch.bincount(col, minlength=width), 0)
    crow, col_narrow = _narrow_indices(crow, col.contiguous())
    crow_t, col_t = _narrow_indices(crow_t, edge[transpose_order].contiguous())
    return crow, col_narrow, at_src, at_dst, crow_t, col_t, transpose_order
