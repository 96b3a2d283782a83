"""Edge refinement: one learnable weight per edge of a given support graph."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from .._dgl import dgl
from ..errors import ConfigError, DataError
from ..registry import STRUCTURES
from .base import GraphStructure
from .parametrizations import Parametrization, get_parametrization

INITS = ("uniform", "constant", "observed")


def undirected_pair_index(graph: "dgl.DGLGraph") -> tuple[torch.Tensor, int]:
    """For each edge, the index of its unordered pair ``{u, v}``; edges ``u->v`` and ``v->u`` share one.

    Args:
        graph: any DGL graph.

    Returns:
        ``(index, num_pairs)``: ``[E]`` pair ids in ``0 .. num_pairs - 1`` (pairs ordered by
        ``(min, max)`` node id), and the number of distinct pairs.

    Example:
        >>> import dgl
        >>> from dgl_bilevel.structure import undirected_pair_index
        >>> graph = dgl.graph(([0, 1, 1, 2, 0], [1, 0, 2, 1, 2]))
        >>> index, num_pairs = undirected_pair_index(graph)
        >>> index.tolist(), num_pairs
        ([0, 0, 2, 2, 1], 3)
    """
    src, dst = graph.edges()
    low, high = torch.minimum(src, dst), torch.maximum(src, dst)
    keys = low.long() * graph.num_nodes() + high.long()
    unique, inverse = torch.unique(keys, return_inverse=True)
    return inverse, unique.numel()


def mean_over_pairs(per_edge: torch.Tensor, pair_index: torch.Tensor) -> torch.Tensor:
    """One value per unordered pair: the mean of its edges' values (both directions)."""
    num = int(pair_index.max()) + 1
    total = torch.zeros(num, dtype=per_edge.dtype).index_add_(0, pair_index, per_edge)
    count = torch.zeros(num, dtype=per_edge.dtype).index_add_(0, pair_index, torch.ones_like(per_edge))
    return total / count


