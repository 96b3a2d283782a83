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
    """Score of every split with the data set's metric (accuracy, ROC-AUC, MSE, or OGB's Evaluator)."""
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
