"""The lower-level energy of BloomGML (our interpretation, see docs/bloomgml.md)::

    E(Y) = sum_i kappa(||y_i - f_i||^2)  +  lam * G_rho(Y)  +  h(Y),
    G_rho(Y) = 1/2 sum_{e = (s -> t)} a_e rho(||delta_e(Y)||^2)      (see graph_terms),

``F = f_theta(X)`` the target (any module's output, or a tensor), ``kappa`` and ``rho`` concave
non-decreasing penalties (:mod:`.penalties`), ``h`` a non-smooth node term handled by its prox
(:mod:`.nonsmooth`). With quadratic ``kappa`` and ``rho`` and no ``h``:

    E(Y) = ||Y - F||^2 + lam tr(Y^T L Y),   grad E = 2 (Y - F) + 2 lam L Y,   Hessian 2 (I + lam L),

``L = D - W_s`` (``normalize="none"``) or ``I - D^-1/2 W_s D^-1/2`` (``"sym"``).

Majoriser. At ``Y0`` the quadratic ``Q(Y) = sum_i c_i ||y_i - f_i||^2 + lam (1/2 sum_e gamma_e
||delta_e||^2 + ...) + h(Y) + const`` with ``c_i = kappa'(||y0_i - f_i||^2)`` and
``gamma_e = a_e rho'(u_e(Y0))`` lies above ``E`` and touches it at ``Y0`` with the same gradient
(the penalties are concave in ``u``): the basis of IRLS and of every step-size bound here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .._dgl import dgl
from ..errors import ConfigError
from .graph_terms import BoundGraphTerm, GraphTerm, GraphWeights, LaplacianTerm, as_edge_weight
from .nonsmooth import NonSmoothTerm, make_nonsmooth
from .penalties import Penalty, make_penalty


@dataclass
class Surrogate:
    """Weights of the quadratic majoriser at an iterate: fidelity ``c`` (``[N, 1]``, or ``None``
    for ``kappa(u) = u``) and graph weights.

    Made by :meth:`BoundEnergy.surrogate`; :meth:`BoundEnergy.gradient` and
    :meth:`BoundEnergy.hessian_diagonal` read it. IRLS rebuilds it at every step.

    Args:
        fidelity: ``c_i = kappa'(||y_i - f_i||^2)`` per node (``[N, 1]``), or ``None`` when
            ``kappa`` is quadratic (every ``c_i = 1``).
        graph: the graph term's weights ``gamma_e = a_e rho'(u_e)`` (a
            :class:`~.graph_terms.GraphWeights`).

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.energy import Energy
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> bound = Energy(fidelity="cauchy", normalize="none").bind(graph, target)
        >>> surrogate = bound.surrogate(torch.zeros(4, 1))
        >>> surrogate.fidelity.flatten().tolist()  # 1 / (1 + ||y_i - f_i||^2)
        [0.5, 1.0, 1.0, 0.5]
        >>> surrogate.graph.fixed  # quadratic rho: the energy's own edge weights
        True
    """

    fidelity: Optional[torch.Tensor]
    graph: GraphWeights


class Energy:
    """``E(Y; A, X, theta)``: its pieces, independent of any graph.

    Args:
        lam: weight of the graph term (``lambda >= 0``).
        penalty: ``rho`` of the graph term: a name from :data:`~.penalties.PENALTIES` or a
            :class:`~.penalties.Penalty` (``make_penalty("lp", p=0.1, tau=0.2)``).
        fidelity: ``kappa`` of the fidelity term, the same choices.
        regularizer: ``h``: ``"none"``, ``"nonneg"`` or ``"l1"`` (or a
            :class:`~.nonsmooth.NonSmoothTerm`, e.g. ``L1(mu=0.1)``).
        normalize: ``"sym"`` (normalised Laplacian) or ``"none"``.
        graph_term: a :class:`~.graph_terms.GraphTerm` replacing the Laplacian term
            (relation-aware terms); ``normalize`` must then be left at its default.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``lam < 0``, an unknown penalty, regularizer or normalisation name, or
            parameters a penalty does not take.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.energy import Energy
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> energy = Energy(lam=1.0, normalize="none")
        >>> energy.is_quadratic, energy.is_convex
        (True, True)
        >>> bound = energy.bind(graph, target)
        >>> bound.value(target).item()  # ||F - F||^2 + lam tr(F^T L F) = 0 + (1 + 0 + 1)
        2.0
        >>> Energy(penalty="huber").is_quadratic
        False
        >>> Energy(lam=-1.0)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: lam must be >= 0, got -1.0
    """

    def __init__(
        self,
        lam: float = 1.0,
        penalty: "str | Penalty" = "quadratic",
        fidelity: "str | Penalty" = "quadratic",
        regularizer: "str | NonSmoothTerm" = "none",
        normalize: str = "sym",
        graph_term: Optional[GraphTerm] = None,
    ) -> None:
        if not float(lam) >= 0:
            raise ConfigError(f"lam must be >= 0, got {lam}")
        self.lam = float(lam)
        self.penalty = make_penalty(penalty)
        self.fidelity = make_penalty(fidelity)
        self.regularizer = make_nonsmooth(regularizer)
        self.graph_term = graph_term if graph_term is not None else LaplacianTerm(normalize)

    @property
    def is_quadratic(self) -> bool:
        """Quadratic ``kappa`` and ``rho`` and no ``h``: the minimiser solves a linear system."""
        return self.penalty.is_quadratic and self.fidelity.is_quadratic and self.regularizer.is_zero

    @property
    def is_convex(self) -> bool:
        return self.penalty.convex and self.fidelity.convex

    def bind(self, graph: "dgl.DGLGraph", target: torch.Tensor, edge_weight: Optional[torch.Tensor] = None) -> "BoundEnergy":
        """The energy on ``graph`` with target ``F = target`` (``[N, C]``) and weights ``a``
        (``[E]``, ones when ``None``).

        Raises:
            ~dgl_bilevel.errors.ConfigError: ``target`` is not 2-D, its rows do not match the graph's nodes, or
                ``edge_weight`` has not one entry per edge.
        """
        if target.dim() != 2:
            raise ConfigError(f"the target F must be [N, C], got shape {tuple(target.shape)}; "
                              "reshape a 1-D target with .unsqueeze(-1)")
        if target.shape[0] != graph.num_nodes():
            raise ConfigError(f"target has {target.shape[0]} rows for a graph with {graph.num_nodes()} nodes")
        weight = as_edge_weight(graph, edge_weight, target)
        return BoundEnergy(self, self.graph_term.bind(graph, weight), target)

    def describe(self) -> dict:
        return {"lam": self.lam, "penalty": self.penalty.describe(), "fidelity": self.fidelity.describe(),
                "regularizer": self.regularizer.describe(), **getattr(self.graph_term, "describe", dict)()}

    def __repr__(self) -> str:
        return f"Energy({self.describe()})"


class BoundEnergy:
    """An :class:`Energy` on one graph, edge weights and target: value, gradient, majoriser.

    Made by :meth:`Energy.bind`; the step rules (:mod:`.steps`) only talk to this object.

    Args:
        energy: the :class:`Energy` (penalties, ``lam``, ``h``).
        graph_term: its graph term bound to the graph and edge weights.
        target: ``F``, ``[N, C]``.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.energy import Energy
        >>> graph = dgl.graph(([0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]))  # the path 0-1-2-3
        >>> target = torch.tensor([[1.0], [0.0], [0.0], [-1.0]])
        >>> bound = Energy(lam=1.0, normalize="none").bind(graph, target)
        >>> y = torch.zeros(4, 1)
        >>> bound.value(y).item()  # ||0 - F||^2
        2.0
        >>> bound.gradient(y).flatten().tolist()  # 2 (Y - F) + 2 lam L Y
        [-2.0, 0.0, 0.0, 2.0]
        >>> float(bound.lipschitz_bound())  # 2 + lam * 2 max_i (2 d_i)
        10.0
        >>> step = bound.descent(0.1)  # Y -> Y - 0.1 grad E(Y)
        >>> round(bound.value(step(y)).item(), 4)  # 2 * 0.8^2 + 2 * 0.2^2: lower
        1.36
    """

    def __init__(self, energy: Energy, graph_term: BoundGraphTerm, target: torch.Tensor) -> None:
        self.energy, self.graph_term, self.target = energy, graph_term, target
        self.lam = energy.lam
        self._fixed_diagonal = None

    # ----------------------------------------------------------------- value
    def _fidelity_u(self, y):
        r = y - self.target
        return (r * r).reshape(r.shape[0], -1).sum(-1, keepdim=True)

    def smooth_value(self, y: torch.Tensor) -> torch.Tensor:
        """``sum_i kappa(||y_i - f_i||^2) + lam G(Y)``."""
        fit = self.energy.fidelity.value(self._fidelity_u(y)).sum()
        if self.lam == 0:
            return fit
        return fit + self.lam * self.graph_term.value(y, self.energy.penalty)

    def value(self, y: torch.Tensor) -> torch.Tensor:
        """``E(Y)`` (``+inf`` outside the domain of ``h``)."""
        return self.smooth_value(y) + self.energy.regularizer.value(y)

    # ----------------------------------------------------------------- majoriser
    def surrogate(self, y: torch.Tensor) -> Surrogate:
        """IRLS weights at ``y``: ``c_i = kappa'(.)``, ``gamma_e = a_e rho'(u_e)``."""
        fid = self.energy.fidelity
        c = None if fid.is_quadratic else fid.weight(self._fidelity_u(y))
        return Surrogate(c, self.graph_term.weights(y, self.energy.penalty))

    def gradient(self, y: torch.Tensor, surrogate: Optional[Surrogate] = None) -> torch.Tensor:
        """Gradient in ``Y`` of the smooth part (of the majoriser built at ``y`` when ``surrogate``
        is ``None``; equal to the gradient of ``E``'s smooth part)."""
        s = surrogate if surrogate is not None else self.surrogate(y)
        c = 1.0 if s.fidelity is None else s.fidelity.reshape(-1, *([1] * (y.dim() - 1)))
        grad = 2.0 * c * (y - self.target)
        if self.lam:
            grad = grad + self.lam * self.graph_term.gradient(y, s.graph)
        return grad

    def hessian_diagonal(self, surrogate: Surrogate) -> torch.Tensor:
        """Diagonal ``[N, 1]`` of the majoriser's Hessian: the Jacobi preconditioner of IRLS."""
        c = 1.0 if surrogate.fidelity is None else surrogate.fidelity
        diag = 2.0 * c + self.lam * self.graph_term.hessian_diagonal(surrogate.graph) if self.lam else 2.0 * c
        if not torch.is_tensor(diag):
            diag = torch.full((self.target.shape[0], 1), float(diag), dtype=self.target.dtype)
        return diag

    def fixed_diagonal(self) -> torch.Tensor:
        """``P0 = 2 (kappa'_max + lam rho'_max diag(L))``, ``[N, 1]``: the Jacobi diagonal of the
        largest curvature any majoriser can have; one metric for every step."""
        if self._fixed_diagonal is None:
            e = self.energy
            diag = 2.0 * e.fidelity.max_weight
            if self.lam:
                diag = diag + self.lam * e.penalty.max_weight * self.graph_term.hessian_diagonal(self.graph_term.base_weights())
            if not torch.is_tensor(diag):
                diag = torch.full((self.target.shape[0], 1), float(diag), dtype=self.target.dtype)
            self._fixed_diagonal = diag
        return self._fixed_diagonal

    def lipschitz_bound(self) -> "torch.Tensor | float":
        """``L_hat = 2 kappa'_max + lam rho'_max * curvature_bound(G)``: bounds the Hessian of every
        majoriser (for the quadratic energy: ``2 (1 + lam lambda_max(L))`` with ``lambda_max(L)``
        replaced by 2 (``sym``) or the Gershgorin bound ``2 max_i L_ii`` (``none``))."""
        e = self.energy
        bound = 2.0 * e.fidelity.max_weight
        if self.lam:
            bound = bound + self.lam * e.penalty.max_weight * self.graph_term.curvature_bound()
        return bound

    def descent(self, scale) -> Callable[[torch.Tensor], torch.Tensor]:
        """``Y -> Y - scale * grad E_smooth(Y)`` (``scale`` a number or an ``[N, 1]`` column).

        For quadratic ``kappa`` and ``rho`` the step is affine, ``A * Y + B + C * op(Y)``,
        with ``A, B, C`` computed once and the normalisation folded into the edge weights: two
        elementwise passes and one sparse product per step instead of about ten.
        """
        e = self.energy
        form = self.graph_term.affine_form() if (e.fidelity.is_quadratic and e.penalty.is_quadratic) else None
        if form is None:
            return lambda y: y - scale * self.gradient(y)
        diag, op = form
        lam = self.lam
        a = 1.0 - scale * (2.0 + lam * diag)
        b = (2.0 * scale) * self.target
        c = lam * scale

        def step(y: torch.Tensor) -> torch.Tensor:
            base = torch.add(b, y, alpha=a) if isinstance(a, float) else torch.addcmul(b, a, y)
            if not lam:
                return base
            spread = op(y)
            return torch.add(base, spread, alpha=c) if isinstance(c, float) else torch.addcmul(base, c, spread)

        return step

    def prox(self, y: torch.Tensor, step) -> torch.Tensor:
        return self.energy.regularizer.prox(y, step)
