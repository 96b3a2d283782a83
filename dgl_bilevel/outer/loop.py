"""The outer loop: learn a graph structure through the solution of an inner problem.

One outer iteration (:meth:`OuterLoop.step`): weights ``w`` from the structure -> inner
solution by the hypergradient method -> predictions on every node -> outer loss on ``v_out``
(+ regulariser) -> backward (the hypergradient) -> scores of the four splits and the best graph
by validation -> callbacks -> optimizer step on the structure's parameters. :func:`fit` runs
iterations with progress, logging, checkpoints and resume around that step (through
:func:`~dgl_bilevel.outer.driver.drive`, as :func:`fit_loop` runs a loop already built).
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch

from ..data.bilevel_data import BilevelData
from ..splits import SPLITS
from ..errors import ConfigError
from ..hypergrad import HypergradMethod, default_method, get_method
from ..inner.base import InnerProblem
from ..inner.graph_sampling import SampledGraphs
from ..losses import task_loss
from ..structure.base import GraphStructure
from .callbacks import (
    Callback, CallbackLike, IterationState, LogLines, ProgressBar, RefinedEdgeCount, as_callbacks,
)
from .driver import SingleLoop, drive
from .interrupts import deferred_interrupt
from .regularizers import Regularizer
from .result import FitResult
from .selection import BestInnerIterate, BestValidation, check_inner_select, evaluate
from .state import OuterState

logger = logging.getLogger("dgl_bilevel")

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


@dataclass
class PendingIteration:
    """An outer iteration between its phases (:meth:`OuterLoop.begin_iteration` -> inner solve ->
    :meth:`OuterLoop.score_iteration` -> backward -> :meth:`OuterLoop.finish_iteration`)."""

    iteration: int
    started: float
    weights: torch.Tensor
    monitor: Optional[BestInnerIterate] = None
    outputs: Optional[torch.Tensor] = None
    outer_loss: Optional[torch.Tensor] = None
    total: Optional[torch.Tensor] = None
    metrics: dict = field(default_factory=dict)
    finite: bool = False


class OuterLoop:
    """One bilevel run, driven one outer iteration at a time by :meth:`step`.

    Arguments are those of :func:`fit` (which builds one of these and runs it). The inner
    problem is bound to ``data`` and ``structure.graph`` here, once. :attr:`state` (an
    :class:`~dgl_bilevel.outer.OuterState`) says where the run stands, :attr:`done` whether it is
    over, and :meth:`result` gives the best graph so far; :func:`fit_loop` runs one to the end with
    checkpoints, :func:`~dgl_bilevel.seeds.fit_seeds` several in lockstep.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if a setting is out of range (``outer_steps < 0``, ``lr <= 0``
            without ``optimizer``, an unknown ``inner_select``), ``structure.graph`` and ``data`` differ
            in their number of nodes, ``data``'s ``v_out`` is part of its inner training set, no best
            graph can be selected (no validation nodes, or a metric that is NaN on them), the structure
            has nothing to train, or ``hypergrad`` cannot serve ``inner``.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> inner = dbl.LaplacianRegularization(loss="mse", lr=0.1, steps=30)
        >>> loop = OuterLoop(data, dbl.EdgeWeights(graph, init="constant"), inner, outer_steps=3)
        >>> loop.config["hypergrad"], loop.metric  # the default method for this inner problem
        ('adjoint', 'acc')
        >>> state = loop.step()  # one outer iteration
        >>> state.iteration, round(state.record["outer_loss"], 4), tuple(state.hypergradient.shape)
        (0, 0.4535, (10,))
        >>> loop.state.next_iteration, loop.done
        (1, False)
        >>> while not loop.done:
        ...     _ = loop.step()
        >>> result = loop.result()
        >>> len(result.history), result.best_metrics["test"]
        (3, 1.0)
        >>> OuterLoop(data, dbl.EdgeWeights(graph, init="constant"), inner, outer_steps=-1)
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: outer_steps must be >= 0, got -1
    """

    def __init__(
        self,
        data: BilevelData,
        structure: GraphStructure,
        inner: InnerProblem,
        hypergrad: "HypergradMethod | str | None" = None,
        *,
        outer_steps: int = 200,
        lr: float = 1e-2,
        optimizer: Optional[OptimizerFactory] = None,
        regularizer: Optional[Regularizer] = None,
        seed: int = 0,
        inner_select: str = "last",
        callbacks: Sequence[CallbackLike] = (),
    ) -> None:
        check_inner_select(inner_select)
        if outer_steps < 0:
            raise ConfigError(f"outer_steps must be >= 0, got {outer_steps}")
        if optimizer is None and not lr > 0:
            raise ConfigError(f"the outer learning rate lr must be > 0, got {lr}")
        if structure.graph.num_nodes() != data.num_nodes:
            raise ConfigError(
                f"structure's graph has {structure.graph.num_nodes()} nodes but the data has {data.num_nodes}"
            )
        if data.v_out_in_training:
            raise ConfigError("the data's v_out is part of the inner training set (with_v_out_in_training): an outer "
                              "loss on v_out would be a training loss; learn the graph on data whose v_out is held "
                              "out of v_in")
        _check_selection_possible(data)
        self.data, self.inner, self.regularizer = data, inner, regularizer
        self.outer_steps, self.seed, self.inner_select = int(outer_steps), int(seed), inner_select
        if structure.sampler is not None:  # edge probabilities: the inner problem trains on sampled graphs
            inner = SampledGraphs(inner, structure.sampler)
        self.inner = inner
        inner.bind_once(data, structure.graph)
        self.method = default_method(inner) if hypergrad is None else get_method(hypergrad)
        self.method.check(inner)
        self.structure = structure.to(data.features.dtype)
        self.params = [p for p in self.structure.parameters() if p.requires_grad]
        if not self.params and not structure.frozen:
            raise ConfigError("the structure has no trainable parameters")
        self.optimizer = None if structure.frozen else (
            optimizer(self.params) if optimizer is not None else torch.optim.Adam(self.params, lr=lr))
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.metric = data.metric.name
        self.config = {
            "data": data.name,
            "structure": type(structure).__name__,
            **inner.describe(),
            **self.method.describe(),
            "outer_steps": outer_steps,
            "outer_lr": lr,
            "seed": seed,
            "inner_select": inner_select,
        }
        self.state = OuterState()
        self.selection = BestValidation(maximize=data.metric.higher_is_better)
        with torch.no_grad():
            self.selection.weights = self.structure().detach().clone()
        self.callbacks: list[Callback] = [RefinedEdgeCount(), *as_callbacks(callbacks)]
        self._warned_zero = False
        #: torch's global generator as this run leaves it when built (seeded with ``seed``, then G2G's
        #: dropout in the first ``structure()``): runs driven together restore it per run
        self.initial_rng_state = torch.get_rng_state()

    # ------------------------------------------------------------------ one iteration
    def step(self) -> IterationState:
        """Run one outer iteration; returns what the callbacks saw. The optimizer step is taken
        only when the hypergradient is finite; otherwise ``state.stopped`` says why the run ends."""
        pending = self.begin_iteration()
        solution = self.method.solve(self.inner, pending.weights, self.inner.starting_params(self.generator),
                                     monitor=pending.monitor)
        self.score_iteration(pending, self.inner.predict(solution.params, pending.weights))
        if pending.finite and pending.total.requires_grad:
            pending.total.backward()
        return self.finish_iteration(pending, solution.params, solution.inner_objective, solution.info)

    # The three phases of :meth:`step`, apart so that several loops can share one inner solve and one
    # backward pass (:func:`dgl_bilevel.seeds.fit_seeds` runs seeds in lockstep through them).
    def begin_iteration(self) -> "PendingIteration":
        """Weights of this iteration (their ``.grad`` kept) and, with ``inner_select="best_val"``,
        the monitor that scores inner iterates."""
        weights = self.structure()
        if weights.requires_grad:
            weights.retain_grad()
        pending = PendingIteration(self.state.next_iteration, time.perf_counter(), weights)
        if self.inner_select == "best_val":
            pending.monitor = BestInnerIterate(self.inner, weights, self.data)
        return pending

    def score_iteration(self, pending: "PendingIteration", outputs: torch.Tensor) -> None:
        """Outer loss (+ regulariser) and split scores of the inner solution's ``outputs``; the
        structure's gradients are cleared for the backward pass that follows (if ``finite``)."""
        pending.outputs = outputs
        pending.outer_loss = task_loss(outputs, self.data.labels, self.data.v_out, self.data.task)
        outer = self.inner.outer_surrogate(pending.outer_loss, pending.weights)
        pending.total = (outer + self.regularizer(self.structure, pending.weights)
                         if self.regularizer is not None else outer)
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        monitor = pending.monitor
        pending.metrics = (evaluate(outputs.detach(), self.data) if monitor is None or monitor.best is None
                           else monitor.best)
        pending.finite = bool(torch.isfinite(pending.total))

    def finish_iteration(self, pending: "PendingIteration", solution_params, inner_objective: float,
                         info: dict, extra_record: Optional[dict] = None) -> IterationState:
        """After the backward pass: check the hypergradient, record, select, call back, step."""
        iteration, weights, total = pending.iteration, pending.weights, pending.total
        finite = pending.finite
        if finite:
            finite = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in self.params)
            if finite and self.optimizer is not None and not self._warned_zero and all(p.grad is None or not p.grad.any() for p in self.params):
                self._warned_zero = True
                warnings.warn(f"the hypergradient is exactly zero at outer iteration {iteration}: the outer loss does "
                              "not depend on the structure (e.g. a model that accepts edge_weight but ignores it, "
                              "or weights that all sit on a constraint); the structure will not move",
                              RuntimeWarning, stacklevel=3)
        self.inner.remember(solution_params)
        record = {
            "iteration": iteration,
            "outer_loss": float(pending.outer_loss.detach()),
            "total_loss": float(total.detach()),
            "inner_objective": inner_objective,
            **{f"{split}_{self.metric}": value for split, value in pending.metrics.items()},
            **{k: v for k, v in info.items() if isinstance(v, (int, float, bool))},
            **(extra_record or {}),
        }
        self.selection.update(iteration, pending.metrics, weights)
        stopped = None
        if not finite:
            stopped = (f"non-finite outer loss or hypergradient at outer iteration {iteration}; "
                       f"stopped and kept the best graph (iteration {self.selection.iteration})")
        hypergradient = weights.grad.detach() if finite and weights.grad is not None else None
        record.setdefault("seconds", time.perf_counter() - pending.started)
        state = IterationState(iteration, weights.detach(), hypergradient, pending.outputs.detach(), record,
                               self.structure, self.data, stopped)
        for callback in self.callbacks:
            callback.on_iteration(state)
        with deferred_interrupt():  # the iteration counts as done only once all of this has happened
            if finite and self.optimizer is not None:
                self.optimizer.step()
                self.structure.project_()
            else:
                self.state.stopped = stopped
                logger.error(stopped)
            self.state.history.append(record)
            self.state.next_iteration = iteration + 1
        return state

    @property
    def done(self) -> bool:
        return self.state.stopped is not None or self.state.next_iteration >= self.outer_steps

    # ------------------------------------------------------------------ result
    def result(self) -> FitResult:
        """The best graph so far (after a run with no iteration: the initial graph, scored once)."""
        with torch.no_grad():
            final = self.structure().detach().clone()
        best = self.selection
        metrics, iteration = best.metrics, best.iteration
        if iteration < 0:
            metrics, _ = solve_on_graph(self.data, self.inner, final, graph=self.structure.graph,
                                        hypergrad=self.method, seed=self.seed, inner_select=self.inner_select)
            iteration = 0
        return FitResult(
            best_iteration=iteration,
            best_metrics=metrics,
            best_weights=best.weights,
            final_weights=final,
            history=self.state.history,
            support=self.structure.graph,
            config=self.config,
            metric=self.metric,
            stopped_early=self.state.stopped,
            node_data=node_data(self.data),
            probabilistic=self.structure.sampler is not None,
        )


