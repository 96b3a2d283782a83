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
    """What callbacks see after each outer iteration (before the optimizer step)."""

    iteration: int
    weights: torch.Tensor  # w used in this iteration (detached)
    hypergradient: Optional[torch.Tensor]  # dF/dw per edge (None when not finite)
    outputs: torch.Tensor  # inner predictions on every node (detached)
    record: dict  # this iteration's row of the history; callbacks may add entries
    structure: GraphStructure
    data: BilevelData
    stopped: Optional[str] = None  # why the run stops after this iteration, if it does


class Callback:
    """Base class for callbacks with start/end hooks; every hook is optional."""

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
    """Adds ``refined_edges`` (edges above ``fraction`` of the largest weight) to each record."""

    def __init__(self, fraction: float = 0.01) -> None:
        self.fraction = fraction

    def on_iteration(self, state: IterationState) -> None:
        state.record["refined_edges"] = refined_edges(state.weights, self.fraction)


class ProgressBar(Callback):
    """A tqdm bar over the outer iterations with the outer loss and best validation score."""

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
    """A line of losses and scores every ``every`` iterations (through the progress bar if any)."""

    def __init__(self, every: int, metric: str, progress: Optional[ProgressBar] = None) -> None:
        self.every, self.metric, self.progress = int(every), metric, progress

    def on_iteration(self, state: IterationState) -> None:
        if self.every and (state.iteration + 1) % self.every == 0:
            line = format_record(state.record, self.metric)
            (self.progress.write if self.progress is not None else print)(line)


def format_record(record: dict, metric: str) -> str:
    """One line: iteration, outer loss, every split's score and the seconds it took."""
    scores = " ".join(f"{s}={record[f'{s}_{metric}']:.4f}" for s in SPLITS)
    return f"outer {record['iteration']:4d}  loss={record['outer_loss']:.4f}  {scores}  {record['seconds']:.2f}s"
