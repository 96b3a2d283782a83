"""Graph solvers (minimisers of a linear edge cost): shortest s-t path and minimum spanning tree.

Both take one cost per edge of a DGL graph (in edge-id order, batched over leading dimensions)
and return a 0/1 indicator over the graph's edges, computed by ``scipy.sparse.csgraph``. A batch
of ``B`` cost vectors is solved in one call on a block-diagonal graph of ``B`` disjoint copies.
Where several DGL edges join the same node pair (parallel edges, or both directions of an
undirected edge), the cheapest one stands for the pair (ties: the lowest edge id), so ``<c, y>`` is
the cost of the solution.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra, minimum_spanning_tree

from .._dgl import dgl
from ..errors import ConfigError, DataError
from .base import Solver
from .registry import SOLVERS


class _PairGroups:
    """Candidate edges (row -> col, DGL edge id) grouped by node pair; the cheapest per pair and batch row."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, eids: np.ndarray, num_nodes: int) -> None:
        self.num_nodes = num_nodes
        self.eids = eids  # the DGL edge of each candidate, to gather its cost
        key = rows * num_nodes + cols
        self.perm = np.lexsort((eids, key))  # by pair, then edge id
        self.keys, self.starts = np.unique(key[self.perm], return_index=True)
        self.rows, self.cols = self.keys // num_nodes, self.keys % num_nodes
        self.sorted_eids = eids[self.perm]
        self.candidate_pair = np.searchsorted(self.keys, key)  # pair of each candidate (unsorted order)

    @property
    def num_pairs(self) -> int:
        return self.keys.size

    def cheapest(self, edge_cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per batch row and pair: the lowest cost and the DGL edge id that has it (shapes ``(B, P)``)."""
        cost = edge_cost[:, self.eids][:, self.perm]
        best = np.minimum.reduceat(cost, self.starts, axis=1)
        sizes = np.diff(np.append(self.starts, cost.shape[1]))
        is_best = cost == np.repeat(best, sizes, axis=1)
        position = np.where(is_best, np.arange(cost.shape[1]), cost.shape[1])
        first = np.minimum.reduceat(position, self.starts, axis=1)  # first cheapest, i.e. lowest edge id
        return best, self.sorted_eids[first]

    def index(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Pair index of node pairs known to be present."""
        return np.searchsorted(self.keys, rows * self.num_nodes + cols)

    def block_matrix(self, values: np.ndarray) -> sp.csr_matrix:
        """Block-diagonal sparse matrix of ``B`` copies, copy ``b`` holding ``values[b]`` on the pairs."""
        batch, n = values.shape[0], self.num_nodes
        offset = (np.arange(batch) * n)[:, None]
        rows = (self.rows[None, :] + offset).ravel()
        cols = (self.cols[None, :] + offset).ravel()
        # explicit zeros are kept: scipy's csgraph treats them as zero-cost edges
        return sp.csr_matrix((values.ravel(), (rows, cols)), shape=(batch * n, batch * n))


def _edges(graph: "dgl.DGLGraph") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src, dst, edge id) of the graph's edges that are not self-loops, as int64 numpy arrays."""
    src, dst = (t.cpu().numpy().astype(np.int64) for t in graph.edges())
    keep = src != dst
    return src[keep], dst[keep], np.nonzero(keep)[0].astype(np.int64)


