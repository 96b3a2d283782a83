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

    After a run, ``history`` holds one dict per profiled iteration (``iteration``,
    ``refined_edges``, ``profile``: :class:`~.profile.ProfileRow` dicts), ``hypergradients`` and
    ``weights`` the kept iterations' tensors, ``distances`` the edge distances.

    Example:
        A 2-layer GNN on a path: the edges 2 hops from the labelled nodes get exactly zero.

        >>> import dgl
        >>> import torch
        >>> import dgl_bilevel as dbl
        >>> from dgl_bilevel.diagnostics import ScarcityRecorder
        >>> _ = torch.manual_seed(0)
        >>> path = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(path, torch.eye(6), torch.tensor([0, 1, 0, 1, 0, 1]),
        ...                        v_in=[0, 1], v_out=[2], val=[4], test=[5])
        >>> recorder = ScarcityRecorder("gnn", keep=[1])
        >>> inner = dbl.TrainedGNN(dbl.models.SumAggGNN(6, 4, 2), steps=5)
        >>> _ = dbl.fit(data, dbl.EdgeWeights(path), inner, outer_steps=3, progress=False,
        ...             callbacks=[recorder])
        >>> [h["iteration"] for h in recorder.history], recorder.hypergradients[1].shape
        ([0, 1, 2], torch.Size([10]))
        >>> [(row["distance"], row["zero_fraction"] == 1.0) for row in recorder.history[0]["profile"]]
        [(0, False), (1, False), (2, True)]
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
