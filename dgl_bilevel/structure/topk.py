"""Discrete structure: a 0/1 graph of the best-scoring support edges, learned through an estimator.

The outer variable is one score per support edge (or per undirected pair). ``forward()`` returns
the 0/1 mask of the selected edges -- a global budget of ``B`` edges, or the ``k`` best in-edges
of every node -- as edge weights on the support, so the inner model trains on exactly the
selected graph (a weight of 0 is an absent edge for sum aggregation, GCN normalisation and the
Laplacian alike). Jacobians of a selection are zero almost everywhere; the backward pass is a
gradient estimator (BiGrad's combinatorial case, :mod:`dgl_bilevel.combinatorial`):
straight-through, perturbed optimisers (the forward stays the hard selection, ``hard=True``) or
blackbox interpolation.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .._dgl import dgl
from ..combinatorial import DifferentiableSolver, EdgeBudget, PerNodeTopK
from ..errors import ConfigError, DataError
from ..registry import STRUCTURES
from .base import GraphStructure
from .edge_weights import undirected_pair_index


def resolve_budget(budget: float, num_edges: int) -> int:
    """A budget in ``(0, 1]`` is a share of the support's edges; above 1, a number of edges."""
    if not budget > 0:
        raise ConfigError(f"budget must be > 0 (a share of the edges in (0, 1] or a count), got {budget}")
    count = int(round(budget * num_edges)) if budget <= 1 else int(budget)
    if count < 1 or count > num_edges:
        raise ConfigError(f"budget {budget} selects {count} edges; the support has {num_edges}")
    return count


@STRUCTURES.register("topk", help="a 0/1 graph of the best-scoring edges (--budget or --topk-per-node), "
                                  "learned through a gradient estimator (--estimator)")
class TopKEdges(GraphStructure):
    """The selected edges of ``graph`` as 0/1 weights; scores learned through ``estimator``.

    Args:
        graph: the support (candidate edges).
        budget: keep this many edges (a share in ``(0, 1]`` or a count); or
        per_node: keep the ``per_node`` best in-edges of every node (exactly one of the two).
        estimator: ``"ste"``, ``"perturbed"`` or ``"blackbox"``.
        num_samples, sigma: perturbed optimiser's samples and noise scale (Gaussian noise; the
            forward pass is the hard selection of the unperturbed scores).
        lam: blackbox interpolation's step.
        init: initial scores ``scale * U[0, 1]`` (``"uniform"``) or ``"observed"`` weights.
        tie_undirected: one score per unordered pair, both directions selected together (a
            budget then counts directed edges, two per pair).
        generator: seeds the initial scores and the perturbations.
        weight_key: edata key of the observed weights for ``init="observed"``.
        dtype: of the scores.

    Raises:
        ~dgl_bilevel.errors.DataError: on a graph without edges.
        ~dgl_bilevel.errors.ConfigError: unless exactly one of ``budget`` and ``per_node`` is given, on a budget
            out of range, an unknown estimator or init, or ``per_node`` with tied directions.

    Example:
        >>> import dgl
        >>> import torch
        >>> ring = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0])))  # 12 edges
        >>> from dgl_bilevel.structure import TopKEdges
        >>> best4 = TopKEdges(ring, budget=4, estimator="ste", generator=torch.Generator().manual_seed(0))
        >>> mask = best4()
        >>> int(mask.sum()), sorted(set(mask.tolist()))
        (4, [0.0, 1.0])
        >>> mask.sum().backward()  # the estimator hands the scores a gradient
        >>> best4.scores.grad.shape
        torch.Size([12])
        >>> one_each = TopKEdges(ring, per_node=1, estimator="ste")()
        >>> torch.bincount(ring.edges()[1], weights=one_each.detach()).tolist()  # one in-edge per node
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """

    def __init__(
        self,
        graph: "dgl.DGLGraph",
        budget: Optional[float] = None,
        per_node: Optional[int] = None,
        estimator: str = "perturbed",
        *,
        num_samples: int = 10,
        sigma: float = 0.1,
        lam: float = 1.0,
        init: str = "uniform",
        scale: float = 1.0,
        tie_undirected: bool = False,
        generator: Optional[torch.Generator] = None,
        weight_key: Optional[str] = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if graph.num_edges() == 0:
            raise DataError("graph has no edges: there are no edges to select")
        if (budget is None) == (per_node is None):
            raise ConfigError("give exactly one of budget (edges kept in all) and per_node (edges kept per node)")
        self.graph = graph
        self.tie_undirected = bool(tie_undirected)
        if self.tie_undirected:
            pair_index, num_scores = undirected_pair_index(graph)
            self.register_buffer("pair_index", pair_index, persistent=False)
        else:
            self.pair_index, num_scores = None, graph.num_edges()
        if per_node is not None:
            if self.tie_undirected:
                raise ConfigError("per_node selection ranks each node's in-edges; it cannot tie both directions")
            solver = PerNodeTopK(graph, int(per_node), by="dst")
        else:
            count = resolve_budget(budget, graph.num_edges())
            solver = EdgeBudget(num_scores, max(1, count // 2) if self.tie_undirected else count)
        self.budget, self.per_node = budget, per_node
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        options = {"ste": {}, "perturbed": {"num_samples": num_samples, "sigma": sigma, "hard": True,
                                             "generator": self.generator},
                   "blackbox": {"lam": lam}}
        if estimator not in options:
            raise ConfigError(f"unknown estimator {estimator!r}; choose from {sorted(options)}")
        self.select = DifferentiableSolver(solver, estimator, **options[estimator])
        self.estimator = estimator
        if init == "uniform":
            scores = scale * torch.rand(num_scores, generator=self.generator, dtype=dtype)
        elif init == "observed":
            observed = graph.edata[weight_key].to(dtype) if weight_key else torch.ones(graph.num_edges(), dtype=dtype)
            scores = observed if self.pair_index is None else torch.zeros(num_scores, dtype=dtype).index_reduce_(
                0, self.pair_index, observed, "mean", include_self=False)
        else:
            raise ConfigError(f"unknown init {init!r} for top-k scores; choose from ('uniform', 'observed')")
        self.scores = nn.Parameter(scores)

    @classmethod
    def from_config(cls, config, data, support, generator: Optional[torch.Generator] = None) -> "TopKEdges":
        return cls(support, budget=config.budget, per_node=config.topk_per_node, estimator=config.estimator,
                   num_samples=config.estimator_samples, sigma=config.estimator_sigma, lam=config.blackbox_lam,
                   init=config.edge_init if config.edge_init != "constant" else "uniform", scale=config.edge_scale,
                   tie_undirected=config.tie_undirected, generator=generator,
                   weight_key=data.weight_key if support is data.graph else None, dtype=data.features.dtype)

    def forward(self) -> torch.Tensor:
        """The 0/1 selection as one weight per support edge, differentiable in the scores by the estimator."""
        mask = self.select(self.scores)
        return mask if self.pair_index is None else mask[self.pair_index]

    # the perturbations' generator is part of the state, so a resumed run draws the same noise
    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def extra_repr(self) -> str:
        kept = f"budget={self.budget}" if self.budget is not None else f"per_node={self.per_node}"
        return f"num_edges={self.graph.num_edges()}, {kept}, estimator={self.estimator!r}"
