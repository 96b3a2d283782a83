"""A callback for :func:`dgl_bilevel.fit` that records gradient scarcity during a run."""
from __future__ import annotations

from typing import Iterable, Optional

import torch

from .distances import edge_distances
from .profile import hypergradient_profile, refined_edges


class ScarcityRecorder:
    """Records, every ``every`` outer iterations, the hypergradient-vs-distance profile and the
    refined-edge count; keeps the full per-edge hypergradient and weights at ``keep``.

    Args:
        kind: ``"gnn"`` (distance to ``V_in U V_out``) or ``"laplacian"`` (sum of both distances).
        keep: outer iterations whose full hypergradient and weights are stored.
        every: profile every this many iterations.
    """

    def __init__(self, kind: str = "gnn", keep: Iterable[int] = (), every: int = 1) -> None:
        self.kind, self.keep, self.every = kind, set(int(k) for k in keep), max(1, int(every))
        self.history: list[dict] = []
        self.hypergradients: dict[int, torch.Tensor] = {}
        self.weights: dict[int, torch.Tensor] = {}
        self.distances: Optional[torch.Tensor] = None

    def __call__(self, state) -> None:
        if self.distances is None:
            self.distances = edge_distances(state.structure.graph, state.data.v_in, state.data.v_out, self.kind)
        if state.iteration in self.keep:
            self.weights[state.iteration] = state.weights.clone()
            if state.hypergradient is not None:
                self.hypergradients[state.iteration] = state.hypergradient.clone()
        if state.hypergradient is None or state.iteration % self.every:
            return
        self.history.append({
            "iteration": state.iteration,
            "refined_edges": refined_edges(state.weights),
            "profile": [row.as_dict() for row in hypergradient_profile(state.hypergradient, self.distances)],
        })
