"""What a run returns: the best graph by validation score, its metrics, and the history."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..splits import SPLITS
from ..errors import NonFiniteHypergradientError


@dataclass
class FitResult:
    """Outcome of :func:`~dgl_bilevel.fit`: the best graph by validation score, with history."""

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

    @property
    def graph(self):
        """The support graph as a plain DGLGraph: the best weights in ``edata['w']``, and the data's
        features, labels and split masks in ``ndata`` -- ready for any DGL model that takes ``edge_weight``."""
        return self.to_graph()

    def to_graph(self, node_data: "bool | tuple" = True):
        """Like :attr:`graph`; ``node_data`` False leaves ``ndata`` empty, a tuple keeps only those keys."""
        from .._dgl import dgl

        g = dgl.graph(self.support.edges(), num_nodes=self.support.num_nodes())
        g.edata["w"] = self.best_weights.clone()
        if "observed" in self.support.edata:  # which candidates were observed edges (supports that add edges)
            g.edata["observed"] = self.support.edata["observed"].clone()
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
    callers who want an exception rather than a result with ``stopped_early`` set."""
    if result.stopped_early:
        raise NonFiniteHypergradientError(result.stopped_early)
