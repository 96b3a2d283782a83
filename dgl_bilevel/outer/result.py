"""What a run returns: the best graph by validation score, its metrics, and the history."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..splits import SPLITS
from ..errors import NonFiniteHypergradientError


#: Edge probabilities above this make the most likely graph (``FitResult.graph``).
MOST_LIKELY = 0.5


def most_likely_graph(graph: "dgl.DGLGraph", key: str = "w") -> "dgl.DGLGraph":
    """The edges of a saved graph of edge probabilities (``edata[key]``) that exceed 1/2, node ids
    kept: what :attr:`FitResult.graph` returns, read back from a run's ``graph_seed<s>.bin``."""
    from .._dgl import dgl

    return dgl.edge_subgraph(graph, (graph.edata[key] > MOST_LIKELY).nonzero().squeeze(1), relabel_nodes=False)


@dataclass
class FitResult:
    """Outcome of :func:`~dgl_bilevel.fit`: the best graph by validation score, with history.

    ``best_metrics`` holds every split's score (``data.metric``, named by ``metric``) at
    ``best_iteration``, the outer iteration with the best validation score; ``best_weights`` are
    that iteration's edge weights, ``final_weights`` the last ones; ``history`` has one record
    (dict) per outer iteration; ``stopped_early`` says why a run stopped before ``outer_steps``
    (``None`` if it did not).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> result = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), dbl.LabelPropagation(),
        ...                  outer_steps=3, progress=False)
        >>> result.best_iteration, result.metric, len(result.history), result.stopped_early
        (0, 'acc', 3, None)
        >>> result.best_metrics
        {'v_in': 1.0, 'v_out': 1.0, 'val': 1.0, 'test': 1.0}
        >>> learned = result.graph  # a DGLGraph with the best weights in edata["w"]
        >>> learned.num_edges(), tuple(learned.edata["w"].shape), sorted(learned.ndata)[:2]
        (10, (10,), ['feat', 'label'])
        >>> result.to_graph(threshold=2.0).num_edges()  # sigmoid weights never exceed 1
        0
    """

    best_iteration: int
    best_metrics: dict
    best_weights: torch.Tensor
    final_weights: torch.Tensor
    history: list
    support: Any  # the support DGLGraph
    config: dict
    metric: str
    stopped_early: Optional[str] = None
    extras: dict = field(default_factory=dict)
    #: the data's node tensors: ``feat``, ``label`` and a boolean ``<split>_mask`` per split
    node_data: dict = field(default_factory=dict)
    #: the weights are edge probabilities (a Bernoulli structure): :attr:`graph` is then the most likely graph
    probabilistic: bool = False

    @property
    def graph(self):
        """The learned graph as a plain DGLGraph, ready for any DGL model that takes ``edge_weight``: the
        best weights in ``edata['w']`` (``edata['observed']`` marks observed edges when the support added
        others), the data's features, labels and split masks in ``ndata``.

        For edge weights, every support edge with its learned weight. For edge probabilities, the most
        likely graph: the edges whose probability exceeds 1/2, each weighted by its probability -- the
        full expected graph (every candidate, tiny probabilities included) is :meth:`to_graph`'s."""
        return self.to_graph(threshold=MOST_LIKELY if self.probabilistic else None)

    def to_graph(self, node_data: "bool | tuple" = True, threshold: Optional[float] = None):
        """The support with the best weights; ``threshold`` keeps only edges whose weight exceeds it;
        ``node_data`` False leaves ``ndata`` empty, a tuple keeps only those keys."""
        from .._dgl import dgl

        src, dst = self.support.edges()
        keep = slice(None) if threshold is None else self.best_weights > threshold
        g = dgl.graph((src[keep], dst[keep]), num_nodes=self.support.num_nodes())
        g.edata["w"] = self.best_weights[keep].clone()
        if "observed" in self.support.edata:  # which candidates were observed edges (supports that add edges)
            g.edata["observed"] = self.support.edata["observed"][keep].clone()
        keep = self.node_data if node_data is True else {} if not node_data else \
            {k: v for k, v in self.node_data.items() if k in node_data}
        for key, value in keep.items():
            g.ndata[key] = value
        return g

    @property
    def seconds_per_iteration(self) -> float:
        times = sorted(r["seconds"] for r in self.history if "seconds" in r)
        return times[len(times) // 2] if times else float("nan")

    def summary(self) -> dict:
        return {
            "best_iteration": self.best_iteration,
            **{f"{split}_{self.metric}": self.best_metrics.get(split) for split in SPLITS},
            "outer_iterations": len(self.history),
            "median_seconds_per_iteration": self.seconds_per_iteration,
            "stopped_early": self.stopped_early,
        }


def raise_if_stopped(result: FitResult) -> None:
    """Turn an early stop into :class:`~dgl_bilevel.errors.NonFiniteHypergradientError` for
    callers who want an exception rather than a result with ``stopped_early`` set.

    Args:
        result: what :func:`~dgl_bilevel.fit` returned.

    Raises:
        ~dgl_bilevel.errors.NonFiniteHypergradientError: ``result.stopped_early`` is set; the message is its reason.

    Example:
        >>> import torch
        >>> def result(stopped):
        ...     return FitResult(best_iteration=0, best_metrics={}, best_weights=torch.ones(2),
        ...                      final_weights=torch.ones(2), history=[], support=None, config={},
        ...                      metric="acc", stopped_early=stopped)
        >>> raise_if_stopped(result(None))  # a run that finished: nothing happens
        >>> try:
        ...     raise_if_stopped(result("non-finite outer loss or hypergradient at outer iteration 7"))
        ... except NonFiniteHypergradientError as exc:
        ...     print(exc)
        non-finite outer loss or hypergradient at outer iteration 7
    """
    if result.stopped_early:
        raise NonFiniteHypergradientError(result.stopped_early)
