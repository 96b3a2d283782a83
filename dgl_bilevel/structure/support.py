"""Support graphs: which edges the outer problem may weight.

* :func:`power_support` -- all pairs within ``r`` hops in the observed graph (the support of
  ``A^r``): a smaller diameter, so fewer edges sit far from the labelled nodes (the paper's
  "generalized edge refinement"). Built sparsely; refuses above an edge budget.
* :func:`knn_support` -- a symmetric k-nearest-neighbour graph of the features (Euclidean or
  cosine, built a block of rows at a time), for latent graph learning when no graph is observed;
* :func:`observed_knn_support` -- the observed graph and that k-NN graph together: candidate
  edges that a probabilistic structure can add, not only reweight.

Each returned graph is symmetric (both directions stored), has no self-loops, and carries
``edata["observed"]`` (1.0 where the edge is in the observed graph, else 0.0) and, for
powers, ``edata["hops"]`` (the hop distance between the endpoints).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch

from .._dgl import dgl
from ..registry import SUPPORTS
from ..errors import ConfigError
from ..graphs import adjacency

DEFAULT_EDGE_BUDGET = 5_000_000


def power_support(graph: "dgl.DGLGraph", r: int = 2, max_edges: int = DEFAULT_EDGE_BUDGET) -> "dgl.DGLGraph":
    """The support of ``A^r`` (pairs at 1..r hops), as a symmetric DGLGraph without self-loops.

    Args:
        graph: the observed graph (directions merged).
        r: the largest hop distance (>= 1).
        max_edges: refuse to build more directed edges than this.

    Returns:
        The support, with ``edata["hops"]`` and ``edata["observed"]``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``r < 1`` or the support exceeds ``max_edges``.

    Example:
        A 6-node path: 10 directed edges at one hop, 8 at two.

        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.structure import power_support
        >>> path = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> support = power_support(path, r=2)
        >>> torch.bincount(support.edata["hops"]).tolist(), int(support.edata["observed"].sum())
        ([0, 10, 8], 10)
    """
    if r < 1:
        raise ConfigError(f"power r must be >= 1, got {r}")
    n = graph.num_nodes()
    a = adjacency(graph).astype(np.int64)
    a.setdiag(0)
    a.eliminate_zeros()
    reach = (sp.identity(n, dtype=np.int64, format="csr") + a).tocsr()  # pairs within k hops (incl. self)
    hops = a.copy()  # hop distance of every pair found so far
    for k in range(2, r + 1):
        grown = (reach @ a).tocsr()
        grown.data[:] = 1
        new = (grown - grown.multiply(reach)).tocsr()  # reached first at k hops
        new.eliminate_zeros()
        hops = (hops + k * new).tocsr()
        reach = (reach + new).tocsr()
        if hops.nnz > max_edges:
            raise ConfigError(
                f"the support of A^{r} has at least {hops.nnz:,} directed edges (at {k} hops already), "
                f"above the edge budget of {max_edges:,}; lower r or raise the budget"
            )
    coo = hops.tocoo()
    return _support_graph(graph, coo.row, coo.col, n, hops=coo.data)


KNN_METRICS = ("euclidean", "cosine")


def knn_neighbours(features: torch.Tensor, k: int, metric: str = "euclidean",
                   chunk_bytes: int = 256 * 2**20) -> torch.Tensor:
    """The ``k`` nearest other nodes of every node, ``[N, k]``, computed a block of rows at a time.

    Memory is one ``[rows, N]`` block of distances (at most ``chunk_bytes``), never the ``N x N``
    matrix that DGL's ``bruteforce-blas`` forms (~115 GB at 169k nodes). ``metric="cosine"`` ranks
    by cosine similarity (rows with zero norm are nobody's neighbour but their own ties).

    Args:
        features: ``[N, D]`` node features.
        k: neighbours per node, ``1 <= k < N``.
        metric: ``"euclidean"`` or ``"cosine"``.
        chunk_bytes: the most memory one block of scores may take.

    Returns:
        ``[N, k]`` node ids, nearest first.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on an unknown metric or ``k`` out of range.

    Example:
        >>> import torch
        >>> from dgl_bilevel.structure import knn_neighbours
        >>> x = torch.tensor([[0.0], [0.1], [0.3], [5.0], [5.2], [5.5]])
        >>> knn_neighbours(x, k=2).tolist()
        [[1, 2], [0, 2], [1, 0], [4, 5], [3, 5], [4, 3]]
    """
    if metric not in KNN_METRICS:
        raise ConfigError(f"k-NN metric must be one of {', '.join(KNN_METRICS)}, got {metric!r}")
    n = features.shape[0]
    if not 1 <= k < n:
        raise ConfigError(f"k must be in [1, num_nodes), got {k}")
    x = features.to(torch.float32)
    if metric == "cosine":
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    squared = (x * x).sum(1)
    rows = max(1, min(n, chunk_bytes // (4 * n)))
    out = torch.empty(n, k, dtype=torch.long)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        block = x[start:stop] @ x.T  # similarity (cosine) or the cross term of the squared distance
        score = block if metric == "cosine" else 2 * block - squared[start:stop, None] - squared[None, :]
        score[torch.arange(stop - start), torch.arange(start, stop)] = -float("inf")  # not one's own neighbour
        out[start:stop] = torch.topk(score, k, dim=1).indices
    return out


def knn_support(features: torch.Tensor, k: int = 10, observed: Optional["dgl.DGLGraph"] = None,
                metric: str = "euclidean") -> "dgl.DGLGraph":
    """A symmetric k-NN graph of ``features`` (an edge where either end is among the other's ``k``
    nearest), self-loops removed, built in blocks of rows (:func:`knn_neighbours`).

    Args:
        features: ``[N, D]`` node features.
        k: neighbours per node, ``1 <= k < N``.
        observed: if given, ``edata["observed"]`` marks the k-NN edges this graph has.
        metric: ``"euclidean"`` or ``"cosine"``.

    Returns:
        The symmetric k-NN graph.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on an unknown metric or ``k`` out of range.

    Example:
        Two clusters of three points: each becomes a triangle, with no edge between them.

        >>> import torch
        >>> from dgl_bilevel.structure import knn_support
        >>> x = torch.tensor([[0.0], [0.1], [0.3], [5.0], [5.2], [5.5]])
        >>> graph = knn_support(x, k=2)
        >>> src, dst = graph.edges()
        >>> graph.num_edges(), bool(((src < 3) == (dst < 3)).all())
        (12, True)
    """
    n = features.shape[0]
    pairs = _knn_matrix(features, k, metric)
    sym = ((pairs + pairs.T) > 0).tocoo()
    return _support_graph(observed, sym.row, sym.col, n)


#: Up to this many node pairs, Euclidean k-NN runs DGL's ``bruteforce-blas`` (the N x N distances at
#: once, as earlier versions did: the same neighbours where distances tie); above, :func:`knn_neighbours`.
DGL_KNN_MAX_PAIRS = 50_000_000


def _knn_matrix(features: torch.Tensor, k: int, metric: str) -> sp.coo_matrix:
    """The directed k-NN relation (row: node, column: one of its ``k`` nearest others) as a 0/1 matrix."""
    n = features.shape[0]
    if not 1 <= k < n:
        raise ConfigError(f"k must be in [1, num_nodes), got {k}")
    if metric == "euclidean" and n * n <= DGL_KNN_MAX_PAIRS:
        g = dgl.knn_graph(features.float(), k + 1, algorithm="bruteforce-blas", exclude_self=False)
        src, dst = g.edges()
        keep = src != dst
        src, dst = src[keep].numpy(), dst[keep].numpy()
        src, dst = dst, src  # DGL's edges run from the neighbour to the node
    else:
        src = np.repeat(np.arange(n), k)
        dst = knn_neighbours(features, k, metric).reshape(-1).numpy()
    return sp.coo_matrix((np.ones(src.size), (src, dst)), shape=(n, n))


def observed_knn_support(graph: "dgl.DGLGraph", features: torch.Tensor, k: int = 10,
                         metric: str = "euclidean") -> "dgl.DGLGraph":
    """The observed edges and a symmetric k-NN graph of the features together (LDS-style candidates:
    the observed graph plus pairs it lacks), ``edata["observed"]`` telling them apart.

    Args:
        graph: the observed graph.
        features: ``[N, D]`` node features.
        k: neighbours per node, ``1 <= k < N``.
        metric: ``"euclidean"`` or ``"cosine"``.

    Returns:
        The symmetric union, ``edata["observed"]`` 1.0 on the observed graph's edges.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on an unknown metric or ``k`` out of range.

    Example:
        The 1-NN graph adds the pairs {0, 5} and {1, 5} to a path (4 directed edges):

        >>> import dgl
        >>> import torch
        >>> path = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> features = torch.tensor([[0.0], [1.1], [2.3], [3.6], [5.0], [0.4]])  # node 5 sits by 0 and 1
        >>> from dgl_bilevel.structure import observed_knn_support
        >>> candidates = observed_knn_support(path, features, k=1)
        >>> candidates.num_edges(), int(candidates.edata["observed"].sum())
        (14, 10)
    """
    n = graph.num_nodes()
    knn = _knn_matrix(features, k, metric)
    obs = adjacency(graph, symmetric=False).astype(np.float64)
    union = ((knn + knn.T + obs + obs.T) > 0).tocsr()
    union.setdiag(0)
    union.eliminate_zeros()
    coo = union.tocoo()
    return _support_graph(graph, coo.row, coo.col, n)


def _support_graph(observed, rows, cols, n, hops=None) -> "dgl.DGLGraph":
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    g = dgl.graph((torch.from_numpy(rows.astype(np.int64)), torch.from_numpy(cols.astype(np.int64))), num_nodes=n)
    if hops is not None:
        g.edata["hops"] = torch.from_numpy(np.asarray(hops)[order].astype(np.int64))
    if observed is not None:
        obs = adjacency(observed, symmetric=False).tocsr()
        g.edata["observed"] = torch.from_numpy(np.asarray(obs[rows, cols]).ravel().astype(np.float32))
    return g


@SUPPORTS.register("observed", help="the observed graph's edges")
def observed_support_from_config(config, data) -> "dgl.DGLGraph":
    return data.graph


@SUPPORTS.register("power", help="pairs within r hops (the support of A^r; --power r)")
def power_support_from_config(config, data) -> "dgl.DGLGraph":
    return power_support(data.graph, config.power, config.power_budget)


@SUPPORTS.register("knn", help="a symmetric k-NN graph of the features (--knn-k, --knn-metric)")
def knn_support_from_config(config, data) -> "dgl.DGLGraph":
    _check_knn_options(config, data, "knn")
    return knn_support(data.features, config.knn_k, data.graph, metric=config.knn_metric)


def _check_knn_options(config, data, support: str) -> None:
    """A k-NN support needs feature vectors and fewer neighbours than other nodes."""
    features = data.features
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[1] == 0:
        raise ConfigError(f"--support {support} needs node feature vectors; {data.name} has none")
    if not 1 <= config.knn_k < features.shape[0]:
        raise ConfigError(f"--knn-k {config.knn_k}: {data.name} has {features.shape[0]} nodes, so k must be in "
                          f"[1, {features.shape[0] - 1}]")


@SUPPORTS.register("observed+knn", help="the observed edges and a symmetric k-NN graph of the features "
                                        "(--knn-k, --knn-metric): candidates that can add edges")
def observed_knn_support_from_config(config, data) -> "dgl.DGLGraph":
    _check_knn_options(config, data, "observed+knn")
    return observed_knn_support(data.graph, data.features, config.knn_k, config.knn_metric)
