"""The inner-problem interface every hypergradient method works against.

An inner problem has parameters ``params`` (a tuple of tensors: GNN weights, or the node
predictions ``Y`` of Laplacian regularisation), a differentiable objective
``g(params, w)`` minimised by ``steps`` updates of a torchopt functional optimizer, and a
prediction ``predict(params, w)`` on every node.

Optional capabilities are *declared*, never discovered by probing for attributes:

* ``is_quadratic`` (a property of the constructor's arguments) -- the optimality condition is
  a linear system ``A(w) Y = b(w)`` returned by :meth:`InnerProblem.linear_system`, so exact
  adjoints apply (:class:`~dgl_bilevel.hypergrad.Adjoint`);
* ``edge_gradient`` -- quadratic problems may set it to a closed form of the per-edge adjoint
  product (a fast VJP); ``None`` means autograd computes it;
* ``custom_steps`` -- a training loop of the problem's own (mini-batches), used instead of the
  generic one when the trajectory is not differentiated; ``None`` means the generic loop;
* ``derivatives`` -- the objective's derivatives written out (a
  :class:`~dgl_bilevel.inner.types.HandDerivatives`), which plain training, unrolled and implicit
  hypergradients use instead of autograd's; ``None`` means autograd, and
  :meth:`InnerProblem.why_no_derivatives` says why;
* ``objective_terms`` -- closures whose sum is the objective, so second-order products can be
  accumulated term by term in bounded memory; returning ``None`` means one pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
import torchopt

from ..errors import ConfigError
from ..registry import INNER_OPTIMIZERS
from .optimizers import ADAM_EPS, InnerOptimizer
from .types import HandDerivatives, Monitor, Params

INIT_MODES = ("fresh", "fixed", "warm")


def default_adam(lr: float, eps: float = ADAM_EPS) -> InnerOptimizer:
    """torchopt Adam with ``eps=1e-6`` and ``eps_root=1e-16`` (betas 0.9, 0.999).

    Why not torch's ``eps=1e-8``: where a coordinate has had (almost) no gradient, Adam is a
    heavy-ball iteration of step ``lr / eps`` on its curvature, stable -- and differentiable
    through, as unrolled hypergradients need -- only while ``lr * H / D < 38``
    (:func:`~dgl_bilevel.inner.optimizers.adam_stability_bound`); the paper's settings give 250
    with ``1e-8`` (NaN or rounding-dominated hypergradients) and 5 with ``1e-6``. ``eps_root``
    keeps ``d sqrt(v)/dv`` finite where a gradient is exactly 0 and must stay tiny to leave the
    steps unchanged. The measurements behind both: docs/lab/defaults.md.

    Args:
        lr: the learning rate.
        eps: Adam's ``eps`` (added to ``sqrt(v)``).

    Returns:
        An :class:`~dgl_bilevel.inner.optimizers.InnerOptimizer`: a torchopt transform
        (``init``, ``update``) that the inner problems and the flat fast path both understand.

    Example:
        >>> import torch
        >>> optimizer = default_adam(0.1)
        >>> x = (torch.tensor([1.0, -2.0]),)
        >>> updates, state = optimizer.update((torch.tensor([3.0, -0.5]),), optimizer.init(x), params=x)
        >>> [round(v, 4) for v in updates[0].tolist()]  # Adam's first step: -lr * sign(gradient)
        [-0.1, 0.1]
    """
    return InnerOptimizer.adam(lr, eps)


def optimizer_from_config(config: Any) -> Optional[InnerOptimizer]:
    """The inner optimizer an experiment configuration names (None: the problem's default Adam); the
    names are those of :data:`~dgl_bilevel.registry.INNER_OPTIMIZERS`."""
    return INNER_OPTIMIZERS.from_config(config.inner_optimizer, config)


@dataclass
class LinearSystem:
    """``A(w) Y = b`` with ``A`` symmetric positive definite on the rows marked ``active``.

    Rows outside ``active`` (nodes in components no labelled node reaches) have ``Y = 0`` for
    every ``w``; solvers keep them at zero.

    ``matvec`` applies ``A(w)`` to an ``[N, C]`` block (differentiably in ``w``), ``rhs`` is ``b``,
    ``diagonal`` is ``A``'s diagonal (for Jacobi preconditioning) and ``active`` is a boolean
    ``[N]`` mask (``None``: every row). Quadratic inner problems return one from
    :meth:`InnerProblem.linear_system`; the adjoint hypergradient solves it twice.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> problem = dbl.LaplacianRegularization(loss="mse").bind(data, graph)
        >>> system = problem.linear_system(torch.ones(graph.num_edges()))
        >>> matrix = system.matvec(torch.eye(6))  # A itself, column by column
        >>> tuple(matrix.shape), bool(torch.allclose(matrix, matrix.T)), system.active is None
        ((6, 6), True, True)
        >>> torch.linalg.solve(matrix, system.rhs).argmax(1).tolist()  # the fitted classes
        [0, 0, 0, 1, 1, 1]
    """

    matvec: Callable[[torch.Tensor], torch.Tensor]
    rhs: torch.Tensor
    diagonal: torch.Tensor
    active: Optional[torch.Tensor] = None


class InnerProblem:
    """Base class. Subclasses implement ``bind``, ``initial_params``, ``objective``, ``predict``.

    Args:
        steps: inner optimisation steps per outer iteration.
        optimizer: an :class:`~dgl_bilevel.inner.optimizers.InnerOptimizer`, or a torchopt
            ``GradientTransformation`` (functional; must support ``inplace=False`` updates so
            unrolled differentiation can see through them), wrapped as one.
        init: where each outer iteration starts the inner problem:
            ``"fresh"`` -- a new random draw every time;
            ``"fixed"`` -- the same draw every time (what the paper's code does);
            ``"warm"`` -- the previous outer iteration's solution.

    Raises:
        ~dgl_bilevel.errors.ConfigError: negative ``steps`` or an unknown ``init``.

    Example:
        A new inner problem: node values fitted to the labels of ``v_in`` and smoothed along the
        weighted edges; every hypergradient method that needs no declared capability serves it.

        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> class Smoothing(InnerProblem):
        ...     def bind(self, data, graph):
        ...         self.data, self.graph = data, graph
        ...         self.src, self.dst = graph.edges()
        ...         self.targets = torch.nn.functional.one_hot(data.labels, 2).float()
        ...         return self
        ...     def initial_params(self, generator):
        ...         return (torch.zeros(self.data.num_nodes, 2),)
        ...     def objective(self, params, edge_weight):
        ...         (values,) = params
        ...         fit = ((values - self.targets)[self.data.v_in] ** 2).sum()
        ...         jumps = ((values[self.src] - values[self.dst]) ** 2).sum(1)
        ...         return fit + 0.5 * (edge_weight * jumps).sum()
        ...     def predict(self, params, edge_weight):
        ...         return params[0]
        >>> problem = Smoothing(steps=30, optimizer=default_adam(0.1))
        >>> result = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), problem, hypergrad="unrolled",
        ...                  outer_steps=2, progress=False)
        >>> result.best_metrics
        {'v_in': 1.0, 'v_out': 1.0, 'val': 1.0, 'test': 1.0}
        >>> try:
        ...     Smoothing(steps=10, optimizer=default_adam(0.1), init="random")
        ... except ConfigError as exc:
        ...     print(exc)
        init must be one of ('fresh', 'fixed', 'warm'), got 'random'
    """

    #: False for problems trained on random mini-batches: their trajectory cannot be unrolled.
    differentiable_trajectory: ClassVar[bool] = True
    #: False when ``predict`` ignores ``w`` (node values fitted directly): then only the inner
    #: solution's dependence on ``w`` carries a hypergradient, and first-order methods give zero.
    predictions_use_weights: ClassVar[bool] = True
    #: True when the inner solution exists only through ``steps`` optimizer steps (a trained
    #: model): zero steps would leave the random initialisation in place.
    needs_steps: ClassVar[bool] = False
    #: The configuration fields ``from_config`` reads (``--hidden`` etc.). The command line refuses an
    #: option set by flag that another inner problem declares and this one does not (it would be
    #: ignored); None: nothing declared, nothing refused.
    config_options: ClassVar[Optional[frozenset]] = None
    #: Capability: the problem's own non-differentiated training loop,
    #: ``(params, w, steps, monitor) -> (params, optimizer_state, last_objective)``; None: the generic one.
    custom_steps: Optional[Callable[..., tuple]] = None
    #: Capability (quadratic problems): closed form of ``d/dw [p^T (b(w) - A(w) Y)]`` per edge,
    #: ``(w, adjoint p, solution Y) -> [E]``; None: autograd through ``linear_system``.
    edge_gradient: Optional[Callable[..., torch.Tensor]] = None
    #: Capability: ``objective``'s derivatives written out (:class:`~dgl_bilevel.inner.types.HandDerivatives`),
    #: set by ``bind``: plain training steps take its gradient, unrolled hypergradients its
    #: gradient-VJPs (:mod:`dgl_bilevel.hypergrad.recorded`), implicit ones its Hessian products.
    #: None: autograd (:meth:`why_no_derivatives` says why).
    derivatives: Optional[HandDerivatives] = None
    #: True when ``objective`` draws new randomness at every call (graphs resampled at every inner
    #: step): there is no fixed point to differentiate implicitly, and a trajectory can only be
    #: differentiated on autograd's graph (recomputing a step would draw other graphs).
    stochastic_objective: bool = False

    def __init__(self, steps: int, optimizer: "InnerOptimizer | torchopt.base.GradientTransformation",
                 init: str = "fresh") -> None:
        if steps < 0:
            raise ConfigError(f"steps must be >= 0, got {steps}")
        if init not in INIT_MODES:
            raise ConfigError(f"init must be one of {INIT_MODES}, got {init!r}")
        self.steps = int(steps)
        self.optimizer = optimizer
        self.init = init
        self._fixed: Optional[Params] = None
        self._last: Optional[Params] = None
        self.data: Any = None
        self.graph: Any = None

    @property
    def optimizer(self) -> InnerOptimizer:
        """The inner optimizer (a torchopt transform assigned here is wrapped, nothing assumed of it)."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: "InnerOptimizer | torchopt.base.GradientTransformation") -> None:
        self._optimizer = InnerOptimizer.wrap(optimizer)

    # ------------------------------------------------------------ to implement
    def bind(self, data: Any, graph: Any) -> "InnerProblem":
        """Attach the data set and the support graph; precompute what does not depend on ``w``."""
        raise NotImplementedError

    def initial_params(self, generator: Optional[torch.Generator]) -> Params:
        """A fresh random starting point."""
        raise NotImplementedError

    def objective(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        """The inner objective ``g(params, w)`` (scalar), differentiable in both."""
        raise NotImplementedError

    def predict(self, params: Params, edge_weight: torch.Tensor) -> torch.Tensor:
        """Outputs on every node (logits or regression values), differentiable in both."""
        raise NotImplementedError

    @property
    def is_quadratic(self) -> bool:
        """True when ``linear_system`` is available (exact adjoints apply); decided by the
        constructor's arguments alone, so it holds before :meth:`bind`."""
        return False

    def linear_system(self, edge_weight: torch.Tensor) -> Optional[LinearSystem]:
        """Quadratic problems: the optimality condition as ``A(w) Y = b``; others return None."""
        return None

    def objective_terms(self, edge_weight: torch.Tensor) -> Optional[list]:
        """Problems too large for one pass: closures ``params -> scalar`` summing to the objective,
        so second-order products can be accumulated term by term. None: use ``objective``."""
        return None

    def outer_surrogate(self, loss: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        """The outer loss as the outer loop back-propagates it: ``loss`` itself, unless the problem
        estimates its hypergradient by a surrogate (the score estimator of sampled graphs)."""
        return loss

    def solution_to_params(self, solution: torch.Tensor) -> Params:
        """Quadratic problems: the params whose ``predict`` is the linear system's solution."""
        return (solution,)

    def why_no_derivatives(self) -> Optional[str]:
        """Why :attr:`derivatives` is None, for messages (None when it is set)."""
        return None if self.derivatives is not None else f"{type(self).__name__} declares no hand-derived derivatives"

    def describe(self) -> dict:
        """Settings for logs and result files."""
        return {"problem": type(self).__name__, "steps": self.steps, "init": self.init}

    # ---------------------------------------------------------------- provided
    @property
    def is_bound(self) -> bool:
        return self.data is not None

    def bind_once(self, data: Any, graph: Any) -> "InnerProblem":
        """:meth:`bind` unless already bound to exactly this data and graph (binding is done once per run)."""
        if self.data is not data or self.graph is not graph:
            self.bind(data, graph)
        return self

    def require_bound(self) -> None:
        if not self.is_bound:
            raise ConfigError(f"{type(self).__name__} is not bound to data yet: call .bind(data, graph) first")

    def starting_params(self, generator: Optional[torch.Generator] = None) -> Params:
        """The starting point for this outer iteration, following ``init``; fresh leaf tensors."""
        self.require_bound()
        if self.init == "warm" and self._last is not None:
            start = self._last
        elif self.init == "fixed" and self._fixed is not None:
            start = self._fixed
        else:
            start = tuple(p.detach() for p in self.initial_params(generator))
            if self.init == "fixed":
                self._fixed = start
        return tuple(p.detach().clone().requires_grad_(True) for p in start)

    def remember(self, params: Params) -> None:
        """Record the solution reached (the warm start of the next outer iteration)."""
        self._last = tuple(p.detach().clone() for p in params)

    def state_dict(self) -> dict:
        return {"fixed": self._fixed, "last": self._last}

    def load_state_dict(self, state: dict) -> None:
        self._fixed = state.get("fixed")
        self._last = state.get("last")