@STRUCTURES.register("edges", help="one learnable weight per support edge (the paper's edge refinement)")
class EdgeWeights(GraphStructure):
    """Learnable weights ``w = parametrization(theta)`` on the edges of ``graph``.

    Args:
        graph: the support (usually the observed graph ``A_obs``).
        parametrization: ``"sigmoid"`` (paper, default), ``"softplus"``, ``"box"`` or a
            :class:`Parametrization`; ``low``/``high`` configure ``"box"``.
        init: how the raw parameter ``theta`` starts:
            ``"uniform"`` -- ``theta ~ scale * U[0, 1]`` (the paper's code: logits U[0, 1]);
            ``"constant"`` -- ``theta = value``;
            ``"observed"`` -- ``theta = parametrization.inverse(w_obs)`` with ``w_obs`` =
            ``graph.edata[weight_key]`` (or ones);
            a tensor -- initial *weights*, mapped through ``parametrization.inverse``.
        scale: multiplies the uniform draw (the paper's cheaters runs use ``1e-5`` with ``box``).
        value: the constant for ``init="constant"``.
        tie_undirected: one shared parameter for ``u->v`` and ``v->u`` (keeps the graph symmetric).
        generator: the random generator for ``"uniform"`` (seeded runs pass one).
        weight_key: edata key of observed weights for ``init="observed"``.
        dtype: of the parameter.

    Raises:
        ~dgl_bilevel.errors.DataError: on a graph without edges, initial weights of the wrong shape, or a missing
            ``weight_key``.
        ~dgl_bilevel.errors.ConfigError: on an unknown ``init`` or parametrization.

    Example:
        >>> import dgl
        >>> import torch
        >>> ring = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0])))  # 12 edges
        >>> from dgl_bilevel.structure import EdgeWeights
        >>> weights = EdgeWeights(ring, "sigmoid", init="constant", value=0.0)
        >>> weights()[:3], weights.theta.numel()
        (tensor([0.5000, 0.5000, 0.5000], grad_fn=<SliceBackward0>), 12)
        >>> tied = EdgeWeights(ring, "box", init="observed", tie_undirected=True)
        >>> tied.theta.numel(), tied().tolist() == [1.0] * 12  # one parameter per undirected pair
        (6, True)
        >>> tied()[0].backward()
        >>> tied.theta.grad.tolist()
        [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """

    def __init__(
        self,
        graph: "dgl.DGLGraph",
        parametrization: Union[str, Parametrization] = "sigmoid",
        init: Union[str, torch.Tensor] = "uniform",
        *,
        scale: float = 1.0,
        value: float = 0.0,
        tie_undirected: bool = False,
        low: float = 0.0,
        high: float = float("inf"),
        generator: Optional[torch.Generator] = None,
        weight_key: Optional[str] = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if graph.num_edges() == 0:
            raise DataError("graph has no edges: there are no edge weights to learn")
        self.graph = graph
        kwargs = {"low": low, "high": high} if parametrization == "box" else {}
        self.parametrization = get_parametrization(parametrization, **kwargs)
        self.tie_undirected = bool(tie_undirected)
        if self.tie_undirected:
            pair_index, num_params = undirected_pair_index(graph)
            self.register_buffer("pair_index", pair_index, persistent=False)
        else:
            self.pair_index = None
            num_params = graph.num_edges()
        theta = self._initial_theta(init, num_params, scale, value, generator, weight_key, dtype)
        self.theta = nn.Parameter(theta)
        self.parametrization.project_(self.theta)

    def _initial_theta(self, init, num_params, scale, value, generator, weight_key, dtype) -> torch.Tensor:
        if isinstance(init, torch.Tensor):
            if init.shape != (self.graph.num_edges(),):
                raise DataError(f"initial weights have shape {tuple(init.shape)}, expected ({self.graph.num_edges()},)")
            return self._to_params(self.parametrization.inverse(init.to(dtype)))
        if init == "uniform":
            return scale * torch.rand(num_params, generator=generator, dtype=dtype)
        if init == "constant":
            return torch.full((num_params,), float(value), dtype=dtype)
        if init == "observed":
            if weight_key is None:
                observed = torch.ones(self.graph.num_edges(), dtype=dtype)
            elif weight_key in self.graph.edata:
                observed = self.graph.edata[weight_key].to(dtype)
            else:
                raise DataError(f"init='observed': graph.edata has no key {weight_key!r}")
            return self._to_params(self.parametrization.inverse(observed))
        raise ConfigError(f"unknown init {init!r}; choose from {INITS} or pass a tensor of weights")

    def _to_params(self, per_edge: torch.Tensor) -> torch.Tensor:
        """Per-edge values -> per-parameter values (averaging the two directions when tied)."""
        return per_edge if self.pair_index is None else mean_over_pairs(per_edge, self.pair_index)

    @classmethod
    def from_config(cls, config, data, support, generator: Optional[torch.Generator] = None) -> "EdgeWeights":
        """The structure an experiment configuration describes, on ``support``."""
        return cls(support, parametrization=config.parametrization, init=config.edge_init, scale=config.edge_scale,
                   tie_undirected=config.tie_undirected, generator=generator,
                   weight_key=data.weight_key if support is data.graph else None, dtype=data.features.dtype)

    def forward(self) -> torch.Tensor:
        """Current edge weights, one per support edge, differentiable in ``theta``."""
        weight = self.parametrization(self.theta)
        return weight if self.pair_index is None else weight[self.pair_index]

    @torch.no_grad()
    def project_(self) -> None:
        self.parametrization.project_(self.theta)

    def extra_repr(self) -> str:
        return (
            f"num_edges={self.graph.num_edges()}, params={self.theta.numel()}, "
            f"parametrization={self.parametrization!r}, tie_undirected={self.tie_undirected}"
        )
