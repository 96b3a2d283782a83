"""Inner problem: weighted label propagation (Zhou et al., 2004) with learnable edge weights.

``dgl.nn.LabelPropagation`` ignores edge weights (docs/design.md, section 4), so it cannot be an
inner problem; this one propagates over ``W_s = (W + W^T) / 2`` with symmetric normalisation
``S = D^-1/2 W_s D^-1/2`` and solves

    (I - alpha S(w)) F = (1 - alpha) Y0,

``Y0`` the one-hot classes (or regression targets) of ``v_in`` and zero elsewhere. It is the
minimiser of ``g(F) = 1/2 <F, (I - alpha S) F> - (1 - alpha) <F, Y0>``; gradient descent on
``g`` with step 1 is the classic iteration ``F <- alpha S F + (1 - alpha) Y0``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torchopt

from .._dgl import dgl
from ..errors import ConfigError
from ..ops import edge_dot, symmetric_weighted_sum, weighted_degrees
from ..registry import INNER_PROBLEMS
from .optimizers import InnerOptimizer
from .base import InnerProblem, LinearSystem, Params
from .laplacian import _targets


@INNER_PROBLEMS.register("lp", help="weighted label propagation (Zhou et al.; quadratic: exact adjoint; --lp-alpha)")
class LabelPropagation(InnerProblem):
    """Weighted label propagation.

    Args:
        alpha: propagation weight in (0, 1); larger spreads labels further.
        steps: iterations of ``F <- alpha S F + (1 - alpha) Y0`` for the iterative methods
            (plain gradient descent with step 1 on ``g``; the default optimizer).
        init: ``"fresh"`` and ``"fixed"`` start from ``F = Y0`` (deterministic); ``"warm"``
            from the previous solution.

    It is quadratic (:attr:`is_quadratic`), so the default hypergradient is the exact adjoint;
    its predictions ``F`` do not read ``w`` directly, so the first-order method is refused.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``alpha`` outside (0, 1).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> problem = dbl.LabelPropagation(alpha=0.5).bind(data, graph)
        >>> problem.is_quadratic, dbl.hypergrad.default_method_name(problem)
        (True, 'adjoint')
        >>> weights = torch.ones(graph.num_edges(), requires_grad=True)
        >>> solution = dbl.Adjoint().solve(problem, weights, problem.initial_params(None))
        >>> scores = problem.predict(solution.params, weights)
        >>> scores.argmax(1).tolist(), round(float(scores[0, 0].detach()), 4)
        ([0, 0, 0, 1, 1, 1], 0.5774)
        >>> loss = torch.nn.functional.cross_entropy(scores[data.v_out], data.labels[data.v_out])
        >>> tuple(torch.autograd.grad(loss, weights)[0].shape)  # one hypergradient entry per edge
        (10,)
    """

    predictions_use_weights = False  # the predictions are the propagated values F themselves
    config_options = frozenset({"lp_alpha"})  # what from_config reads: solved exactly, no steps or lr

    def __init__(
        self,
        alpha: float = 0.9,
        steps: int = 50,
        optimizer: "InnerOptimizer | torchopt.base.GradientTransformation | None" = None,
        init: str = "fresh",
    ) -> None:
        super().__init__(steps, optimizer or torchopt.sgd(1.0), init)
        if not 0.0 < alpha < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha = float(alpha)

    @classmethod
    def from_config(cls, config, data) -> "LabelPropagation":
        return cls(alpha=config.lp_alpha)

    def bind(self, data, graph) -> "LabelPropagation":
        self.data, self.graph = data, graph
        self.reverse = dgl.reverse(graph)
        self.seeds = _targets(data, data.features.dtype)
        return self

    def initial_params(self, generator: Optional[torch.Generator]) -> Params:
        return (self.seeds.clone(),)

    def _inv_sqrt_degree(self, edge_weight: torch.Tensor) -> torch.Tensor:
        """``D^-1/2`` of ``W_s`` as a column, 0 at isolated nodes."""
        degree = 0.5 * weighted_degrees(self.graph, edge_weight, self.reverse)
        safe = degree.clamp_min(torch.finfo(degree.dtype).tiny)
        return torch.where(degree > 0, safe.rsqrt(), torch.zeros_like(degree)).unsqueeze(-1)

    def _propagate(self, f: torch.Tensor, edge_weight: torch.Tensor, inv_sqrt: torch.Tensor) -> torch.Tensor:
        """``S F = D^-1/2 W_s D^-1/2 F``."""
        return inv_sqrt * 0.5 * symmetric_weighted_sum(self.graph, self.reverse, inv_sqrt * f, edge_weight)

    def objective(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        (f,) = params
        spread = self._propagate(f, edge_weight, self._inv_sqrt_degree(edge_weight))
        return 0.5 * (f * (f - self.alpha * spread)).sum() - (1 - self.alpha) * (f * self.seeds).sum()

    def predict(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        return params[0]

    @property
    def is_quadratic(self) -> bool:
        return True

    def linear_system(self, edge_weight: torch.Tensor) -> LinearSystem:
        inv_sqrt = self._inv_sqrt_degree(edge_weight)

        def matvec(f: torch.Tensor) -> torch.Tensor:
            return f - self.alpha * self._propagate(f, edge_weight, inv_sqrt)

        return LinearSystem(matvec, (1 - self.alpha) * self.seeds, torch.ones_like(self.seeds), None)

    def edge_gradient(self, edge_weight: torch.Tensor, adjoint: torch.Tensor, solution: torch.Tensor) -> torch.Tensor:
        """Closed form of ``d/dw_e [p^T b - p^T A(w) F] = alpha d/dw_e [p^T S(w) F]`` per edge ``u -> v``.

        Edge ``e`` adds ``w_e / 2`` to ``W_s[u, v]``, ``W_s[v, u]``, ``d_u`` and ``d_v``, so ::

            d(p^T S F)/dw_e = (p_u.F_v + p_v.F_u) / (2 sqrt(d_u d_v)) + (g_u + g_v) / 2,
            g_k = -(p_k.(S F)_k + F_k.(S p)_k) / (2 d_k).
        """
        inv_sqrt = self._inv_sqrt_degree(edge_weight)
        p_scaled, f_scaled = inv_sqrt * adjoint, inv_sqrt * solution
        cross = edge_dot(self.graph, p_scaled, f_scaled) + edge_dot(self.graph, f_scaled, p_scaled)
        spread_f = self._propagate(solution, edge_weight, inv_sqrt)
        spread_p = self._propagate(adjoint, edge_weight, inv_sqrt)
        node = -0.5 * inv_sqrt.squeeze(-1) ** 2 * ((adjoint * spread_f).sum(-1) + (solution * spread_p).sum(-1))
        src, dst = self.graph.edges()
        return self.alpha * 0.5 * (cross + node[src] + node[dst])

    def describe(self) -> dict:
        return {**super().describe(), "alpha": self.alpha}
