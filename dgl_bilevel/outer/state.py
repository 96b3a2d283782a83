"""Where an outer run stands, and the view of a running loop that its watchers and checkpoints read.

:class:`LoopView` lists what callbacks (:mod:`.callbacks`, :mod:`.loggers`) and checkpoints
(:mod:`.checkpoint`) use of an :class:`~dgl_bilevel.outer.OuterLoop`, so that they depend on this
small module rather than on the loop that calls them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

import torch

from ..data.bilevel_data import BilevelData
from ..hypergrad.base import HypergradMethod
from ..inner.base import InnerProblem
from ..structure.base import GraphStructure
from .selection import BestValidation


@dataclass
class OuterState:
    """Where a run stands: the next iteration, the history so far, and why it stopped (if it did).

    An :class:`~dgl_bilevel.outer.OuterLoop` keeps one as ``loop.state``: each outer iteration
    appends its record to ``history`` and advances ``next_iteration``; ``stopped`` is set (and the
    run ends) when a hypergradient is not finite. Checkpoints save and restore it.

    Example:
        >>> OuterState()
        OuterState(next_iteration=0, history=[], stopped=None)
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> from dgl_bilevel.outer import OuterLoop
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> loop = OuterLoop(data, dbl.EdgeWeights(graph, init="constant"), dbl.LabelPropagation(), outer_steps=2)
        >>> _ = loop.step()
        >>> loop.state.next_iteration, [record["iteration"] for record in loop.state.history], loop.state.stopped
        (1, [0], None)
    """

    next_iteration: int = 0
    history: list = field(default_factory=list)
    stopped: Optional[str] = None


class LoopView(Protocol):
    """What callbacks and checkpoints read of an outer loop (:class:`~dgl_bilevel.outer.OuterLoop` has it all)."""

    data: BilevelData
    structure: GraphStructure
    inner: InnerProblem
    method: HypergradMethod
    optimizer: Optional[torch.optim.Optimizer]
    generator: torch.Generator
    selection: BestValidation
    state: OuterState
    config: dict
    metric: str
    outer_steps: int
