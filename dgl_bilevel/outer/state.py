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
    """Where a run stands: the next iteration, the history so far, and why it stopped (if it did)."""

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
