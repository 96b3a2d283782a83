"""The energy's graph term ``G(Y) = 1/2 sum_e a_e rho(||delta_e(Y)||^2)`` on a DGL graph.

Conventions (the same as :class:`~dgl_bilevel.inner.LabelPropagation`):

* The sum runs over the *stored* edges ``e = (s -> t)`` with weight ``a_e`` (1 when no
  ``edge_weight`` is given), halved: it is the energy of the symmetrised graph
  ``W_s = (W + W^T) / 2``. On a graph that stores both directions of every undirected edge
  with equal weights, it is the sum over undirected edges ``{i, j}`` of ``a_ij rho(...)``.
* Degrees are those of ``W_s``: ``d = W_s 1``. Self-loops count in ``d`` but their difference
  is 0, so they add nothing else.
* ``normalize="none"``: ``delta_e = y_s - y_t``; quadratic ``rho`` gives ``tr(Y^T L Y)`` with
  ``L = D - W_s``.
* ``normalize="sym"``: ``delta_e = y_s / sqrt(d_s) - y_t / sqrt(d_t)``, plus ``rho(||y_i||^2)``
  for every node with ``d_i = 0``; quadratic ``rho`` gives ``tr(Y^T (I - S) Y)`` with
  ``S = D^-1/2 W_s D^-1/2`` (``D^-1/2 := 0`` where ``d = 0``): the normalised Laplacian of
  APPNP, TWIRLS and label propagation, whose rows at isolated nodes are those of ``I``. The
  normalisation uses the given weights ``a`` (not the IRLS weights): the energy is fixed.

Everything is built on :mod:`dgl_bilevel.ops` sums, so values, gradients in ``Y`` and every
layer output are differentiable in ``edge_weight`` to any order.

Extension point: a term with another edge difference (relation-aware knowledge-graph terms
``y_s R_r - y_t``, a repulsive negative graph) subclasses :class:`GraphTerm` and returns a
:class:`BoundGraphTerm` implementing ``value``, ``base_weights``, ``weights``, ``gradient``,
``hessian_diagonal`` and ``curvature_bound`` (``affine_form`` is an optional fast path); the
energy and every step rule only use those.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .._dgl import dgl
from ..errors import ConfigError
from ..ops import weighted_degrees
from ._graph_ops import adjacency_product, squared_edge_distances, topology
from .penalties import Penalty

NORMALIZATIONS = ("none", "sym")


def as_edge_weight(graph: "dgl.DGLGraph", edge_weight: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """``edge_weight`` as a flat ``[E]`` tensor of ``like``'s dtype (ones when ``None``)."""
    if edge_weight is None:
        return torch.ones(graph.num_edges(), dtype=like.dtype, device=like.device)
    if edge_weight.numel() != graph.num_edges():
        raise ConfigError(f"edge_weight has {edge_weight.numel()} entries for a graph with {graph.num_edges()} edges")
    return edge_weight.reshape(-1).to(like.dtype)


@dataclass
class GraphWeights:
    """Weights of the quadratic majoriser ``1/2 sum_e gamma_e ||delta_e||^2 + sum_i nu_i ||y_i||^2``.

    ``fixed`` marks the energy's own weights (``gamma = a``): fast paths apply.

    Args:
        edge: ``gamma_e`` per stored edge (``[E]``).
        node: ``nu_i`` per node (``[N, 1]``; the isolated nodes of the normalised term), or ``None``.
        fixed: ``True`` only for the term's own weights (:meth:`BoundGraphTerm.base_weights`).

    Example:
        >>> import dgl
        >>> import torch
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> from dgl_bilevel.energy import GraphWeights, LaplacianTerm
        >>> term = LaplacianTerm("none").bind(graph, torch.ones(6))
        >>> own = term.base_weights()
        >>> own.fixed, own.edge.tolist()
        (True, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
        >>> y = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> term.gradient(y, own).flatten().tolist()  # 2 L Y
        [2.0, -2.0, 2.0, -2.0]
        >>> term.gradient(y, GraphWeights(0.5 * own.edge, None)).flatten().tolist()  # half the weights
        [1.0, -1.0, 1.0, -1.0]
    """

    edge: torch.Tensor
    node: Optional[torch.Tensor]
    fixed: bool = False