def node_data(data: BilevelData) -> dict:
    """``feat``, ``label`` and ``<split>_mask`` tensors of ``data``, for the learned graph's ``ndata``."""
    out = {"label": data.labels}
    if isinstance(data.features, torch.Tensor):
        out["feat"] = data.features
    for split in SPLITS:
        mask = torch.zeros(data.num_nodes, dtype=torch.bool)
        mask[getattr(data, split)] = True
        out[f"{split}_mask"] = mask
    return out


def _check_selection_possible(data: BilevelData) -> None:
    """The best graph is chosen by validation score: refuse data with which no choice is possible."""
    if data.val.numel() == 0:
        raise ConfigError(f"{data.name} has no validation nodes: the best graph is selected by its validation "
                          "score, so learning one needs a non-empty val set")
    probe = torch.zeros(data.num_nodes, data.out_dim, dtype=data.features.dtype)
    if data.score(probe, "val") != data.score(probe, "val"):  # NaN whatever the predictions
        raise ConfigError(f"{data.name}'s validation nodes give no {data.metric.name} score (NaN for any prediction, "
                          "e.g. ROC-AUC with a single class among them): the best graph could not be selected")


def fit(
    data: BilevelData,
    structure: GraphStructure,
    inner: InnerProblem,
    hypergrad: "HypergradMethod | str | None" = None,
    *,
    outer_steps: int = 200,
    lr: float = 1e-2,
    optimizer: Optional[OptimizerFactory] = None,
    regularizer: Optional[Regularizer] = None,
    seed: int = 0,
    callbacks: Sequence[CallbackLike] = (),
    checkpoint: "str | os.PathLike | None" = None,
    checkpoint_every: int = 10,
    resume: bool = False,
    progress: bool = True,
    log_every: int = 0,
    description: str = "",
    inner_select: str = "last",
) -> FitResult:
    """Learn ``structure`` by minimising the outer loss on ``v_out`` through ``inner``.

    Args:
        data: the problem (graph, features, labels, bilevel node sets).
        structure: the outer variable; the inner problem runs on ``structure.graph``.
        inner: the inner problem (bound to ``data`` and ``structure.graph`` here).
        hypergrad: a method or its name; default: the fastest exact one for ``inner``.
        outer_steps: outer iterations.
        lr: learning rate of the default outer optimizer (Adam).
        optimizer: ``params -> torch.optim.Optimizer`` to use instead.
        regularizer: ``(structure, w) -> scalar`` added to the outer loss.
        seed: seeds the inner initialisations and torch's global generator.
        callbacks: functions of an :class:`IterationState`, or :class:`Callback` objects,
            called after every iteration.
        checkpoint: file for checkpoints, written every ``checkpoint_every`` iterations, at the
            end, and on Ctrl-C (the last completed iteration); with ``resume=True`` an existing
            one is continued.
        progress: show a progress bar with the outer loss and best validation score.
        log_every: log a line every this many iterations (0: never).
        inner_select: ``"last"`` scores the last inner iterate; ``"best_val"`` the inner iterate
            with the best validation score (the paper code's protocol; costs one prediction
            per inner step). The outer loss always uses the last iterate.
        description: the progress bar's label; default: ``data.name``.

    Returns:
        The :class:`~dgl_bilevel.outer.FitResult`: the graph with the best validation score, every
        split's score there, and one history record per outer iteration.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if a setting is out of range (``outer_steps < 0``, ``lr <= 0``
            without ``optimizer``, an unknown ``inner_select``), ``structure.graph`` and ``data`` differ
            in their number of nodes, ``data``'s ``v_out`` is part of its inner training set, no best
            graph can be selected (no validation nodes, or a metric that is NaN on them), the structure
            has nothing to train, ``hypergrad`` cannot serve ``inner``, or (``resume=True``) the
            ``checkpoint`` cannot be read or was written by a run with other settings.
        ~dgl_bilevel.errors.RunInterrupted: on Ctrl-C, after writing the checkpoint (if any).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> inner = dbl.LaplacianRegularization(loss="mse", lr=0.1, steps=30)
        >>> result = fit(data, dbl.EdgeWeights(graph, init="constant"), inner, outer_steps=3, progress=False)
        >>> [round(record["outer_loss"], 4) for record in result.history]  # the loss on v_out falls
        [0.4535, 0.4526, 0.4518]
        >>> result.best_iteration, result.best_metrics
        (0, {'v_in': 1.0, 'v_out': 1.0, 'val': 1.0, 'test': 1.0})
    """
    progress_bar = ProgressBar(description or data.name, enabled=progress)
    extra: list[Callback] = [progress_bar]
    if log_every:
        extra.append(LogLines(log_every, data.metric.name, progress_bar))
    loop = OuterLoop(data, structure, inner, hypergrad, outer_steps=outer_steps, lr=lr, optimizer=optimizer,
                     regularizer=regularizer, seed=seed, inner_select=inner_select,
                     callbacks=[*callbacks, *extra])
    return fit_loop(loop, checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume)