class _GraphSolver(Solver):
    sense = "min"

    def _init_graph(self, graph: "dgl.DGLGraph") -> None:
        if graph.is_block:
            raise ConfigError("graph solvers need an ordinary DGLGraph, not a message-flow block")
        self.num_nodes, self.num_edges = int(graph.num_nodes()), int(graph.num_edges())

    def check(self, c: torch.Tensor) -> None:
        super().check(c)
        if c.shape[-1] != self.num_edges:
            raise ConfigError(f"costs have {c.shape[-1]} entries in their last dimension; "
                              f"the graph has {self.num_edges} edges (one cost per edge)")

    def _flat(self, c: torch.Tensor) -> np.ndarray:
        return c.detach().reshape(-1, self.num_edges).cpu().numpy().astype(np.float64)

    @staticmethod
    def _out(y: np.ndarray, c: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(y).to(dtype=c.dtype, device=c.device).reshape(c.shape)


@SOLVERS.register("shortest_path", help="edges of the cheapest source-target path (non-negative edge costs, Dijkstra)")
class ShortestPath(_GraphSolver):
    """``argmin <c, y>`` over indicators of ``source -> target`` paths: the cheapest path's edges.

    Args:
        graph: a DGL graph; costs are one per edge, non-negative (Dijkstra).
        source, target: node ids. ``source == target`` gives the empty path (all zeros).
        directed: follow edges ``u -> v`` only (default); if False, every edge can be used both
            ways (and the indicator marks the DGL edge that was used, in whichever direction).

    Perturbed and blackbox estimators query the solver at shifted costs that can be negative;
    those are clipped at 0 (Vlastelica et al. do the same), so the smoothed map is
    ``E[y(max(c + sigma Z, 0))]`` -- still an exact Gaussian smoothing of a (different) piecewise-
    constant map, so the estimators stay unbiased for it. Self-loops are never on a path.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``graph`` is a block or ``source``/``target`` is not one of its nodes;
            when called, if costs are negative or not one per edge.
        ~dgl_bilevel.errors.DataError: when called, if ``target`` cannot be reached from ``source``.

    Example:
        Two routes from node 0 to node 3: via node 1 (edges 0 and 2, cost 2) or via node 2
        (edges 1 and 3, cost 6).

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.combinatorial import ShortestPath
        >>> graph = dgl.graph(([0, 0, 1, 2], [1, 2, 3, 3]))
        >>> path = ShortestPath(graph, source=0, target=3)
        >>> path(torch.tensor([1.0, 5.0, 1.0, 1.0]))
        tensor([1., 0., 1., 0.])
        >>> path(torch.tensor([[1.0, 5.0, 1.0, 1.0], [4.0, 1.0, 4.0, 1.0]]))  # a batch of two
        tensor([[1., 0., 1., 0.],
                [0., 1., 0., 1.]])
    """

    def __init__(self, graph: "dgl.DGLGraph", source: int, target: int, directed: bool = True) -> None:
        self._init_graph(graph)
        for name, node in (("source", source), ("target", target)):
            if not 0 <= int(node) < self.num_nodes:
                raise ConfigError(f"{name} node {node} is not a node of the graph (0..{self.num_nodes - 1})")
        self.source, self.target, self.directed = int(source), int(target), bool(directed)
        src, dst, eids = _edges(graph)
        if not self.directed:
            src, dst, eids = np.concatenate([src, dst]), np.concatenate([dst, src]), np.concatenate([eids, eids])
        self.groups = _PairGroups(src, dst, eids, self.num_nodes)

    def check(self, c: torch.Tensor) -> None:
        super().check(c)
        if bool((c < 0).any()):
            raise ConfigError(f"shortest-path costs must be non-negative (Dijkstra), got a minimum of "
                              f"{float(c.min()):.4g}; map scores to costs first, e.g. softplus(c) or exp(c)")

    def solve(self, c: torch.Tensor) -> torch.Tensor:
        cost = np.maximum(self._flat(c), 0.0)
        batch, n = cost.shape[0], self.num_nodes
        y = np.zeros_like(cost)
        if self.source == self.target:
            return self._out(y, c)
        if self.groups.num_pairs == 0:
            raise DataError(f"target {self.target} is unreachable from source {self.source}: the graph has no edges")
        best, best_eid = self.groups.cheapest(cost)
        rows = np.arange(batch)
        sources, targets = self.source + rows * n, self.target + rows * n
        dist, pred, _ = dijkstra(self.groups.block_matrix(best), directed=True, indices=sources,
                                 return_predecessors=True, min_only=True)
        if np.isinf(dist[targets]).any():
            raise DataError(f"target {self.target} is unreachable from source {self.source}"
                            f"{'' if self.directed else ' (undirected)'}")
        current = targets.copy()
        for _ in range(n):  # walk back from the targets, all batch rows at once (at most n - 1 steps)
            active = np.nonzero(current != sources)[0]
            if active.size == 0:
                break
            previous = pred[current[active]]
            pair = self.groups.index(previous - active * n, current[active] - active * n)
            y[active, best_eid[active, pair]] = 1.0
            current[active] = previous
        return self._out(y, c)

    def __repr__(self) -> str:
        return (f"ShortestPath(num_nodes={self.num_nodes}, num_edges={self.num_edges}, source={self.source}, "
                f"target={self.target}, directed={self.directed})")


@SOLVERS.register("mst", help="edges of a minimum spanning tree (forest) of the symmetrised graph")
class MinimumSpanningTree(_GraphSolver):
    """``argmin <c, y>`` over spanning trees (a spanning forest if the graph is disconnected).

    The graph is symmetrised: the undirected edge ``{u, v}`` exists if any DGL edge ``u -> v`` or
    ``v -> u`` does, and costs the cheapest of them. ``mark`` says which DGL edges a tree edge
    ``{u, v}`` marks:

    * ``"cheapest"`` (default): only that cheapest DGL edge, so ``<c, y>`` is the tree's cost and
      the solver is an exact linear minimiser (what blackbox and Fenchel-Young assume);
    * ``"pair"``: every DGL edge joining ``u`` and ``v`` in either direction -- a symmetric mask on
      a symmetric graph, for using the tree as a graph. Then ``<c, y>`` is no longer the tree's cost.

    Costs may be any real numbers: only their order matters, so the solver hands scipy their ranks
    (scipy reads a zero weight as a missing edge). Self-loops are never in a tree.

    Args:
        graph: a DGL graph; costs are one per edge, in edge-id order.
        mark: ``"cheapest"`` or ``"pair"`` (above).

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``mark`` is unknown or ``graph`` is a block; when called, if costs are not
            one per edge.

    Example:
        On the 4-cycle 0-1-2-3-0 the tree drops the most expensive edge (id 1); with both
        directions of each edge, ``mark="pair"`` marks both copies of each tree edge.

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.combinatorial import MinimumSpanningTree
        >>> cycle = dgl.graph(([0, 1, 2, 3], [1, 2, 3, 0]))
        >>> MinimumSpanningTree(cycle)(torch.tensor([1.0, 9.0, 2.0, 3.0]))
        tensor([1., 0., 1., 1.])
        >>> both = dgl.to_bidirected(cycle)
        >>> costs = torch.ones(both.num_edges())
        >>> int(MinimumSpanningTree(both, mark="pair")(costs).sum())
        6
    """

    MARKS = ("cheapest", "pair")

    def __init__(self, graph: "dgl.DGLGraph", mark: str = "cheapest") -> None:
        if mark not in self.MARKS:
            raise ConfigError(f"mark must be one of {self.MARKS}, got {mark!r}")
        self._init_graph(graph)
        self.mark = mark
        src, dst, eids = _edges(graph)
        self.groups = _PairGroups(np.minimum(src, dst), np.maximum(src, dst), eids, self.num_nodes)

    def solve(self, c: torch.Tensor) -> torch.Tensor:
        cost = self._flat(c)
        batch, n, num_pairs = cost.shape[0], self.num_nodes, self.groups.num_pairs
        y = np.zeros_like(cost)
        if num_pairs == 0:
            return self._out(y, c)
        best, best_eid = self.groups.cheapest(cost)
        rank = np.empty_like(best)
        np.put_along_axis(rank, np.argsort(best, axis=1, kind="stable"), np.arange(1.0, num_pairs + 1.0)[None, :],
                          axis=1)
        tree = minimum_spanning_tree(self.groups.block_matrix(rank)).tocoo()
        rows, cols = tree.row.astype(np.int64), tree.col.astype(np.int64)
        b = rows // n
        pair = self.groups.index(np.minimum(rows, cols) - b * n, np.maximum(rows, cols) - b * n)
        if self.mark == "cheapest":
            y[b, best_eid[b, pair]] = 1.0
        else:
            in_tree = np.zeros((batch, num_pairs), dtype=bool)
            in_tree[b, pair] = True
            y[:, self.groups.eids] = in_tree[:, self.groups.candidate_pair]
        return self._out(y, c)

    def __repr__(self) -> str:
        return f"MinimumSpanningTree(num_nodes={self.num_nodes}, num_edges={self.num_edges}, mark={self.mark!r})"


__all__ = ["ShortestPath", "MinimumSpanningTree"]
