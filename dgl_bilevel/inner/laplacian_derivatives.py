"""Hand-derived first and second derivatives of the Laplacian-regularisation objective.

For node values ``Y`` (one problem, or ``S`` seeds stacked seed-major) and edge weights ``w``:

    g(Y, w) = sum_r a_r loss(Y[rows_r]) + c sum_e w_e ||Y_u - Y_v||^2 + ridge/2 ||Y||^2

with ``a_r`` the rows' weights (``1 / |v_in|`` of their seed). With ``M(w) = 2c L_s(w) + ridge I``
(``L_s`` the Laplacian of ``W + W^T``; one sparse matrix, :func:`~dgl_bilevel.ops.laplacian_matrix`):

* value ``= fit + <Y, M Y> / 2`` and gradient ``= M Y + fit'`` on the rows: one sparse product per
  inner step (the two weighted sums and degree scaling it replaces took twice the time);
* Hessian-vector product ``H V = M V + fit''`` on the rows, with ``fit'' V_r = a_r p_r * (V_r -
  <p_r, V_r>)`` for cross-entropy (``p_r`` the softmax of ``Y_r``) and ``2 a_r V_r`` for squared error;
* mixed product ``d/dw_e <g, V> = 2c <V_u - V_v, Y_u - Y_v>``.

A point's record is ``Y`` and the softmax on the rows. Unrolled hypergradients
(:mod:`dgl_bilevel.hypergrad.recorded`) and implicit ones (Hessian products) use these instead of
autograd's double backward through the objective.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..losses import row_log_softmax
from ..ops import PerWeightCache, edge_difference_product, laplacian_matrix
from .types import HandDerivatives


class LaplacianDerivatives(HandDerivatives):
    """``value_and_gradient``, ``gradient`` (with a record), ``gradient_vjp`` and
    ``hessian_products`` of :class:`~dgl_bilevel.inner.laplacian.LaplacianRegularization`'s
    objective for one problem (:meth:`for_problem`) or a stack of seeds (:meth:`for_stack`)."""

    def __init__(self, graph, coef: float, ridge: float, loss_kind: str, rows: torch.Tensor, labels: torch.Tensor,
                 targets: torch.Tensor, row_weights: torch.Tensor, row_seeds: torch.Tensor, num_seeds: int,
                 report: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.graph, self.coef, self.ridge, self.loss_kind = graph, float(coef), float(ridge), loss_kind
        self.rows, self.row_seeds, self.num_seeds, self.report = rows, row_seeds, num_seeds, report
        self.labels, self.targets = labels, targets
        self.row_weights = row_weights
        # cross-entropy's gradient on a row is a_r (p_r - onehot_r): the weighted one-hot once, not per step
        self.weighted_onehot = torch.zeros(rows.numel(), targets.shape[1], dtype=row_weights.dtype)
        if loss_kind == "ce":
            self.weighted_onehot[torch.arange(rows.numel()), labels] = row_weights
        self._operator = PerWeightCache()

    @classmethod
    def for_problem(cls, problem) -> "LaplacianDerivatives":
        """For a bound :class:`~dgl_bilevel.inner.laplacian.LaplacianRegularization` with its own objective."""
        data, v_in = problem.data, problem.data.v_in
        n = v_in.numel()
        return cls(problem.graph, problem.coef, problem.ridge, problem.loss_kind, v_in, data.labels.index_select(0, v_in),
                   problem.targets.index_select(0, v_in), torch.full((n,), 1.0 / n, dtype=problem.targets.dtype),
                   torch.zeros(n, dtype=torch.long), 1, lambda per_seed: per_seed.sum())

    @classmethod
    def for_stack(cls, stacked) -> "LaplacianDerivatives":
        """For a :class:`~dgl_bilevel.seeds.problems.StackedLaplacian`; each seed's objective is
        reported to it as its objective evaluation would."""
        nodes = stacked.v_in
        dtype = stacked.targets.dtype
        return cls(stacked.graph, stacked.coef, stacked.ridge, stacked.loss_kind, nodes.index,
                   stacked.labels.index_select(0, nodes.local), stacked.targets.index_select(0, nodes.index),
                   nodes.mean_weights(dtype), nodes.seed, stacked.num_seeds, stacked._record)

    def operator(self, edge_weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``M(w) = 2c L_s(w) + ridge I``, built once per weight tensor inside ``constant_edge_weights``."""
        matrix = self._operator.get(edge_weight, lambda: laplacian_matrix(self.graph, edge_weight, 2.0 * self.coef,
                                                                          self.ridge, dtype))
        if matrix.dtype != dtype:
            matrix = laplacian_matrix(self.graph, edge_weight, 2.0 * self.coef, self.ridge, dtype)
        return matrix

    # ------------------------------------------------------------ first order
    @torch.no_grad()
    def gradient(self, params: tuple, edge_weight: torch.Tensor) -> tuple[torch.Tensor, tuple, dict]:
        """``(value, (dg/dY,), record)``: the objective summed over seeds (each seed's reported); the
        record is ``Y`` and the rows' softmax."""
        (y,) = params
        weights = self.row_weights.to(y.dtype)
        picked = y.index_select(0, self.rows)
        if self.loss_kind == "ce":
            log_probs = row_log_softmax(picked)
            per_row = -log_probs.gather(1, self.labels[:, None]).squeeze(1)
            probs = log_probs.exp_()
            fit_grad = probs * weights[:, None] - self.weighted_onehot.to(y.dtype)
        else:
            diff = picked - self.targets.to(y.dtype)
            per_row, probs = (diff * diff).sum(-1), None
            fit_grad = diff.mul_((2.0 * weights)[:, None])
        smooth_y = self.operator(edge_weight, y.dtype) @ y  # M Y
        per_seed = (y * smooth_y).reshape(self.num_seeds, -1).sum(1).mul_(0.5)  # not .sum(-1) first: 6x slower on 7 columns
        per_seed.index_add_(0, self.row_seeds, per_row * weights)
        grad = smooth_y.index_add_(0, self.rows, fit_grad)
        return self.report(per_seed), (grad,), {"y": y, "probs": probs}

    # ------------------------------------------------------------ second order
    @torch.no_grad()
    def gradient_vjp(self, record: dict, cotangent: tuple, edge_weight: torch.Tensor,
                     defer_edges: bool = False) -> tuple[tuple, torch.Tensor]:
        """``(H V, d/dw <g, V>)`` for a cotangent ``V`` on the gradient, at the record's point."""
        hessian, mixed = self.hessian_products(record, edge_weight)
        return hessian(cotangent), mixed(cotangent)

    def hessian_products(self, record: dict, edge_weight: torch.Tensor) -> tuple[Callable, Callable]:
        """``(V -> (H V,), V -> d/dw <g, V>)`` at the point ``record`` was taken."""
        y, probs = record["y"], record["probs"]
        weights = self.row_weights.to(y.dtype)[:, None]

        @torch.no_grad()
        def hessian(cotangent: tuple) -> tuple:
            (v,) = cotangent
            picked = v.index_select(0, self.rows)
            if probs is not None:
                fit = probs * (picked - (probs * picked).sum(1, keepdim=True)) * weights
            else:
                fit = picked * (2.0 * weights)
            return ((self.operator(edge_weight, y.dtype) @ v).index_add_(0, self.rows, fit),)

        @torch.no_grad()
        def mixed(cotangent: tuple) -> torch.Tensor:
            return edge_difference_product(self.graph, cotangent[0], y).mul_(2.0 * self.coef)

        return hessian, mixed
