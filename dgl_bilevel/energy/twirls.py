"""DGL's TWIRLS propagation (``dgl.nn.TWIRLSConv`` without its MLPs), with edge weights.

DGL 2.1's ``TWIRLSConv`` removes and re-adds self-loops, overwrites every edge weight with 1,
and runs ``TWIRLSUnfoldingAndAttention``: with ``deg`` the (weighted) in-degree, ``A^T h`` the
sum over in-edges and ``alpha = 1 / (1 + lam)`` unless given,

* ``precond=True`` (its default; "eq. 28"), ``Q = lam deg + (1 - lam) I``:
  ``Z <- (1 - alpha) Z + alpha lam Q^-1/2 A^T Q^-1/2 Z + alpha Q^-1 F``;
* ``precond=False`` ("eq. 30"): ``Y <- (1 - alpha - alpha lam) Y + alpha lam deg^-1/2 A^T deg^-1/2 Y + alpha F``;
* ``attention``: after step ``attn_after`` (``steps // 2``), every edge weight becomes
  ``1 / max(tau, (u_e + 1e-7)^(1 - p/2)) + 1e-9`` (0 instead of the first term where
  ``(u_e + 1e-7)^(1 - p/2) > T``, if ``T > 0``), ``u_e = ||y_s - y_t||^2`` on the current
  iterate, and the degrees are recomputed from these weights.

This module computes exactly that (DGL's constants included) on :mod:`dgl_bilevel.ops`, with
``edge_weight`` ``a_e`` multiplying every weight (attention: ``a_e (s(u_e) + 1e-9)``; the added
self-loops weigh 1), differentiable in it to any order.

What it minimises (our reading; see docs/bloomgml.md). ``precond=False`` is exactly
:class:`~.layers.EnergyLayer` with ``step_rule="gradient"``, ``normalize="sym"`` and step
``alpha / 2`` on the self-looped graph (for symmetric ``a``): ``K`` gradient steps on
``||Y - F||^2 + lam tr(Y^T (I - S) Y)``. ``precond=True`` in ``Y = Q^-1/2 Z`` reads
``Y <- Y - alpha Q^-1 [((1 - lam) I + lam L) Y - Q^-1/2 F]`` (``L = D - A``; the self-loops
cancel in ``L`` but not in ``A``): a damped splitting iteration for ``((1 - lam) I + lam L) Y =
Q^-1/2 F``, not the Jacobi step ``Y - alpha Q^-1 [(I + lam L) Y - F]`` on ``||Y - F||^2 + lam
tr(Y^T L Y)`` (``Q = I + lam D_0`` is that system's Jacobi diagonal, ``D_0`` the degree without
self-loops). At ``lam = 1`` that system is singular and ``Z`` grows linearly along ``Q^1/2 1``.
Attention is an IRLS reweighting for ``rho(u) = u^(p/2)`` (weight ``(2/p) rho'``, floored and
thresholded), with the degrees -- hence ``Q`` and the normalisation -- taken from the new weights.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .._dgl import dgl
from .._graph_cache import graph_cache
from ..errors import ConfigError
from ..ops import weighted_degrees
from ._graph_ops import adjacency_product, squared_edge_distances


def with_self_loops(
    graph: "dgl.DGLGraph", edge_weight: Optional[torch.Tensor] = None, fill: float = 1.0
) -> tuple["dgl.DGLGraph", Optional[torch.Tensor]]:
    """``graph`` with its self-loops replaced by one self-loop per node of weight ``fill``.

    Edge order as ``graph.remove_self_loop().add_self_loop()`` (DGL's TWIRLSConv): the kept
    edges in their order, then the loops by node. ``edge_weight`` (if given) is carried along.
    The new graph is built once per input graph and kept on it.

    Args:
        graph: the graph.
        edge_weight: ``[E]`` weights, or ``None``.
        fill: the weight of the new self-loops.

    Returns:
        ``(looped_graph, weights)``; ``weights`` is ``None`` when ``edge_weight`` is.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.energy import with_self_loops
        >>> graph = dgl.graph(([0, 0, 1], [0, 1, 2]))  # a self-loop at 0, then 0 -> 1 -> 2
        >>> looped, weight = with_self_loops(graph, torch.tensor([5.0, 2.0, 3.0]))
        >>> [t.tolist() for t in looped.edges()]  # kept edges, then one loop per node
        [[0, 1, 0, 1, 2], [1, 2, 0, 1, 2]]
        >>> weight
        tensor([2., 3., 1., 1., 1.])
    """
    cache = graph_cache(graph)
    cached = cache.self_looped
    if cached is None or cached[2] != graph.num_edges():
        src, dst = graph.edges()
        keep = (src != dst).nonzero().flatten()
        nodes = torch.arange(graph.num_nodes())
        looped = dgl.graph((torch.cat([src[keep], nodes]), torch.cat([dst[keep], nodes])), num_nodes=graph.num_nodes())
        cached = cache.self_looped = (looped, keep, graph.num_edges())
    looped, keep, _ = cached
    if edge_weight is None:
        return looped, None
    weight = edge_weight.reshape(-1)
    return looped, torch.cat([weight[keep], torch.full((graph.num_nodes(),), fill, dtype=weight.dtype)])


class TWIRLSPropagation(nn.Module):
    """The propagation of ``dgl.nn.TWIRLSConv`` (``num_mlp_before = num_mlp_after = 0``), weighted.

    Args:
        steps: ``prop_step``.
        lam: ``lam`` (weight of the smoothness term).
        alpha: step size ``alp``; 0 means ``1 / (1 + lam)`` (DGL's rule).
        precond: DGL's ``precond`` (see the module docstring).
        attention: reweight the edges once, after step ``attn_after``.
        attn_after: ``None`` means ``steps // 2`` (as TWIRLSConv); ``attention`` must be set.
        tau, T, p: the attention's floor, threshold (``T <= 0``: none) and exponent.
        init_attention: also reweight before the first step (DGL's ``attn_bef``).
        add_self_loops: replace self-loops by unit ones first (TWIRLSConv always does).

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``steps < 0``, ``alpha < 0``, or ``attn_after`` without ``attention``.

    Example:
        Without preconditioning it is gradient descent on the normalised quadratic energy of the
        self-looped graph:

        >>> import dgl
        >>> import torch
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> from dgl_bilevel.energy import EnergyLayer, TWIRLSPropagation, with_self_loops
        >>> feat = torch.arange(8.0).reshape(4, 2)
        >>> propagation = TWIRLSPropagation(steps=4, lam=1.0, precond=False)
        >>> propagation.alpha  # 1 / (1 + lam)
        0.5
        >>> looped, _ = with_self_loops(graph)
        >>> layer = EnergyLayer(4, "gradient", lam=1.0, normalize="sym", step=propagation.alpha / 2)
        >>> torch.allclose(propagation(graph, feat), layer(looped, feat), atol=1e-5)
        True
    """

    def __init__(
        self,
        steps: int,
        lam: float = 1.0,
        alpha: float = 0.0,
        precond: bool = True,
        attention: bool = False,
        attn_after: Optional[int] = None,
        tau: float = 0.2,
        T: float = -1.0,
        p: float = 1.0,
        init_attention: bool = False,
        add_self_loops: bool = True,
    ) -> None:
        super().__init__()
        if steps < 0:
            raise ConfigError(f"steps must be >= 0, got {steps}")
        if alpha < 0:
            raise ConfigError(f"alpha must be >= 0 (0: automatic 1 / (1 + lam)), got {alpha}")
        if attn_after is not None and not attention:
            raise ConfigError("attn_after is set but attention=False")
        self.steps, self.lam, self.precond = steps, float(lam), precond
        self.alpha = float(alpha) if alpha > 0 else 1.0 / (1.0 + self.lam)
        self.attn_after = (steps // 2 if attn_after is None else attn_after) if attention else -1
        self.tau, self.T, self.p = float(tau), float(T), float(p)
        self.init_attention, self.add_self_loops = init_attention, add_self_loops

    def reweight(self, graph: "dgl.DGLGraph", y: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        """TWIRLS' attention weights ``a_e (s(u_e) + 1e-9)``."""
        u = squared_edge_distances(graph, y)
        power = (torch.relu(u) + 1e-7) ** (1 - 0.5 * self.p)
        inverse = 1.0 / power.clamp_min(self.tau)
        if self.T > 0:
            inverse = torch.where(power.clamp_min(self.tau) > self.T, torch.zeros_like(inverse), inverse)
        return edge_weight * (inverse + 1e-9)

    def _coefficients(self, x, degree):
        """``(scale, add, keep)`` with one step ``Y <- keep Y + add + scale * A^T (scale * Y)``."""
        alpha, lam = self.alpha, self.lam
        if self.precond:
            q = lam * degree + (1 - lam)
            q_half = q.pow(-0.5)
            return q_half, alpha * x / q, 1 - alpha, alpha * lam
        return degree.pow(-0.5), alpha * x, 1 - alpha * lam - alpha, alpha * lam

    @staticmethod
    def _step(graph, y, weight, coefficients):
        scale, add, keep, mix = coefficients
        spread = adjacency_product(graph, scale * y, weight)
        return torch.addcmul(torch.add(add, y, alpha=keep), mix * scale, spread)

    def forward(self, graph: "dgl.DGLGraph", feat: torch.Tensor, edge_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        if edge_weight is None:
            edge_weight = torch.ones(graph.num_edges(), dtype=feat.dtype, device=feat.device)
        if self.add_self_loops:
            graph, edge_weight = with_self_loops(graph, edge_weight)
        weight = edge_weight.reshape(-1).to(feat.dtype)
        x = y = feat
        base = weight  # each attention recomputes the weights from the given ones (as DGL)
        if self.init_attention:
            weight = self.reweight(graph, y, base)
        coefficients = self._coefficients(x, weighted_degrees(graph, weight).unsqueeze(-1))
        for k in range(self.steps):
            y = self._step(graph, y, weight, coefficients)
            if k == self.attn_after - 1:
                weight = self.reweight(graph, y, base)
                coefficients = self._coefficients(x, weighted_degrees(graph, weight).unsqueeze(-1))
        return y

    def extra_repr(self) -> str:
        return (f"steps={self.steps}, lam={self.lam}, alpha={self.alpha}, precond={self.precond}, "
                f"attn_after={self.attn_after}, tau={self.tau}, T={self.T}, p={self.p}")