class BoundGraphTerm:
    """A graph term evaluated on one graph with one set of edge weights.

    The interface the energy and every step rule use (see the module docstring); a
    :class:`GraphTerm`'s ``bind`` returns one. Subclasses implement every method but
    :meth:`affine_form`, which is an optional fast path.

    Example:
        >>> import dgl
        >>> import torch
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> from dgl_bilevel.energy import BoundGraphTerm, LaplacianTerm, make_penalty
        >>> term = LaplacianTerm("none").bind(graph, torch.ones(6))
        >>> isinstance(term, BoundGraphTerm)
        True
        >>> y = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> term.value(y, make_penalty("quadratic")).item()  # tr(Y^T L Y) = 1 + 0 + 1
        2.0
        >>> term.hessian_diagonal(term.base_weights()).flatten().tolist()  # 2 * degree
        [2.0, 4.0, 4.0, 2.0]
        >>> float(term.curvature_bound())  # Gershgorin: 2 * the largest diagonal entry
        8.0
    """

    def squared_distances(self, y: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``u_e = ||delta_e(Y)||^2`` per edge, and per-node terms if the term has any (else ``None``)."""
        raise NotImplementedError

    def value(self, y: torch.Tensor, penalty: Penalty) -> torch.Tensor:
        """``1/2 sum_e a_e rho(u_e)`` (plus node terms)."""
        raise NotImplementedError

    def base_weights(self) -> GraphWeights:
        """The term's own weights (the majoriser of ``rho(u) = u``)."""
        raise NotImplementedError

    def weights(self, y: torch.Tensor, penalty: Penalty) -> GraphWeights:
        """IRLS weights at ``y``: ``gamma_e = a_e rho'(u_e)`` (and node weights, if any)."""
        raise NotImplementedError

    def gradient(self, y: torch.Tensor, weights: GraphWeights) -> torch.Tensor:
        """Gradient in ``Y`` of the quadratic majoriser with these weights (equal to the
        gradient of the term itself when the weights are taken at ``y``)."""
        raise NotImplementedError

    def hessian_diagonal(self, weights: GraphWeights) -> torch.Tensor:
        """Diagonal ``[N, 1]`` of the majoriser's Hessian (the same for every column of ``Y``)."""
        raise NotImplementedError

    def curvature_bound(self) -> "torch.Tensor | float":
        """An upper bound on the largest eigenvalue of the Hessian of the term with ``rho(u) = u``."""
        raise NotImplementedError

    def affine_form(self):
        """Optional fast path: ``(diag, op)`` with ``gradient(Y) = diag * Y - op(Y)`` for the base
        weights (``op`` linear), or ``None``."""
        return None


class GraphTerm:
    """Defines the edge difference ``delta_e``; :meth:`bind` evaluates it on a graph.

    The extension point for other graph terms: a subclass's ``bind`` returns a
    :class:`BoundGraphTerm`, and :class:`~.energy.Energy` takes it as ``graph_term``.

    Example:
        A term that counts every edge twice, built on the Laplacian term:

        >>> import dgl
        >>> import torch
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> from dgl_bilevel.energy import Energy, GraphTerm, LaplacianTerm
        >>> class DoubledLaplacian(GraphTerm):
        ...     def bind(self, graph, edge_weight):
        ...         return LaplacianTerm("none").bind(graph, 2 * edge_weight)
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> Energy(lam=1.0, graph_term=DoubledLaplacian()).bind(graph, target).value(target).item()
        4.0
    """

    def bind(self, graph: "dgl.DGLGraph", edge_weight: torch.Tensor) -> BoundGraphTerm:
        """The term on ``graph`` with edge weights ``a`` (``[E]``)."""
        raise NotImplementedError


class LaplacianTerm(GraphTerm):
    """``delta_e = y_s - y_t`` (``normalize="none"``) or ``y_s / sqrt(d_s) - y_t / sqrt(d_t)`` (``"sym"``).

    The default graph term of :class:`~.energy.Energy` (see the module docstring for the
    conventions: halved sum over stored edges, degrees of ``W_s``, isolated nodes).

    Args:
        normalize: ``"sym"`` (normalised Laplacian ``I - S``) or ``"none"`` (``L = D - W_s``).

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``normalize`` is neither.

    Example:
        >>> import dgl
        >>> import torch
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> from dgl_bilevel.energy import LaplacianTerm, make_penalty
        >>> y = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
        >>> quadratic = make_penalty("quadratic")
        >>> LaplacianTerm("none").bind(graph, torch.ones(6)).value(y, quadratic).item()  # constant: smooth
        0.0
        >>> sym = LaplacianTerm("sym").bind(graph, torch.ones(6))
        >>> round(sym.value(y, quadratic).item(), 4)  # y_i / sqrt(d_i) differ where degrees do
        0.1716
        >>> LaplacianTerm("rw")
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: normalize must be one of ('none', 'sym'), got 'rw'
    """

    def __init__(self, normalize: str = "sym") -> None:
        if normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.normalize = normalize

    def bind(self, graph, edge_weight):
        return BoundLaplacian(graph, edge_weight, self.normalize == "sym")

    def describe(self) -> dict:
        return {"normalize": self.normalize}


class BoundLaplacian(BoundGraphTerm):
    """The Laplacian term on one graph: degrees, ``D^-1/2`` and self-loop weights computed once."""

    def __init__(self, graph: "dgl.DGLGraph", edge_weight: torch.Tensor, normalized: bool) -> None:
        topo = topology(graph)
        self.graph, self.topo, self.weight, self.normalized = graph, topo, edge_weight, normalized
        self._paired = None
        self.degree_sym = weighted_degrees(graph, edge_weight, topo.reverse)  # (W + W^T) 1 = 2 d
        self.loop_weight = self._loops(edge_weight)
        if normalized:
            d = 0.5 * self.degree_sym
            positive = d > 0
            safe = torch.where(positive, d, torch.ones_like(d))
            self.iota = torch.where(positive, safe.rsqrt(), torch.zeros_like(d)).unsqueeze(-1)
            isolated = ~positive
            self.isolated = isolated.unsqueeze(-1).to(edge_weight.dtype) if bool(isolated.any()) else None
        else:
            self.iota, self.isolated = None, None

    def _loops(self, gamma: torch.Tensor) -> Optional[torch.Tensor]:
        """Per node: the summed weight of its self-loops (``None`` without self-loops)."""
        loops = self.topo.loops
        if loops is None:
            return None
        return torch.zeros(self.graph.num_nodes(), dtype=gamma.dtype, device=gamma.device).index_add(
            0, self.topo.src[loops], gamma[loops])

    def _scaled(self, y):
        return y if self.iota is None else self.iota * y

    def adjacency_sum(self, z: torch.Tensor, gamma: torch.Tensor, fixed: bool = False) -> torch.Tensor:
        """``(W_gamma + W_gamma^T) z``: one sparse product on symmetric graphs, two otherwise."""
        pair = self.topo.pair
        if pair is None:
            return adjacency_product(self.graph, z, gamma, both=True)
        if fixed:
            if self._paired is None:
                self._paired = self.weight + self.weight[pair]
            return adjacency_product(self.graph, z, self._paired)
        return adjacency_product(self.graph, z, gamma + gamma[pair])

    def affine_form(self):
        """``(diag, op)`` with ``gradient(Y) = diag * Y - op(Y)`` for the term's own weights; ``op``
        is one sparse product with the normalisation folded into the edge weights
        (``a_e / sqrt(d_s d_t)``): a quadratic step is one sparse product and two elementwise passes."""
        diag = 2.0 if self.normalized else self.degree_sym.unsqueeze(-1)
        folded = self.weight
        if self.normalized:
            iota = self.iota.squeeze(-1)
            folded = iota[self.topo.src] * folded * iota[self.topo.dst]
        if self.topo.pair is not None:
            paired = folded + folded[self.topo.pair]
            return diag, lambda y: adjacency_product(self.graph, y, paired)
        return diag, lambda y: adjacency_product(self.graph, y, folded, both=True)

    def squared_distances(self, y):
        """``u_e = ||delta_e||^2`` per edge, and ``||y_i||^2`` on isolated nodes (else ``None``)."""
        u_edge = squared_edge_distances(self.graph, self._scaled(y))
        u_node = None if self.isolated is None else (y * y).sum(-1, keepdim=True)
        return u_edge, u_node

    def value(self, y, penalty):
        u_edge, u_node = self.squared_distances(y)
        total = 0.5 * (self.weight * penalty.value(u_edge)).sum()
        if u_node is not None:
            total = total + (self.isolated * penalty.value(u_node)).sum()
        return total

    def base_weights(self):
        return GraphWeights(self.weight, self.isolated, fixed=True)

    def weights(self, y, penalty):
        if penalty.is_quadratic:
            return self.base_weights()
        u_edge, u_node = self.squared_distances(y)
        node = None if u_node is None else self.isolated * penalty.weight(u_node)
        return GraphWeights(self.weight * penalty.weight(u_edge), node)

    def gradient(self, y, weights):
        sums = self.adjacency_sum(self._scaled(y), weights.edge, weights.fixed)
        if not self.normalized:
            degree = self.degree_sym if weights.fixed else weighted_degrees(self.graph, weights.edge, self.topo.reverse)
            return degree.unsqueeze(-1) * y - sums
        if weights.fixed:  # iota^2 (W + W^T) 1 = 2 on non-isolated nodes, and the isolated term adds 2 y
            grad = 2.0 * y - self.iota * sums
        else:
            degree = weighted_degrees(self.graph, weights.edge, self.topo.reverse).unsqueeze(-1)
            grad = self.iota * (degree * self._scaled(y) - sums)
            if weights.node is not None:
                grad = grad + 2.0 * weights.node * y
        return grad

    def hessian_diagonal(self, weights):
        if weights.fixed:
            degree, loops = self.degree_sym, self.loop_weight
        else:
            degree = weighted_degrees(self.graph, weights.edge, self.topo.reverse)
            loops = self._loops(weights.edge)
        diag = degree if loops is None else degree - 2.0 * loops
        diag = diag.unsqueeze(-1)
        if self.normalized:
            diag = self.iota**2 * diag
            if weights.node is not None:
                diag = diag + 2.0 * weights.node
        return diag

    def curvature_bound(self):
        """Normalised: ``4`` (``I - S`` has eigenvalues in [0, 2]); unnormalised: Gershgorin,
        ``2 max_i (Hessian diagonal)_i`` (``L`` is diagonally dominant)."""
        if self.normalized:
            return 4.0
        return 2.0 * self.hessian_diagonal(self.base_weights()).max()
