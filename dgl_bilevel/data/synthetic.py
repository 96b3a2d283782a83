"""The paper's generated data sets (docs/design.md, section 5), seeded and built sparsely.

* :func:`cheaters` -- 256 students on a line; a student passes when the Gaussian-weighted
  sum of neighbours' marks exceeds 60. The observed graph samples the true kernel.
* :func:`synthetic1` -- 1,536 points in the unit square, a radius graph with random weights;
  regression labels from Laplacian regularisation on the true graph.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.spatial import cKDTree

from .._dgl import dgl
from ..errors import ConfigError
from .bilevel_data import BilevelData
from .splits import seeded_generator, split_in_two


def _symmetric_graph(src: torch.Tensor, dst: torch.Tensor, n: int, weight: torch.Tensor | None = None):
    """Both directions of each undirected pair ``src < dst`` (self-loops ``src == dst`` once)."""
    loops = src == dst
    all_src = torch.cat([src, dst[~loops]])
    all_dst = torch.cat([dst, src[~loops]])
    g = dgl.graph((all_src, all_dst), num_nodes=n)
    if weight is not None:
        g.edata["weight"] = torch.cat([weight, weight[~loops]])
    return g


def cheaters(
    n: int = 256,
    num_features: int = 10,
    epsilon: float = 0.027,
    threshold: float = 60.0,
    seed: int = 0,
) -> BilevelData:
    """The cheaters data set.

    Features ``X ~ U[0, 1]^{n x 10}``, feature 0 the position (nodes sorted by it);
    ``A*_ij = exp(-|x_i0 - x_j0|^2 / epsilon^2)`` -- the kernel of the paper's code, i.e.
    ``sigma = epsilon / sqrt(2)`` in ``exp(-d^2 / (2 sigma^2))``. (Reading ``sigma = 0.027``
    there instead makes 91-96% of students pass, a near-constant task; measured over seeds
    0-2.) ``A_obs ~ Bernoulli(A*)`` (symmetric; the
    diagonal, where ``A* = 1``, always gives a self-loop); grades ``A* X[:, 1:] 1``, pass if
    above ``threshold``. ``v_in`` = first and last ``n/8`` nodes, ``v_out`` = nodes
    ``3n/8 .. 5n/8``, the rest split evenly at random into validation and test.
    ``extras['adjacency_star']`` holds the dense ``A*``.

    Args:
        n: number of students (at least 16).
        num_features: feature columns (at least 2): the position and ``num_features - 1`` marks.
        epsilon: the kernel width.
        threshold: the pass mark.
        seed: seeds every draw.

    Returns:
        A two-class :class:`BilevelData` named ``"cheaters"``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``n < 16`` or ``num_features < 2``.

    Example:
        >>> from dgl_bilevel.data import cheaters
        >>> data = cheaters(seed=0)
        >>> data.summary()
        'cheaters: 256 nodes, 3178 edges, 10 features, 2 classes; v_in=64, v_out=64, val=64, test=64'
        >>> data.v_out.min().item(), data.v_out.max().item(), tuple(data.extras["adjacency_star"].shape)
        (96, 159, (256, 256))
    """
    if n < 16 or num_features < 2:
        raise ConfigError("cheaters needs n >= 16 and num_features >= 2")
    gen = seeded_generator(seed)
    x = torch.rand(n, num_features, generator=gen, dtype=torch.float64)
    x[:, 0] = x[:, 0].sort().values
    pos = x[:, 0]
    a_star = torch.exp(-((pos[:, None] - pos[None, :]) ** 2) / epsilon**2)
    iu = torch.triu_indices(n, n)
    sampled = torch.bernoulli(a_star[iu[0], iu[1]], generator=gen).bool()
    graph = _symmetric_graph(iu[0][sampled], iu[1][sampled], n)
    grades = a_star @ x[:, 1:].sum(1)
    labels = (grades > threshold).long()
    k = n // 8
    v_in = torch.cat([torch.arange(0, k), torch.arange(n - k, n)])
    v_out = torch.arange(3 * n // 8, 5 * n // 8)
    taken = torch.zeros(n, dtype=torch.bool)
    taken[v_in] = taken[v_out] = True
    val, test = split_in_two((~taken).nonzero().flatten(), 0.5, gen)
    with warnings.catch_warnings():  # A*_ii = 1: every student is tied to itself, as in the paper
        warnings.filterwarnings("ignore", message="the graph has .* self-loop")
        return BilevelData(
            graph=graph,
            features=x.float(),
            labels=labels,
            v_in=v_in,
            v_out=v_out,
            val=val,
            test=test,
            num_classes=2,
            name="cheaters",
            extras={"adjacency_star": a_star.float(), "grades": grades.float(), "seed": seed},
        )


def synthetic1(
    frequency: str = "high",
    n: int = 1536,
    radius: float = 0.06,
    num_in: int = 100,
    num_out: int = 25,
    lam: float = 1.0,
    seed: int = 0,
) -> BilevelData:
    """Synthetic data set 1 (regression, for Laplacian regularisation).

    ``n`` points ``U[0, 1]^2``; ``A*_ij = 1`` if ``|x_i - x_j| < radius`` (i != j);
    ``A_obs = xi * A*`` with ``xi ~ U[0, 1]`` per undirected edge (in ``edata['weight']``).
    ``v_in``: ``num_in`` random nodes (``frequency="high"``, well spread) or the ``num_in``
    nearest to (0.5, 0.5) (``"low"``); ``v_out``: ``num_out`` random other nodes; the rest
    split evenly into validation and test. Labels on ``v_in``: a sum of three Gaussian bumps
    (std 0.2) scaled to [0, 1]; elsewhere the Laplacian-regularisation solution on ``A*``
    with ``lam`` -- the model class the inner problem fits, so ``A*`` is a perfect answer.

    Args:
        frequency: ``"high"`` (random ``v_in``) or ``"low"`` (``v_in`` around the centre).
        n: number of points.
        radius: the radius of the true graph.
        num_in, num_out: sizes of ``v_in`` and ``v_out``.
        lam: the Laplacian-regularisation strength that makes the labels.
        seed: seeds every draw.

    Returns:
        A regression :class:`BilevelData` named ``"synthetic1-<frequency>"``, its weights in
        ``edata['weight']`` and the true graph in ``extras['true_graph']``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``frequency`` is neither ``"high"`` nor ``"low"``.

    Example:
        A smaller instance than the paper's (which is the default):

        >>> from dgl_bilevel.data import synthetic1
        >>> data = synthetic1("high", n=200, radius=0.15, num_in=20, num_out=10, seed=0)
        >>> data.summary()
        'synthetic1-high: 200 nodes, 2394 edges, 2 features, regression; v_in=20, v_out=10, val=85, test=85'
        >>> data.weight_key, data.extras["true_graph"].num_edges() == data.num_edges
        ('weight', True)
    """
    if frequency not in ("high", "low"):
        raise ConfigError(f"frequency must be 'high' or 'low', got {frequency!r}")
    gen = seeded_generator(seed)
    points = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    pairs = cKDTree(points.numpy()).query_pairs(radius, output_type="ndarray")
    pairs = torch.from_numpy(np.ascontiguousarray(pairs)).long()
    src, dst = pairs[:, 0], pairs[:, 1]
    xi = torch.rand(src.numel(), generator=gen, dtype=torch.float64)
    graph = _symmetric_graph(src, dst, n, xi.float())
    true_graph = _symmetric_graph(src, dst, n)

    centers = torch.rand(3, 2, generator=gen, dtype=torch.float64)
    bumps = torch.exp(-((points[:, None, :] - centers[None]) ** 2).sum(-1) / (2 * 0.2**2)).sum(1)
    bumps = (bumps - bumps.min()) / (bumps.max() - bumps.min())

    if frequency == "high":
        v_in = torch.randperm(n, generator=gen)[:num_in]
    else:
        v_in = ((points - 0.5) ** 2).sum(1).argsort()[:num_in]
    rest = torch.ones(n, dtype=torch.bool)
    rest[v_in] = False
    others = rest.nonzero().flatten()
    others = others[torch.randperm(others.numel(), generator=gen)]
    v_out, remaining = others[:num_out], others[num_out:]
    val, test = split_in_two(remaining, 0.5, gen)

    labels = _laplacian_labels(true_graph, points, bumps, v_in, lam)
    return BilevelData(
        graph=graph,
        features=points.float(),
        labels=labels.float(),
        v_in=v_in,
        v_out=v_out,
        val=val,
        test=test,
        task="regression",
        name=f"synthetic1-{frequency}",
        weight_key="weight",
        extras={"true_graph": true_graph, "bumps": bumps.float(), "seed": seed, "lam": lam},
    )


def _laplacian_labels(true_graph, points, bumps, v_in, lam) -> torch.Tensor:
    """Bumps on ``v_in``; the Laplacian-regularisation solution on the true graph elsewhere.

    The paper's inner problem with squared loss, no ridge and ``lam`` divided by the number of
    stored edges: ``(S / n_in + c L_s) Y = S T / n_in`` with ``L_s`` the Laplacian of ``A + A^T``.
    Solved directly (scipy) on the nodes connected to ``v_in``; elsewhere ``Y = 0``.
    """
    import scipy.sparse as sp
    import scipy.sparse.csgraph as csgraph
    import scipy.sparse.linalg as spla

    n = true_graph.num_nodes()
    src, dst = (t.numpy() for t in true_graph.edges())
    adjacency = sp.coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n)).tocsr()
    symmetric = (adjacency + adjacency.T).tocsr()
    laplacian = sp.diags(np.asarray(symmetric.sum(axis=1)).ravel()) - symmetric
    selector = np.zeros(n)
    selector[v_in.numpy()] = 1.0
    n_in = len(v_in)
    coef = lam / true_graph.num_edges()
    system = (sp.diags(selector / n_in) + coef * laplacian).tocsc()
    rhs = selector * bumps.double().numpy() / n_in
    _, component = csgraph.connected_components(symmetric, directed=False)
    active = np.isin(component, component[v_in.numpy()])
    solution = np.zeros(n)
    solution[active] = spla.spsolve(system[active][:, active], rhs[active])
    labels = torch.from_numpy(solution).to(points.dtype)
    labels[v_in] = bumps[v_in]
    return labels
