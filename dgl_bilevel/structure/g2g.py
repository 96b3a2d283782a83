"""Latent graph learning (G2G): edge weights output by a network of the endpoint features.

    w_ij = output_scale * sigmoid(MLP((x_i - x_j)^2))

on a fixed support (observed graph, a power of it, or a k-NN graph). The outer variables are
the MLP's parameters: every edge shares them, so edges far from the labelled nodes move too
-- the paper's first remedy for gradient scarcity.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._dgl import dgl
from ..errors import ConfigError, DataError
from ..registry import STRUCTURES
from .base import GraphStructure


#: What G2G's squared differences can be taken of (see :class:`G2G`'s ``inputs``).
G2G_INPUTS = ("features", "binary", "scaled")


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
        chunk_size: edges per chunk when the ``[E, D]`` differences would be large.
        generator: seeds the initialisation.
        inputs: what the squared differences are taken of (:data:`G2G_INPUTS`): ``"features"``
            as given (the paper's code), ``"binary"`` their non-zero indicators, ``"scaled"``
            the features divided by their mean non-zero magnitude. Row-normalised bag-of-words
            features (Cora's, as DGL loads them) give squared differences of about 1e-3, which
            an MLP at the paper's outer learning rate hardly learns to tell apart; ``binary``
            and ``scaled`` make them O(1) (GNN BO+G2G on Cora, docs/results.md).
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
        logits = [self.edge_logits(self.src[i : i + self.chunk_size], self.dst[i : i + self.chunk_size])
                  for i in range(0, self.src.numel(), self.chunk_size)]
        return self.output_scale * torch.sigmoid(torch.cat(logits))

    def extra_repr(self) -> str:
        return (f"num_edges={self.graph.num_edges()}, inputs={self.inputs}, dropout={self.dropout}, "
                f"output_scale={self.output_scale}")
