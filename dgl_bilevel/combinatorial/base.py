"""The solver protocol the gradient estimators rely on, and shared argument checks.

A *solver* maps a score tensor ``c`` to a discrete solution ``y`` (0/1 or integer entries) that
optimises the linear objective ``<c, y>`` over a fixed discrete set ``Y``:

* ``sense = "max"``: ``y(c) = argmax_{y in Y} <c, y>`` -- ``c`` are scores (top-k selection);
* ``sense = "min"``: ``y(c) = argmin_{y in Y} <c, y>`` -- ``c`` are costs (shortest path, MST).

Every solver in this package states its sense, and the estimators that depend on it
(straight-through, blackbox, Fenchel-Young; the perturbed optimiser does not) read it, so cost-based
and score-based solvers are used the same way. ``event_ndim`` trailing dimensions of ``c`` form
one problem; leading dimensions index independent problems (a batch), and ``y`` keeps them.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch

from ..errors import ConfigError

SENSES = ("max", "min")


class Solver:
    """Base class of the shipped solvers: ``solver(c)`` checks ``c``, then solves.

    Subclasses set :attr:`sense` and implement :meth:`solve` (batched over leading dimensions) and,
    where inputs can be invalid, :meth:`check`. Estimators call :meth:`check` once on the caller's
    scores and :meth:`solve` on the perturbed ones, so a solver may repair perturbed inputs (the
    shortest path clips negative perturbed costs) while still rejecting invalid user input.

    Calling a solver returns :meth:`solve`'s float tensor, shaped like ``c`` for the shipped ones.

    Raises:
        ~dgl_bilevel.errors.ConfigError: from :meth:`check`, if ``c`` is not a floating-point tensor with at least
            :attr:`event_ndim` dimensions and finite entries.

    Example:
        A one-hot argmax as a solver: set the sense, write ``solve``; ``check`` comes for free.

        >>> import torch
        >>> from dgl_bilevel.combinatorial import Solver
        >>> class Argmax(Solver):
        ...     sense = "max"
        ...     def solve(self, c):
        ...         return torch.nn.functional.one_hot(c.argmax(-1), c.shape[-1]).to(c.dtype)
        >>> Argmax()(torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0]]))
        tensor([[0., 1., 0.],
                [1., 0., 0.]])
        >>> Argmax()(torch.tensor([1, 2]))
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: scores must be a floating-point tensor, got torch.int64
    """

    sense: str = "max"
    event_ndim: int = 1
    batched: bool = True

    def check(self, c: torch.Tensor) -> None:
        """Raise :class:`ConfigError` if ``c`` is not a valid input (called on the caller's scores)."""
        check_scores(c, self.event_ndim)

    def solve(self, c: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The discrete solution for scores ``c`` (shape ``(*batch, *event)``), as a float tensor."""
        raise NotImplementedError

    def __call__(self, c: torch.Tensor) -> torch.Tensor:
        self.check(c)
        return self.solve(c)


class FunctionSolver(Solver):
    """Wraps a plain callable ``solve(c) -> y`` as a :class:`Solver`.

    Args:
        fn: the solver; its output is cast to ``c``'s dtype.
        sense: ``"max"`` (default) if ``fn`` maximises ``<c, y>``, ``"min"`` if it minimises.
        event_ndim: trailing dimensions of ``c`` forming one problem; ``None`` (default): all of
            them (``c`` is one problem).
        batched: ``fn`` accepts extra leading dimensions (one problem per index). If False
            (default), perturbed estimators call ``fn`` once per sample, on a tensor shaped like ``c``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``fn`` is not callable or ``sense`` is neither ``"max"`` nor ``"min"``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.combinatorial import FunctionSolver
        >>> def cheapest(c):
        ...     return torch.nn.functional.one_hot(c.argmin(), c.numel())
        >>> solver = FunctionSolver(cheapest, sense="min")
        >>> solver
        FunctionSolver(cheapest, sense='min', event_ndim=None, batched=False)
        >>> solver(torch.tensor([3.0, 1.0, 2.0]))  # the integer one-hot comes back as c's dtype
        tensor([0., 1., 0.])
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], sense: str = "max",
                 event_ndim: Optional[int] = None, batched: bool = False) -> None:
        if not callable(fn):
            raise ConfigError(f"a solver must be callable (c -> solution), got {type(fn).__name__}")
        self.fn = fn
        self.sense = check_sense(sense)
        self.event_ndim = event_ndim  # type: ignore[assignment]
        self.batched = bool(batched)

    def check(self, c: torch.Tensor) -> None:
        check_scores(c, c.dim() if self.event_ndim is None else self.event_ndim)

    def solve(self, c: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.fn(c)).to(c.dtype)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"FunctionSolver({name}, sense={self.sense!r}, event_ndim={self.event_ndim}, batched={self.batched})"


