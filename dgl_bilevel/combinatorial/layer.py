"""``DifferentiableSolver``: a discrete solver and a gradient estimator as one ``nn.Module``."""
from __future__ import annotations

import inspect
from typing import Any, Optional, Union

import torch
from torch import nn

from ..errors import ConfigError
from .base import SolverLike, as_solver, positive_float, positive_int
from .estimators import NOISES, RELAXATIONS, fenchel_young_loss
from .registry import ESTIMATORS, SOLVERS


def _keyword_options(fn: Any) -> set[str]:
    return {p.name for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "sense"}


class DifferentiableSolver(nn.Module):
    """``y = layer(c)``: the discrete solution for scores ``c``, differentiable by ``estimator``.

    Args:
        solve: a :class:`~.base.Solver`, a plain callable ``c -> y``, or a registered solver name
            (``SOLVERS.choices()``: ``"topk"``, ``"edge_budget"``, ``"per_node_topk"``,
            ``"shortest_path"``, ``"mst"``) built with ``solver_options``.
        estimator: ``"perturbed"`` (default), ``"ste"`` or ``"blackbox"`` (``ESTIMATORS.choices()``).
        num_samples, sigma, noise, hard, control_variate, generator: options of ``"perturbed"``
            (defaults 10, 1.0, ``"gaussian"``, False, True, None).
        lam: option of ``"blackbox"`` (default 1.0).
        relaxation, temperature: options of ``"ste"`` (defaults ``"identity"``, 1.0).
        sense, event_ndim, batched: describe a plain callable (see :class:`~.base.FunctionSolver`).

    Only the chosen estimator's options may be given, so a misplaced option fails loudly.
    ``layer.fenchel_young_loss(c, target)`` is the perturbed Fenchel-Young loss with the layer's
    noise settings.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on an unknown solver or estimator name, an option the estimator does not take,
            an invalid option value, or ``solver_options`` given with a solver object.

    Example:
        >>> import torch
        >>> from dgl_bilevel.combinatorial import DifferentiableSolver, TopK
        >>> layer = DifferentiableSolver(TopK(2), "perturbed", num_samples=50, sigma=0.5,
        ...                              generator=torch.Generator().manual_seed(0))
        >>> scores = torch.tensor([0.5, 2.0, -1.0, 1.0], requires_grad=True)
        >>> y = layer(scores)  # E[topk(scores + 0.5 Z)], differentiable
        >>> y.shape, round(float(y.detach().sum()), 4)
        (torch.Size([4]), 2.0)
        >>> ste = DifferentiableSolver("topk", "ste", solver_options={"k": 1})
        >>> ste(scores)
        tensor([0., 1., 0., 0.], grad_fn=<_StraightThroughBackward>)
        >>> DifferentiableSolver(TopK(2), "ste", sigma=0.5)
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: option(s) ['sigma'] do not apply to estimator 'ste'; ...
    """

    def __init__(self, solve: Union[str, SolverLike], estimator: str = "perturbed", *,
                 num_samples: Optional[int] = None, sigma: Optional[float] = None, noise: Optional[str] = None,
                 hard: Optional[bool] = None, control_variate: Optional[bool] = None,
                 generator: Optional[torch.Generator] = None, lam: Optional[float] = None,
                 relaxation: Optional[str] = None, temperature: Optional[float] = None,
                 sense: Optional[str] = None, event_ndim: Optional[int] = None, batched: Optional[bool] = None,
                 solver_options: Optional[dict] = None) -> None:
        super().__init__()
        if isinstance(solve, str):
            solve = SOLVERS.build(solve, **(solver_options or {}))
        elif solver_options:
            raise ConfigError("solver_options apply only when solve is a registered solver name")
        self.solver = as_solver(solve, sense, event_ndim, batched)
        self.estimator = estimator
        self._estimate = ESTIMATORS[estimator]  # ConfigError listing the choices if unknown
        given = {"num_samples": num_samples, "sigma": sigma, "noise": noise, "hard": hard,
                 "control_variate": control_variate, "generator": generator, "lam": lam,
                 "relaxation": relaxation, "temperature": temperature}
        given = {k: v for k, v in given.items() if v is not None}
        allowed = _keyword_options(self._estimate)
        misplaced = sorted(set(given) - allowed)
        if misplaced:
            raise ConfigError(f"option(s) {misplaced} do not apply to estimator {estimator!r}; "
                              f"it takes {sorted(allowed)}")
        _validate(given)
        self.options = given

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self._estimate(self.solver, c, **self.options)

    def fenchel_young_loss(self, c: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Perturbed Fenchel-Young loss per problem; gradient ``+-(y_sigma(c) - target)``."""
        keys = ("num_samples", "sigma", "noise", "generator")
        return fenchel_young_loss(self.solver, c, target, **{k: v for k, v in self.options.items() if k in keys})

    def extra_repr(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if k != "generator")
        return f"solver={self.solver!r}, estimator={self.estimator!r}" + (f", {shown}" if shown else "")


def _validate(options: dict) -> None:
    """Fail at construction (not at the first forward) on invalid option values."""
    if "num_samples" in options:
        positive_int("num_samples", options["num_samples"])
    for name in ("sigma", "lam", "temperature"):
        if name in options:
            positive_float(name, options[name])
    if options.get("noise", "gaussian") not in NOISES:
        raise ConfigError(f"unknown noise {options['noise']!r}; choose from {NOISES}")
    if options.get("relaxation", "identity") not in RELAXATIONS:
        raise ConfigError(f"unknown straight-through relaxation {options['relaxation']!r}; choose from {RELAXATIONS}")


__all__ = ["DifferentiableSolver"]
