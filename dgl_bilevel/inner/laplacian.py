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
from .optimizers import InnerOptimizer
from .laplacian_derivatives import LaplacianDerivatives
from .base import InnerProblem, LinearSystem, Params, default_adam, optimizer_from_config
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

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``lr <= 0``, negative ``lam`` or ``ridge``, an unknown ``loss`` or
            ``normalize``; at :meth:`bind`, ``loss="ce"`` on a task that is not classification.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> problem = dbl.LaplacianRegularization(lam=1.0, loss="mse")
        >>> problem.is_quadratic, dbl.hypergrad.default_method_name(problem)  # solved exactly
        (True, 'adjoint')
        >>> result = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), problem, outer_steps=2, progress=False)
        >>> result.history[0]["forward_converged"], result.best_metrics
        (True, {'v_in': 1.0, 'v_out': 1.0, 'val': 1.0, 'test': 1.0})
        >>> dbl.LaplacianRegularization(loss="ce").is_quadratic  # trained by Adam, differentiated by unrolling
        False
    """

    predictions_use_weights = False  # the predictions are the fitted node values Y themselves
    config_options = frozenset({"inner_steps", "inner_lr", "inner_optimizer", "inner_init", "lam",
                                "laplacian_loss"})  # what from_config reads

    def __init__(
        self,
        lam: float = 1.0,
        loss: str = "auto",
        normalize: str = "edges",
        ridge: float = 1e-5,
        steps: int = 500,
        lr: float = 1e-2,
        optimizer: "InnerOptimizer | torchopt.base.GradientTransformation | None" = None,
        init: str = "fresh",
    ) -> None:
        if not lr > 0:
            raise ConfigError(f"lr must be > 0, got {lr}")
        super().__init__(steps, optimizer or default_adam(lr), init)
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
        # the objective's derivatives written out (one sparse product a step), unless a subclass changed it
        self.derivatives = LaplacianDerivatives.for_problem(self) if self.why_no_derivatives() is None else None
        return self

    def why_no_derivatives(self) -> Optional[str]:
        """None unless a subclass has an objective of its own (its derivatives are not written out)."""
        if type(self).objective is not LaplacianRegularization.objective:
            return f"{type(self).__name__} has an objective of its own"
        return None

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
