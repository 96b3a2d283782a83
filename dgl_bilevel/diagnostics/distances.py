"""Hop distances from node sets, and the paper's per-edge distances.

* GNN (Thm III.3): an edge's distance is the minimum over its endpoints of the hop distance
  to ``V_in  U  V_out``; with a k-layer GNN every edge at distance >= k gets exactly zero
  hypergradient.
* Laplacian (Thm IV.2): the minimum over its endpoints of (distance to ``V_in``) + (distance to
  ``V_out``); the hypergradient decays exponentially in it.

Edges are taken undirected for distances. Nodes that cannot reach the set get distance -1,
and edges touching no reachable endpoint are reported separately as unreachable.
"""
from __future__ import annotations

import numpy as np
import torch

from .._dgl import dgl
from ..errors import ConfigError
from ..graphs import adjacency

UNREACHABLE = -1


def hop_distances(graph: "dgl.DGLGraph", nodes: torch.Tensor) -> torch.Tensor:
    """Multi-source BFS: hops from each node to the nearest node of ``nodes`` (-1 if unreachable).

    Args:
        graph: the graph; edges are followed in both directions.
        nodes: the source node ids.

    Returns:
        ``[N]`` int64 hop counts, :data:`UNREACHABLE` (-1) where no source can be reached.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.diagnostics import hop_distances
        >>> path = dgl.graph(([0, 1, 2, 3], [1, 2, 3, 4]), num_nodes=6)  # node 5 is isolated
        >>> hop_distances(path, torch.tensor([0])).tolist()
        [0, 1, 2, 3, 4, -1]
        >>> hop_distances(path, torch.tensor([0, 4])).tolist()
        [0, 1, 2, 1, 0, -1]
    """
    adj = adjacency(graph)
    n = graph.num_nodes()
    dist = np.full(n, UNREACHABLE, dtype=np.int64)
    frontier = np.zeros(n, dtype=bool)
    frontier[np.asarray(torch.as_tensor(nodes).long())] = True
    level = 0
    while frontier.any():
        dist[frontier] = level
        reached = (adj @ frontier.astype(np.int8)) > 0
        frontier = reached & (dist == UNREACHABLE)
        level += 1
    return torch.from_numpy(dist)


def edge_distances(graph: "dgl.DGLGraph", v_in: torch.Tensor, v_out: torch.Tensor, kind: str = "gnn") -> torch.Tensor:
    """The paper's distance of every edge (``kind="gnn"`` or ``"laplacian"``); -1 where unreachable.

    Args:
        graph: the graph whose edges are measured (taken undirected).
        v_in, v_out: the inner and outer labelled nodes.
        kind: ``"gnn"``: the nearer endpoint's hops to ``v_in U v_out`` (a k-layer GNN gives
            edges at distance >= k a zero hypergradient); ``"laplacian"``: the smaller over
            endpoints of (hops to ``v_in``) + (hops to ``v_out``).

    Returns:
        ``[E]`` int64 distances in edge-id order.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on an unknown ``kind``.

    Example:
        A path 0-1-2-3-4-5 (both directions), ``v_in = {0}``, ``v_out = {5}``: for a GNN the
        middle edges are farthest; for the Laplacian every edge lies on the way from 0 to 5.

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.diagnostics import edge_distances
        >>> path = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> v_in, v_out = torch.tensor([0]), torch.tensor([5])
        >>> edge_distances(path, v_in, v_out, "gnn").tolist()
        [0, 0, 1, 1, 2, 2, 1, 1, 0, 0]
        >>> edge_distances(path, v_in, v_out, "laplacian").unique().tolist()
        [5]
    """
    src, dst = graph.edges()
    if kind == "gnn":
        d = hop_distances(graph, torch.cat([torch.as_tensor(v_in), torch.as_tensor(v_out)]))
        return _min_reachable(d[src], d[dst])
    if kind == "laplacian":
        d_in, d_out = hop_distances(graph, v_in), hop_distances(graph, v_out)
        total = torch.where((d_in >= 0) & (d_out >= 0), d_in + d_out, torch.full_like(d_in, UNREACHABLE))
        return _min_reachable(total[src], total[dst])
    raise ConfigError(f"kind must be 'gnn' or 'laplacian', got {kind!r}")


def _min_reachable(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    big = torch.iinfo(a.dtype).max
    m = torch.minimum(torch.where(a < 0, big, a), torch.where(b < 0, big, b))
    return torch.where(m == big, torch.full_like(m, UNREACHABLE), m)