def fit_loop(
    loop: OuterLoop,
    *,
    checkpoint: "str | os.PathLike | None" = None,
    checkpoint_every: int = 10,
    resume: bool = False,
) -> FitResult:
    """Run an already built ``loop`` to the end with :func:`fit`'s checkpoints, resume and Ctrl-C
    handling, stepped alone (by its own :meth:`OuterLoop.step`); its callbacks are all it shows.

    Args:
        loop: the run, e.g. from :func:`~dgl_bilevel.experiment.build_loop`.
        checkpoint: file for checkpoints, written every ``checkpoint_every`` iterations, at the
            end, and on Ctrl-C (the last completed iteration); with ``resume=True`` an existing
            one is continued.

    Example:
        >>> from dgl_bilevel.data import cheaters
        >>> from dgl_bilevel.inner import TrainedGNN
        >>> from dgl_bilevel.models import SumAggGNN
        >>> from dgl_bilevel.structure import EdgeWeights
        >>> data = cheaters(seed=0)
        >>> inner = TrainedGNN(SumAggGNN(data.num_features, 8, data.out_dim), steps=3)
        >>> loop = OuterLoop(data, EdgeWeights(data.graph), inner, "unrolled", outer_steps=2)
        >>> result = fit_loop(loop)
        >>> len(result.history), loop.done
        (2, True)
    """
    path = Path(checkpoint) if checkpoint is not None else None
    return drive(SingleLoop(loop), [path], checkpoint_every=checkpoint_every, resume=resume)[0]


