"""The exponential-decay bound of the Laplacian hypergradient (paper Thm IV.2), computed for a graph.

For the quadratic Laplacian problem ``H Y = b`` with ``H = D - c A_s`` (``D`` its diagonal,
``A_s = W + W^T``), write ``H = D^1/2 (I - M) D^1/2``. The normalised operator
``D^-1/2 H D^-1/2 = I - M`` has spectrum ``[mu_min, mu_max]`` and ``M`` has spectral radius

    rho = max(|1 - mu_min|, |1 - mu_max|)   (= 1 - mu_min when mu_max <= 2 - mu_min).

``(M^k)_ij = 0`` for ``k`` below the hop distance, so the Neumann series gives
``|(H^-1)_ij| <= (d_i d_j)^-1/2 rho^dist(i,j) / (1 - rho)``. With ``Y = H^-1 b`` (``b`` on
``V_in``) and the adjoint ``p = H^-1 G`` (``G = dF/dY`` on ``V_out``),
``|Y_i| <= K_in rho^d_in(i)`` and ``|p_i| <= K_out rho^d_out(i)``, where

    K_set = d_min^-1/2 sum_{j in set} d_j^-1/2 |rhs_j| / (1 - rho).

The edge hypergradient ``-c (p_u - p_v).(Y_u - Y_v)`` is then bounded through the paper's
Laplacian edge distance ``delta_e = min over endpoints of d_in + d_out``: with ``m_in``, ``m_out``
the endpoint minima of each distance, ``delta_e <= m_in + m_out + 1`` (adjacent endpoints differ
by at most one hop), so

    |dF/dw_e| <= c (|p_u| + |p_v|)(|Y_u| + |Y_v|) <= 4 c K_in K_out rho^(delta_e - 1).

This is our own derivation along the lines of the paper's argument; it is a rigorous upper
bound (tests check every edge against it), loose by the constants but with the right rate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse.linalg as spla
import torch

from ..errors import ConfigError
from ..inner.laplacian import LaplacianRegularization

DENSE_LIMIT = 4000


@dataclass
class LaplacianBound:
    """The constants of the Laplacian hypergradient bound (module docstring) for one graph.

    ``at(d)`` is the bound ``4 c K_in K_out rho^(d - 1)`` on ``|dF/dw_e|`` for an edge at
    Laplacian distance ``d``; ``per_distance`` holds it for ``d = 0 .. max_distance``.

    Args:
        mu_min, mu_max: the spectrum's ends of the normalised operator ``I - M``.
        rho: the spectral radius of ``M``, the per-hop decay.
        coef: the Laplacian coefficient ``c``.
        k_in, k_out: the constants ``K_in`` and ``K_out``.
        per_distance: distance -> bound (filled by :func:`laplacian_bound`).

    Example:
        >>> from dgl_bilevel.diagnostics import LaplacianBound
        >>> bound = LaplacianBound(mu_min=0.1, mu_max=1.9, rho=0.9, coef=0.5, k_in=2.0, k_out=3.0)
        >>> round(bound.at(3), 4), round(bound.at(4) / bound.at(3), 4), bound.rate
        (9.72, 0.9, 0.9)
    """

    mu_min: float
    mu_max: float
    rho: float
    coef: float
    k_in: float
    k_out: float
    per_distance: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """The per-hop decay factor of the bound."""
        return self.rho

    def at(self, distance: int) -> float:
        return 4.0 * self.coef * self.k_in * self.k_out * self.rho ** max(distance - 1, 0)


def laplacian_bound(
    problem: LaplacianRegularization, edge_weight: torch.Tensor, outer_gradient: torch.Tensor, max_distance: int = 64
) -> LaplacianBound:
    """The bound's constants for ``problem`` (bound, quadratic) at ``edge_weight``.

    ``outer_gradient`` is ``dF/dY`` (non-zero on ``v_out`` only). Works on the nodes reachable
    from ``v_in`` (elsewhere ``Y = 0``).

    Args:
        problem: a :class:`~dgl_bilevel.inner.laplacian.LaplacianRegularization` with
            ``loss="mse"``, bound to its data.
        edge_weight: the graph's edge weights.
        outer_gradient: ``dF/dY``, ``[N]`` or ``[N, T]``.
        max_distance: ``per_distance`` is filled up to this distance.

    Returns:
        The :class:`LaplacianBound`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if the problem is not the quadratic one.

    Example:
        >>> import dgl
        >>> import torch
        >>> import dgl_bilevel as dbl
        >>> from dgl_bilevel.diagnostics import laplacian_bound
        >>> path = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> targets = torch.linspace(0, 1, 6, dtype=torch.float64)
        >>> data = dbl.BilevelData(path, torch.eye(6, dtype=torch.float64), targets, v_in=[0, 1],
        ...                        v_out=[4], val=[5], test=[3], task="regression")
        >>> problem = dbl.LaplacianRegularization(loss="mse", ridge=0.0).bind(data, data.graph)
        >>> outer = torch.zeros(6, 1, dtype=torch.float64)
        >>> outer[4] = 1.0
        >>> bound = laplacian_bound(problem, data.observed_weights(), outer, max_distance=6)
        >>> round(bound.rho, 4), bound.per_distance[5] < bound.per_distance[2]
        (0.9349, True)
    """
    w = edge_weight.detach().double()
    system = problem.linear_system(w)
    if system is None:
        raise ConfigError("the bound needs the quadratic (loss='mse') Laplacian problem")
    n = problem.data.num_nodes
    active = system.active if system.active is not None else torch.ones(n, dtype=torch.bool)
    idx = active.nonzero().flatten()
    diag = system.diagonal[:, 0].double()
    inv_sqrt = diag.rsqrt()

    def normalised(v: np.ndarray) -> np.ndarray:
        full = torch.zeros(n, 1, dtype=torch.float64)
        full[idx, 0] = inv_sqrt[idx] * torch.from_numpy(np.ascontiguousarray(v)).double()
        out = system.matvec(full)[idx, 0] * inv_sqrt[idx]
        return out.numpy()

    m = idx.numel()
    if m <= DENSE_LIMIT:
        dense = np.stack([normalised(col) for col in np.eye(m)], axis=1)
        eig = np.linalg.eigvalsh(0.5 * (dense + dense.T))
        mu_min, mu_max = float(eig[0]), float(eig[-1])
    else:
        op = spla.LinearOperator((m, m), matvec=normalised, dtype=np.float64)
        mu_max = float(spla.eigsh(op, k=1, which="LA", return_eigenvectors=False, tol=1e-6)[0])
        shifted = spla.LinearOperator((m, m), matvec=lambda v: mu_max * v - normalised(v), dtype=np.float64)
        mu_min = mu_max - float(spla.eigsh(shifted, k=1, which="LA", return_eigenvectors=False, tol=1e-6)[0])
    rho = max(abs(1 - mu_min), abs(1 - mu_max))
    d_min_inv_sqrt = float(inv_sqrt[idx].max())

    def constant(rhs: torch.Tensor) -> float:
        norms = rhs.double().reshape(n, -1).norm(dim=1)
        return d_min_inv_sqrt * float((inv_sqrt * norms * active).sum()) / max(1 - rho, 1e-300)

    bound = LaplacianBound(mu_min, mu_max, rho, problem.coef, constant(system.rhs), constant(outer_gradient))
    bound.per_distance = {d: bound.at(d) for d in range(max_distance + 1)}
    return bound
