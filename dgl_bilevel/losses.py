"""Task losses and evaluation metrics shared by the inner and outer problems.

Three tasks: ``classification`` (integer classes, cross-entropy, accuracy), ``multilabel``
(``[N, T]`` binary targets, binary cross-entropy on logits, mean ROC-AUC over tasks -- as
ogbn-proteins) and ``regression`` (``[N]`` or ``[N, T]`` targets, squared error, MSE).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

TASKS = ("classification", "multilabel", "regression")


def task_loss(out: torch.Tensor, labels: torch.Tensor, nodes: torch.Tensor, task: str) -> torch.Tensor:
    """Mean loss over ``nodes``: cross-entropy (classification), binary cross-entropy on logits
    (multilabel) or squared error summed over targets (regression)."""
    if task == "classification":
        return F.cross_entropy(out[nodes], labels[nodes])
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(out[nodes], labels[nodes].to(out.dtype))
    pred = out[nodes]
    target = labels[nodes].reshape(pred.shape[0], -1).to(pred.dtype)
    return ((pred.reshape_as(target) - target) ** 2).sum(-1).mean()


@dataclass(frozen=True)
class Metric:
    """A score of predictions on a node set: a name, a direction, and the function."""

    name: str
    higher_is_better: bool
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], float]

    @torch.no_grad()
    def __call__(self, out: torch.Tensor, labels: torch.Tensor, nodes: torch.Tensor) -> float:
        if nodes.numel() == 0:
            return float("nan")
        return float(self.fn(out.detach(), labels, nodes))


def _accuracy(out, labels, nodes) -> float:
    return float((out[nodes].argmax(-1) == labels[nodes]).double().mean())


def _mse(out, labels, nodes) -> float:
    return float(task_loss(out, labels, nodes, "regression"))


def _rocauc(out, labels, nodes) -> float:
    """Mean ROC-AUC over the tasks that have both classes among ``nodes`` (OGB's definition)."""
    from sklearn.metrics import roc_auc_score

    y = labels[nodes].cpu().numpy()
    s = out[nodes].double().cpu().numpy()
    scores = [roc_auc_score(y[:, t], s[:, t]) for t in range(y.shape[1]) if 0 < y[:, t].sum() < y.shape[0]]
    return float(np.mean(scores)) if scores else float("nan")


ACCURACY = Metric("acc", True, _accuracy)
MSE = Metric("mse", False, _mse)
ROCAUC = Metric("rocauc", True, _rocauc)


def default_metric(task: str) -> Metric:
    return {"classification": ACCURACY, "multilabel": ROCAUC, "regression": MSE}[task]


def score(out: torch.Tensor, labels: torch.Tensor, nodes: torch.Tensor, task: str) -> float:
    """The task's default metric over ``nodes``; NaN if empty."""
    return default_metric(task)(out, labels, nodes)


def higher_is_better(task: str) -> bool:
    return default_metric(task).higher_is_better


def metric_name(task: str) -> str:
    return default_metric(task).name
