"""S seeds of one problem as one computation: the graph copied S times, node sets offset, losses per seed.

Seed ``s`` owns nodes ``s*N ... s*N + N - 1`` and edges ``s*E ... s*E + E - 1`` of the stacked
graph (``dgl.batch`` of ``S`` copies keeps that order), so a per-edge weight vector of the stack
is the seeds' weight vectors one after the other and nothing ever mixes two seeds: the stack's
objective is the *sum* of the seeds' objectives, whose gradient with respect to one seed's
variables is that seed's gradient alone.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .._dgl import dgl
from ..errors import ConfigError


def same_structure(graphs: Sequence["dgl.DGLGraph"]) -> bool:
    """Whether every graph has the first one's nodes and edges, in the same edge order."""
    first = graphs[0]
    src, dst = first.edges()
    for g in graphs[1:]:
        if g is first:
            continue
        if g.num_nodes() != first.num_nodes() or g.num_edges() != first.num_edges():
            return False
        s, d = g.edges()
        if not (torch.equal(s, src) and torch.equal(d, dst)):
            return False
    return True


class SeedStack:
    """``S`` copies of one graph as one block-diagonal DGL graph, with per-seed node sets.

    Args:
        graph: the support graph every seed learns on (the same edges for every seed).
        num_seeds: how many copies.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``num_seeds < 1``.

    Example:
        >>> import dgl, torch
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> stack = SeedStack(graph, 3)
        >>> stack.graph.num_nodes(), stack.graph.num_edges()
        (18, 30)
        >>> stack.offset([torch.tensor([0]), torch.tensor([1]), torch.tensor([5])]).index.tolist()  # seed s: + 6 s
        [0, 7, 17]
        >>> stack.edge_weights([torch.full((10,), float(s)) for s in range(3)])[::10].tolist()
        [0.0, 1.0, 2.0]
        >>> [tuple(rows.shape) for rows in stack.seed_rows(torch.zeros(18, 2))]
        [(6, 2), (6, 2), (6, 2)]
    """

    def __init__(self, graph: "dgl.DGLGraph", num_seeds: int) -> None:
        if num_seeds < 1:
            raise ConfigError(f"a seed stack needs at least one seed, got {num_seeds}")
        self.num_seeds = int(num_seeds)
        self.num_nodes, self.num_edges = graph.num_nodes(), graph.num_edges()
        self.graph = dgl.batch([graph] * self.num_seeds)
        self.reverse = dgl.reverse(self.graph)

    def offset(self, node_sets: Sequence[torch.Tensor]) -> "StackedNodes":
        """Per-seed node indices as one index into the stack, with each node's seed."""
        if len(node_sets) != self.num_seeds:
            raise ConfigError(f"{len(node_sets)} node sets for a stack of {self.num_seeds} seeds")
        index = torch.cat([nodes + s * self.num_nodes for s, nodes in enumerate(node_sets)])
        counts = torch.tensor([len(nodes) for nodes in node_sets])
        seed = torch.repeat_interleave(torch.arange(self.num_seeds), counts)
        return StackedNodes(index, seed, counts, [torch.as_tensor(n) for n in node_sets])

    def edge_weights(self, per_seed: Sequence[torch.Tensor]) -> torch.Tensor:
        """The stack's weight vector from each seed's (``[E]`` each, in seed order)."""
        return torch.cat(list(per_seed))

    def seed_rows(self, stacked: torch.Tensor) -> list[torch.Tensor]:
        """Per seed, its ``N`` rows of a ``[S * N, ...]`` tensor (views)."""
        return list(stacked.reshape(self.num_seeds, self.num_nodes, *stacked.shape[1:]).unbind(0))


class StackedNodes:
    """One node set of every seed as an index into the stack (see :meth:`SeedStack.offset`)."""

    def __init__(self, index: torch.Tensor, seed: torch.Tensor, counts: torch.Tensor, per_seed: list) -> None:
        if (counts == 0).any():
            raise ConfigError("every seed needs a non-empty node set for its loss")
        self.index, self.seed, self.counts, self.per_seed = index, seed, counts, per_seed
        self.local = torch.cat(per_seed)  # the same nodes as indices into one seed's graph
        self._weights: dict = {}

    def mean_weights(self, dtype: torch.dtype) -> torch.Tensor:
        """``1 / |set of s|`` for each listed node: a weighted sum is then the sum of per-seed means."""
        cached = self._weights.get(dtype)
        if cached is None:
            cached = self._weights[dtype] = (1.0 / self.counts.to(dtype))[self.seed]
        return cached