SolverLike = Union[Solver, Callable[[torch.Tensor], torch.Tensor]]


def as_solver(solve: SolverLike, sense: Optional[str] = None, event_ndim: Optional[int] = None,
              batched: Optional[bool] = None) -> Solver:
    """A :class:`Solver` from a solver or a plain callable.

    For a :class:`Solver`, ``sense`` (if given) must agree with its own; ``event_ndim`` and
    ``batched`` cannot be overridden. For a callable, the arguments configure the wrapper.

    Args:
        solve: a :class:`Solver` (returned as it is) or a callable ``c -> y``.
        sense: ``"max"`` or ``"min"``; for a callable, ``None`` means ``"max"``.
        event_ndim, batched: how a callable treats ``c`` (see :class:`FunctionSolver`).

    Returns:
        ``solve`` itself if it is a :class:`Solver`, else a :class:`FunctionSolver` wrapping it.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``sense`` contradicts a solver's own, or ``event_ndim``/``batched`` are
            given for a solver.

    Example:
        >>> import torch
        >>> from dgl_bilevel.combinatorial import TopK, as_solver
        >>> top2 = TopK(2)
        >>> as_solver(top2) is top2
        True
        >>> as_solver(torch.round, event_ndim=1, batched=True)
        FunctionSolver(round, sense='max', event_ndim=1, batched=True)
        >>> as_solver(top2, sense="min")
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: TopK maximises <c, y> (sense='max'); sense='min' contradicts it. ...
    """
    if isinstance(solve, Solver):
        if sense is not None and check_sense(sense) != solve.sense:
            raise ConfigError(f"{type(solve).__name__} {'maximises' if solve.sense == 'max' else 'minimises'} "
                              f"<c, y> (sense={solve.sense!r}); sense={sense!r} contradicts it. "
                              "Pass -c instead of c to use the other convention.")
        if event_ndim is not None or batched is not None:
            raise ConfigError("event_ndim and batched describe plain callables; a Solver declares its own")
        return solve
    return FunctionSolver(solve, sense="max" if sense is None else sense, event_ndim=event_ndim,
                          batched=bool(batched))


def problem_ndim(solver: Solver, c: torch.Tensor) -> int:
    """Number of trailing dimensions of ``c`` forming one problem."""
    return c.dim() if solver.event_ndim is None else int(solver.event_ndim)


def solve_samples(solver: Solver, scores: torch.Tensor) -> torch.Tensor:
    """Solve ``scores`` of shape ``(M, *c.shape)`` sample by sample, or at once if the solver is batched."""
    if solver.batched:
        return solver.solve(scores).to(scores.dtype)
    return torch.stack([solver.solve(s).to(scores.dtype) for s in scores])


def sign(sense: str) -> float:
    """+1 for a maximiser, -1 for a minimiser."""
    return 1.0 if sense == "max" else -1.0


# ---------------------------------------------------------------------------------- checks
def check_sense(sense: str) -> str:
    if sense not in SENSES:
        raise ConfigError(f"sense must be 'max' (the solver maximises <c, y>) or 'min' (it minimises), got {sense!r}")
    return sense


def check_scores(c: torch.Tensor, event_ndim: int) -> None:
    if not isinstance(c, torch.Tensor) or not torch.is_floating_point(c):
        raise ConfigError(f"scores must be a floating-point tensor, got {getattr(c, 'dtype', type(c).__name__)}")
    if c.dim() < event_ndim:
        raise ConfigError(f"scores have {c.dim()} dimension(s); the solver needs at least {event_ndim}")
    if not bool(torch.isfinite(c).all()):
        raise ConfigError("scores contain NaN or infinity; a discrete solver needs finite scores")


def positive_float(name: str, value: float, hint: str = "") -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive number, got {value!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive finite number, got {value}{hint}")
    return value


def positive_int(name: str, value: int, hint: str = "") -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    value = int(value.__index__())
    if value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value}{hint}")
    return value
