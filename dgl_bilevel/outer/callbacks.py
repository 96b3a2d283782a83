"""Callbacks of the outer loop: what watches a run without changing it.

A callback is any callable taking an :class:`IterationState` (called after every outer
iteration, before the optimizer step), or a :class:`Callback` with hooks for the start and end
of a run too. Progress bars, log lines and refined-edge counts are callbacks like any other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

import torch

from ..data.bilevel_data import SPLITS, BilevelData
from ..diagnostics.profile import refined_edges
from ..structure.base import GraphStructure
from .state import LoopView

if TYPE_CHECKING:
    from .result import FitResult


@dataclass
class IterationState:
    """What callbacks see after each outer iteration (before the optimizer step).

    ``weights`` and ``outputs`` are detached copies; a callback may add entries to ``record``
    (they land in ``FitResult.history``) but should not change the rest.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> seen = []
        >>> def watch(state):
        ...     seen.append((state.iteration, tuple(state.weights.shape), tuple(state.hypergradient.shape),
        ...                  tuple(state.outputs.shape)))
        ...     state.record["mean_weight"] = round(float(state.weights.mean()), 4)
        >>> result = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), dbl.LabelPropagation(),
        ...                  outer_steps=2, progress=False, callbacks=[watch])
        >>> seen
        [(0, (10,), (10,), (6, 2)), (1, (10,), (10,), (6, 2))]
        >>> result.history[0]["mean_weight"]
        0.5
    """

    iteration: int
    weights: torch.Tensor  # w used in this iteration (detached)
    hypergradient: Optional[torch.Tensor]  # dF/dw per edge (None when not finite)
    outputs: torch.Tensor  # inner predictions on every node (detached)
    record: dict  # this iteration's row of the history; callbacks may add entries
    structure: GraphStructure
    data: BilevelData
    stopped: Optional[str] = None  # why the run stops after this iteration, if it does


class Callback:
    """Base class for callbacks with start/end hooks; every hook is optional.

    Subclass it and override the hooks you need; pass instances in ``fit(..., callbacks=[...])``
    (a plain function of an :class:`IterationState` works too, as an ``on_iteration`` hook).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> class CountIterations(Callback):
        ...     def on_fit_start(self, loop):
        ...         self.count = 0
        ...     def on_iteration(self, state):
        ...         self.count += 1
        ...     def on_fit_end(self, loop, result):
        ...         print(f"{self.count} iterations, best at {result.best_iteration}")
        >>> _ = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), dbl.LabelPropagation(),
        ...             outer_steps=3, progress=False, callbacks=[CountIterations()])
        3 iterations, best at 0
    """

    def on_fit_start(self, loop: LoopView) -> None:
        """Before the first iteration of this call (after a resume: the first new one)."""

    def on_iteration(self, state: IterationState) -> None:
        """After every outer iteration."""

    def on_fit_end(self, loop: LoopView, result: "FitResult") -> None:
        """After the last iteration (also after an early stop), not after an exception."""

    def close(self) -> None:
        """Release resources (progress bars); called however the run ends."""


CallbackLike = Union[Callback, Callable[[IterationState], Any]]


class _FunctionCallback(Callback):
    def __init__(self, function: Callable[[IterationState], Any]) -> None:
        self.function = function

    def on_iteration(self, state: IterationState) -> None:
        self.function(state)


def as_callbacks(callbacks: Sequence[CallbackLike]) -> list[Callback]:
    """Wrap plain functions as :class:`Callback` objects."""
    return [c if isinstance(c, Callback) else _FunctionCallback(c) for c in callbacks]


class RefinedEdgeCount(Callback):
    """Adds ``refined_edges`` (edges above ``fraction`` of the largest weight) to each record.

    :func:`~dgl_bilevel.fit` always runs one with the default ``fraction``; add another to count
    with a different threshold (the later one's count is the one kept in the record).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> weights = torch.tensor([0.9, 0.5, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.1])
        >>> result = dbl.fit(data, dbl.EdgeWeights(graph, init=weights), dbl.LabelPropagation(),
        ...                  outer_steps=1, progress=False, callbacks=[RefinedEdgeCount(fraction=0.6)])
        >>> result.history[0]["refined_edges"]  # edges above 0.6 * 0.9: the first and the third
        2
    """

    def __init__(self, fraction: float = 0.01) -> None:
        self.fraction = fraction

    def on_iteration(self, state: IterationState) -> None:
        state.record["refined_edges"] = refined_edges(state.weights, self.fraction)


class ProgressBar(Callback):
    """A tqdm bar over the outer iterations with the outer loss and best validation score.

    :func:`~dgl_bilevel.fit` builds one itself (``progress=True``, ``description=...``); build one
    to share it with other callbacks, e.g. :class:`LogLines` writes through it. :meth:`write`
    prints a line without breaking the bar (plain ``print`` when no bar is open).

    Args:
        description: the bar's label; default: the data set's name.
        enabled: False keeps the bar silent (tqdm's ``disable``).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> bar = ProgressBar("demo", enabled=False)
        >>> _ = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), dbl.LabelPropagation(),
        ...             outer_steps=2, progress=False, callbacks=[bar])
        >>> bar.bar is None  # closed when the run ended
        True
        >>> bar.write("no bar open: a plain print")
        no bar open: a plain print
    """

    def __init__(self, description: str = "", enabled: bool = True) -> None:
        self.description, self.enabled = description, enabled
        self.bar = None

    def on_fit_start(self, loop: LoopView) -> None:
        from tqdm.auto import tqdm

        self.loop = loop
        self.bar = tqdm(total=loop.outer_steps, initial=loop.state.next_iteration, disable=not self.enabled,
                        desc=self.description or loop.data.name, unit="it", dynamic_ncols=True, leave=True)

    def on_iteration(self, state: IterationState) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        best = self.loop.selection.score
        self.bar.set_postfix(loss=f"{state.record['outer_loss']:.4f}", best_val=f"{best:.4f}", refresh=False)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LogLines(Callback):
    """A line of losses and scores every ``every`` iterations (through the progress bar if any).

    What ``fit(..., log_every=N)`` adds; each line is :func:`format_record` of the iteration's
    record, ``metric`` the data set's metric name (``data.metric.name``).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> _ = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), dbl.LabelPropagation(),
        ...             outer_steps=4, progress=False, callbacks=[LogLines(2, data.metric.name)])
        outer    1  loss=0.6... v_in=1.0000 v_out=1.0000 val=1.0000 test=1.0000  ...s
        outer    3  loss=0.6... v_in=1.0000 v_out=1.0000 val=1.0000 test=1.0000  ...s
    """

    def __init__(self, every: int, metric: str, progress: Optional[ProgressBar] = None) -> None:
        self.every, self.metric, self.progress = int(every), metric, progress

    def on_iteration(self, state: IterationState) -> None:
        if self.every and (state.iteration + 1) % self.every == 0:
            line = format_record(state.record, self.metric)
            (self.progress.write if self.progress is not None else print)(line)


def format_record(record: dict, metric: str) -> str:
    """One line: iteration, outer loss, every split's score and the seconds it took.

    Args:
        record: one entry of ``FitResult.history`` (``iteration``, ``outer_loss``, ``seconds``
            and ``<split>_<metric>`` for every split).
        metric: the metric's name in the record's keys (``"acc"``, ``"rocauc"``, ``"mse"``...).

    Returns:
        The line, without a newline.

    Raises:
        KeyError: the record lacks one of those entries.

    Example:
        >>> record = {"iteration": 7, "outer_loss": 0.25, "v_in_acc": 1.0, "v_out_acc": 0.75,
        ...           "val_acc": 0.5, "test_acc": 0.625, "seconds": 0.125}
        >>> format_record(record, "acc")
        'outer    7  loss=0.2500  v_in=1.0000 v_out=0.7500 val=0.5000 test=0.6250  0.12s'
    """
    scores = " ".join(f"{s}={record[f'{s}_{metric}']:.4f}" for s in SPLITS)
    return f"outer {record['iteration']:4d}  loss={record['outer_loss']:.4f}  {scores}  {record['seconds']:.2f}s"
