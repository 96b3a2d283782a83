"""Scoring the inner solution on every split and keeping the graph with the best validation score."""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..data.bilevel_data import SPLITS, BilevelData
from ..errors import ConfigError
from ..inner.base import InnerProblem

#: Which inner iterate is scored: the last one, or the one with the best validation score.
INNER_SELECT = ("last", "best_val")


def evaluate(outputs: torch.Tensor, data: BilevelData) -> dict:
    """Score of every split with the data set's metric (accuracy, ROC-AUC, MSE, or OGB's Evaluator).

    Args:
        outputs: predictions on every node, ``[N, C]`` (class scores or targets).
        data: the problem whose splits and metric are used.

    Returns:
        Split name (``v_in``, ``v_out``, ``val``, ``test``) -> score; NaN for an empty split.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> outputs = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)
        >>> evaluate(outputs, data)
        {'v_in': 1.0, 'v_out': 1.0, 'val': 1.0, 'test': 1.0}
        >>> evaluate(torch.tensor([[1.0, 0.0]] * 6), data)  # class 0 everywhere
        {'v_in': 0.5, 'v_out': 0.5, 'val': 1.0, 'test': 0.0}
    """
    return {split: data.score(outputs, split) for split in SPLITS}


def check_inner_select(inner_select: str) -> None:
    if inner_select not in INNER_SELECT:
        raise ConfigError(f"inner_select must be one of {INNER_SELECT}, got {inner_select!r}")


def improves(value: float, best: float, maximize: bool) -> bool:
    """Whether ``value`` beats ``best`` (NaN never does)."""
    if value != value:
        return False
    return value > best if maximize else value < best


class BestInnerIterate:
    """A solve monitor that scores every inner iterate and keeps the metrics of the one with the
    best validation score -- the evaluation protocol of the paper's code ("inner early stopping").

    It only changes what is *reported*; the outer loss always uses the last inner iterate.

    Args:
        problem: the bound inner problem whose iterates are scored.
        weights: the edge weights of this solve (detached).
        data: the problem's data (splits and metric).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> monitor = BestInnerIterate(dbl.LabelPropagation().bind(data, graph), torch.ones(10), data)
        >>> monitor.observe(torch.tensor([[1.0, 0.0]] * 6))  # val right, v_out half
        >>> monitor.observe(torch.tensor([[0.0, 1.0]] * 6))  # val wrong: not kept
        >>> monitor.best
        {'v_in': 0.5, 'v_out': 0.5, 'val': 1.0, 'test': 0.0}
    """

    def __init__(self, problem: InnerProblem, weights: torch.Tensor, data: BilevelData) -> None:
        self.problem, self.weights, self.data = problem, weights.detach(), data
        self.maximize = data.metric.higher_is_better
        self.best: Optional[dict] = None

    def __call__(self, params) -> None:
        with torch.no_grad():
            self.observe(self.problem.predict(params, self.weights))

    def observe(self, outputs: torch.Tensor) -> None:
        """Score one inner iterate's predictions on every node (keep them if validation improves)."""
        metrics = evaluate(outputs, self.data)
        if self.best is None or improves(metrics["val"], self.best["val"], self.maximize):
            self.best = metrics


class BestValidation:
    """The best graph so far by validation score: its iteration, metrics and weights.

    The first iteration is always taken, so a run has a best graph even when every score ties.

    Args:
        maximize: whether a higher validation score is better (``data.metric.higher_is_better``).

    Example:
        >>> import torch
        >>> best = BestValidation(maximize=True)
        >>> best.update(0, {"val": 0.5}, torch.zeros(3)), best.update(1, {"val": 0.75}, torch.ones(3))
        (True, True)
        >>> best.update(2, {"val": 0.75}, torch.zeros(3))  # a tie keeps the earlier graph
        False
        >>> best.iteration, best.score, best.weights.tolist()
        (1, 0.75, [1.0, 1.0, 1.0])
    """

    def __init__(self, maximize: bool) -> None:
        self.maximize = maximize
        self.score = -math.inf if maximize else math.inf
        self.iteration = -1
        self.metrics: dict = {}
        self.weights: Optional[torch.Tensor] = None

    def update(self, iteration: int, metrics: dict, weights: torch.Tensor) -> bool:
        """Take this iteration if it improves on the best; returns whether it did."""
        if not (improves(metrics["val"], self.score, self.maximize) or self.iteration < 0):
            return False
        self.score, self.iteration, self.metrics = metrics["val"], iteration, metrics
        self.weights = weights.detach().clone()
        return True

    def state_dict(self) -> dict:
        return {"score": self.score, "iteration": self.iteration, "metrics": self.metrics, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.score, self.iteration = state["score"], state["iteration"]
        self.metrics, self.weights = state["metrics"], state["weights"]