def solve_on_graph(
    data: BilevelData,
    inner: InnerProblem,
    weights: torch.Tensor,
    *,
    graph=None,
    hypergrad: "HypergradMethod | str | None" = None,
    seed: int = 0,
    inner_select: str = "last",
) -> tuple[dict, torch.Tensor]:
    """Solve the inner problem once on fixed weights (the ``A_obs`` baseline); returns (metrics, outputs).

    ``inner_select="best_val"`` reports the inner iterate with the best validation score
    (the paper code's protocol) instead of the last one.

    Args:
        data: the problem; its ``graph`` is solved on unless ``graph`` is given.
        inner: the inner problem (bound to ``data`` and the graph here, once).
        weights: ``[E]`` fixed edge weights, e.g. ``data.observed_weights()``.
        graph: the graph ``weights`` belong to; default: ``data.graph``.
        hypergrad: the method whose forward solve is used; default: the fastest exact one for ``inner``.
        seed: seeds the inner initialisation.
        inner_select: ``"last"`` or ``"best_val"``.

    Returns:
        ``(metrics, outputs)``: every split's score (``{"v_in": ..., "v_out": ..., "val": ...,
        "test": ...}``) and the ``[N, out_dim]`` outputs on every node (detached).

    Raises:
        ~dgl_bilevel.errors.ConfigError: if ``inner_select`` is unknown or ``hypergrad`` cannot serve ``inner``.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> metrics, outputs = solve_on_graph(data, dbl.LabelPropagation(), torch.ones(10))
        >>> metrics
        {'v_in': 1.0, 'v_out': 1.0, 'val': 1.0, 'test': 1.0}
        >>> tuple(outputs.shape), outputs.argmax(1).tolist()
        ((6, 2), [0, 0, 0, 1, 1, 1])
    """
    graph = data.graph if graph is None else graph
    check_inner_select(inner_select)
    inner.bind_once(data, graph)
    method = default_method(inner) if hypergrad is None else get_method(hypergrad)
    generator = torch.Generator().manual_seed(seed)
    weights = weights.detach().to(data.features.dtype)
    monitor = BestInnerIterate(inner, weights, data) if inner_select == "best_val" else None
    solution = method.solve(inner, weights, inner.starting_params(generator), monitor=monitor)
    with torch.no_grad():
        outputs = inner.predict(solution.params, weights).detach()
    metrics = evaluate(outputs, data)
    if monitor is not None and monitor.best is not None:
        metrics = monitor.best
    return metrics, outputs
