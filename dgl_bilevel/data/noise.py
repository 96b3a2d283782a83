"""Graphs with random edges added: the noise protocol of graph-structure-learning benchmarks.

OpenGSL / GSLB's ``random_add_edge`` adds ``int(nnz x rate)`` random pairs, directed and not
de-duplicated. Here the same count is drawn as *undirected* pairs -- ``round(rate x |E_u|)``
uniformly among the pairs that are not edges (no self-loops, no repeats) -- and both directions
are stored, so the stored edges grow by the same fraction and the graph stays symmetric.
``cora-noise60`` is Cora with 60% more edges, drawn per seed (graph seed ``100 + seed``).
"""
from __future__ import annotations

import dataclasses

import torch

from .._dgl import dgl
from .bilevel_data import BilevelData

#: The noise levels registered as data sets (percent of the observed undirected edges added).
NOISE_LEVELS = (20, 40, 60, 80)
#: The random graph of seed ``s`` is drawn from a generator seeded with ``GRAPH_SEED_OFFSET + s``.
GRAPH_SEED_OFFSET = 100


def undirected_edge_count(graph: "dgl.DGLGraph") -> int:
    """Undirected non-loop pairs of ``graph``."""
    src, dst = graph.edges()
    keep = src != dst
    return int(torch.unique(torch.minimum(src[keep], dst[keep]) * graph.num_nodes()
                            + torch.maximum(src[keep], dst[keep])).numel())


def add_spurious_edges(graph: "dgl.DGLGraph", count: int, generator: torch.Generator):
    """``graph`` plus ``count`` uniformly random undirected non-edges, both directions stored.

    The new graph keeps the original edges first, in their order, then the new pairs ``(u, v)``
    and ``(v, u)`` interleaved. Returns ``(new_graph, spurious)`` with ``spurious`` a boolean mask
    over the new graph's edges. Pairs are distinct, never self-loops, never existing edges (in
    either direction).
    """
    n = graph.num_nodes()
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    src, dst = graph.edges()
    existing = set((torch.minimum(src, dst) * n + torch.maximum(src, dst)).tolist())
    possible = n * (n - 1) // 2 - sum(1 for key in existing if key // n != key % n)
    if count > possible:
        raise ValueError(f"cannot add {count} non-edges: only {possible} exist")
    chosen: list[int] = []
    taken = set(existing)
    while len(chosen) < count:
        need = count - len(chosen)
        u = torch.randint(0, n, (2 * need + 16,), generator=generator)
        v = torch.randint(0, n, (2 * need + 16,), generator=generator)
        for a, b in zip(u.tolist(), v.tolist()):
            if a == b:
                continue
            key = min(a, b) * n + max(a, b)
            if key in taken:
                continue
            taken.add(key)
            chosen.append(key)
            if len(chosen) == count:
                break
    keys = torch.tensor(chosen, dtype=torch.long)
    a, b = keys // n, keys % n
    new_src = torch.stack([a, b], 1).reshape(-1)
    new_dst = torch.stack([b, a], 1).reshape(-1)
    corrupted = dgl.graph((torch.cat([src, new_src]), torch.cat([dst, new_dst])), num_nodes=n)
    spurious = torch.zeros(corrupted.num_edges(), dtype=torch.bool)
    spurious[graph.num_edges():] = True
    return corrupted, spurious


def corrupt(data: BilevelData, level: float, seed: int):
    """``(data on the corrupted graph, spurious mask)`` for corruption ``level`` (fraction of the undirected edges)."""
    count = round(level * undirected_edge_count(data.graph))
    graph, spurious = add_spurious_edges(data.graph, count, torch.Generator().manual_seed(seed))
    return dataclasses.replace(data, graph=graph), spurious


def noisy(data: BilevelData, percent: int, seed: int) -> BilevelData:
    """``data`` with ``percent``% random edges added (graph seed ``GRAPH_SEED_OFFSET + seed``); the
    spurious edges' mask is kept in ``extras["spurious"]`` and the name says the level."""
    corrupted, spurious = corrupt(data, percent / 100.0, GRAPH_SEED_OFFSET + seed)
    return dataclasses.replace(corrupted, name=f"{data.name}-noise{percent}",
                               extras={**data.extras, "spurious": spurious})
