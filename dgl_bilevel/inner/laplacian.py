"""Inner problem: Laplacian regularisation (paper eq. 1-2), fitting node values ``Y`` directly.

    g(Y, w) = loss(Y[v_in], y[v_in]) + c * sum_e w_e ||Y_u - Y_v||^2 + ridge/2 * ||Y||^2

with ``c = lam / num_edges`` (``normalize="edges"``, as in the paper's code) or ``c = lam``.
The edge sum runs over stored (directed) edges, so it equals ``Y^T L_s Y`` with ``L_s`` the
Laplacian of ``W + W^T``. With the squared loss the problem is quadratic:

    (S / n_in + c L_s + ridge/2 I) Y = S T / n_in,

``S`` the selector of ``v_in`` and ``T`` the targets (one-hot classes for classification).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
import torchopt

from .._dgl import dgl
from ..errors import ConfigError
from ..ops import DegreeCache, edge_difference_product, symmetric_weighted_sum, weighted_degrees, weighted_sum
from ..registry import INNER_PROBLEMS
from .base import ELEMENTWISE_CONFIG_OPTIMIZERS, InnerProblem, LinearSystem, Params, default_adam, optimizer_from_config
from ..graphs import reachable_from


@INNER_PROBLEMS.register("laplacian", help="Laplacian regularisation: node values fitted on v_in, smooth on the graph (--lam)")
class LaplacianRegularization(InnerProblem):
    """Laplacian-regularised fit of node values.

    Args:
        lam: regularisation strength (paper: 1 when learning the graph, 0.1 on ``A_obs``).
        loss: ``"ce"`` (cross-entropy on ``Y`` as class scores), ``"mse"`` (squared error to
            one-hot classes or regression targets: quadratic, so exact adjoints apply), or
            ``"auto"``: ``"ce"`` for classification, ``"mse"`` for regression (only an explicit
            ``"mse"`` makes :attr:`is_quadratic` true: it must be known before binding).
        normalize: ``"edges"`` divides ``lam`` by the number of stored edges (paper's code);
            ``"none"`` uses ``lam`` as is.
        ridge: ``ridge/2 ||Y||^2`` (the paper's code: Adam weight decay 1e-5).
        steps, lr, optimizer, init: the iterative solver (paper: 500 Adam steps, lr 1e-2 on
            Cora, lr 10 on synthetic data); ``"fresh"`` starts from ``Y ~ U[0, 1]``.
    """

    predictions_use_weights = False  # the predictions are the fitted node values Y themselves

    def __init__(
        self,
        lam: float = 1.0,
        loss: str = "auto",
        normalize: str = "edges",
        ridge: float = 1e-5,
        steps: int = 500,
        lr: float = 1e-2,
        optimizer: Optional[torchopt.base.GradientTransformation] = None,
        init: str = "fresh",
    ) -> None:
        if not lr > 0:
            raise ConfigError(f"lr must be > 0, got {lr}")
        super().__init__(steps, optimizer or default_adam(lr), init)
        self.elementwise_optimizer = optimizer is None
        if loss not in ("auto", "ce", "mse"):
            raise ConfigError(f"loss must be 'auto', 'ce' or 'mse', got {loss!r}")
        if normalize not in ("edges", "none"):
            raise ConfigError(f"normalize must be 'edges' or 'none', got {normalize!r}")
        if lam < 0 or ridge < 0:
            raise ConfigError("lam and ridge must be non-negative")
        self.lam, self.loss, self.normalize, self.ridge, self.lr = float(lam), loss, normalize, float(ridge), lr

    @classmethod
    def from_config(cls, config, data) -> "LaplacianRegularization":
        # "auto" is settled here, where the task is known, so the problem declares itself quadratic (or not)
        loss = config.laplacian_loss
        if loss == "auto":
            loss = "ce" if data.task == "classification" else "mse"
        problem = cls(lam=config.lam, loss=loss, steps=config.inner_steps, lr=config.inner_lr,
                      optimizer=optimizer_from_config(config), init=config.inner_init)
        problem.elementwise_optimizer = config.inner_optimizer in ELEMENTWISE_CONFIG_OPTIMIZERS
        return problem

    def bind(self, data, graph) -> "LaplacianRegularization":
        self.data, self.graph = data, graph
        self.reverse = dgl.reverse(graph)
        self.loss_kind = self.loss if self.loss != "auto" else ("ce" if data.task == "classification" else "mse")
        if self.loss_kind == "ce" and data.task != "classification":
            raise ConfigError("loss='ce' needs a classification task")
        self.coef = self.lam / graph.num_edges() if self.normalize == "edges" else self.lam
        dtype = data.features.dtype
        n = data.num_nodes
        self.width = data.out_dim
        self.targets = _targets(data, dtype)
        self.selector = torch.zeros(n, 1, dtype=dtype)
        self.selector[data.v_in] = 1.0
        self._dtype = dtype
        self._reachable = None
        self._degrees = DegreeCache()
        own_objective = type(self).objective is LaplacianRegularization.objective
        self.first_order = self._value_and_gradient if own_objective else None
        v_in = data.v_in  # what the written-out gradient reads at every step, selected once
        self._fit_rows = (v_in, data.labels.index_select(0, v_in), self.targets.index_select(0, v_in),
                          torch.full((v_in.numel(),), 1.0 / v_in.numel(), dtype=dtype), torch.zeros_like(v_in))
        return self

    # ------------------------------------------------------------- iterative
    def initial_params(self, generator: Optional[torch.Generator]) -> Params:
        return (torch.rand(self.data.num_nodes, self.width, generator=generator, dtype=self._dtype),)

    def smoothness(self, y: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        """``sum_e w_e ||Y_u - Y_v||^2`` over stored edges, as ``<D_s, |Y|^2> - 2 <Y, W^T Y>``.

        Node-sized intermediates only: unrolling 500 steps keeps no ``[E, C]`` tensor per step.
        """
        degree = self._degrees(self.graph, edge_weight, self.reverse)
        return (degree * (y * y).sum(-1)).sum() - 2.0 * (y * weighted_sum(self.graph, y, edge_weight)).sum()

    def objective(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        (y,) = params
        v_in = self.data.v_in
        if self.loss_kind == "ce":
            fit = F.cross_entropy(y[v_in], self.data.labels[v_in])
        else:
            fit = ((y[v_in] - self.targets[v_in]) ** 2).sum() / v_in.numel()
        value = fit + self.coef * self.smoothness(y, edge_weight)
        if self.ridge:
            value = value + 0.5 * self.ridge * (y * y).sum()
        return value

    def predict(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        return params[0]

    def _value_and_gradient(self, params: Params, edge_weight: torch.Tensor) -> tuple[torch.Tensor, Params]:
        """:attr:`~dgl_bilevel.inner.base.InnerProblem.first_order`: the objective and its gradient in ``Y``."""
        rows, labels, targets, row_weights, row_seeds = self._fit_rows
        value, grad = laplacian_value_and_gradient(
            params[0], rows, labels, targets, row_weights.to(params[0].dtype), row_seeds, 1, self.loss_kind,
            self._degrees(self.graph, edge_weight, self.reverse), self.graph, self.reverse, edge_weight,
            self.coef, self.ridge)
        return value.sum(), (grad,)

    # ------------------------------------------------------------- quadratic
    def laplacian_matvec(self, y: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        """``L_s Y = D_s Y - (W + W^T) Y``."""
        degree = weighted_degrees(self.graph, edge_weight, self.reverse).unsqueeze(-1)
        return degree * y - symmetric_weighted_sum(self.graph, self.reverse, y, edge_weight)

    @property
    def is_quadratic(self) -> bool:
        """Only an explicit ``loss="mse"`` declares the problem quadratic (``"auto"`` is decided
        by the data's task at :meth:`bind`, too late for choosing a hypergradient method)."""
        return self.loss == "mse"

    def linear_system(self, edge_weight: torch.Tensor) -> Optional[LinearSystem]:
        if self.loss_kind != "mse":
            return None
        n_in = self.data.v_in.numel()
        degree = weighted_degrees(self.graph, edge_weight, self.reverse).unsqueeze(-1)
        sel = self.selector / n_in
        shift = 0.5 * self.ridge

        def matvec(y: torch.Tensor) -> torch.Tensor:
            lap = degree * y - symmetric_weighted_sum(self.graph, self.reverse, y, edge_weight)
            return sel * y + self.coef * lap + shift * y

        diagonal = (sel + self.coef * degree + shift).expand(-1, self.width)
        active = None if self.ridge > 0 else self.reachable(edge_weight)
        return LinearSystem(matvec, sel * self.targets, diagonal, active)

    def edge_gradient(self, edge_weight: torch.Tensor, adjoint: torch.Tensor, solution: torch.Tensor) -> torch.Tensor:
        """Closed form of ``d/dw_e [p^T (b - A(w) Y)] = -c (p_u - p_v).(Y_u - Y_v)``."""
        return -self.coef * edge_difference_product(self.graph, adjoint, solution)

    def reachable(self, edge_weight: torch.Tensor) -> torch.Tensor:
        """Nodes connected to ``v_in`` through positive-weight edges (elsewhere ``Y = 0``)."""
        if bool((edge_weight > 0).all()):
            if self._reachable is None:
                self._reachable = reachable_from(self.graph, self.data.v_in)
            return self._reachable
        return reachable_from(self.graph, self.data.v_in, edge_weight > 0)

    def describe(self) -> dict:
        return {**super().describe(), "lam": self.lam, "loss": self.loss_kind if self.is_bound else self.loss,
                "normalize": self.normalize, "ridge": self.ridge, "lr": self.lr}


@torch.no_grad()
def laplacian_value_and_gradient(
    y: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, row_weights: torch.Tensor,
    row_seeds: torch.Tensor, num_seeds: int, loss_kind: str, degree: torch.Tensor, graph, reverse,
    edge_weight: torch.Tensor, coef: float, ridge: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-seed objective ``[S]`` and its gradient in ``Y``, written out (no autograd graph).

    ``fit = sum_r row_weights[r] * loss(Y[rows[r]])`` (cross-entropy against ``labels`` or squared
    error against ``targets``), plus ``coef <Y, L_s Y>`` with ``L_s Y = D_s Y - (W + W^T) Y``
    (``degree`` = ``D_s``'s diagonal) and ``ridge/2 ||Y||^2``; the gradient is the fit's on the
    ``rows`` plus ``2 coef L_s Y + ridge Y``. ``row_seeds`` says which seed each row's loss belongs
    to (all zero for one problem; the nodes of stacked seeds are seed-major). Plain training runs on
    it instead of autograd's backward pass.
    """
    picked = y.index_select(0, rows)
    if loss_kind == "ce":
        log_probs = torch.log_softmax(picked, dim=1)
        per_row = -log_probs.gather(1, labels[:, None]).squeeze(1)
        fit_grad = log_probs.exp_()
        fit_grad[torch.arange(rows.numel()), labels] -= 1.0
    else:
        diff = picked - targets
        per_row = (diff * diff).sum(-1)
        fit_grad = diff.mul_(2.0)
    fit_grad.mul_(row_weights[:, None])
    laplacian_y = degree[:, None] * y - symmetric_weighted_sum(graph, reverse, y, edge_weight)
    value = (y * laplacian_y).sum(-1).reshape(num_seeds, -1).sum(1).mul_(coef)
    value.index_add_(0, row_seeds, per_row * row_weights)
    grad = laplacian_y.mul_(2.0 * coef).index_add_(0, rows, fit_grad)
    if ridge:
        value += 0.5 * ridge * (y * y).reshape(num_seeds, -1).sum(1)
        grad.add_(y, alpha=ridge)
    return value, grad


def _targets(data, dtype: torch.dtype) -> torch.Tensor:
    """One-hot classes (classification) or ``[N, T]`` regression targets; zero off ``v_in``."""
    n = data.num_nodes
    targets = torch.zeros(n, data.out_dim, dtype=dtype)
    v_in = data.v_in
    if data.task == "classification":
        targets[v_in, data.labels[v_in]] = 1.0
    else:
        targets[v_in] = data.labels[v_in].reshape(v_in.numel(), -1).to(dtype)
    return targets
