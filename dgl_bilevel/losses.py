"""Task losses and evaluation metrics shared by the inner and outer problems.

Three tasks: ``classification`` (integer classes, cross-entropy, accuracy), ``multilabel``
(``[N, T]`` binary targets, binary cross-entropy on logits, mean ROC-AUC over tasks -- as
ogbn-proteins) and ``regression`` (``[N]`` or ``[N, T]`` targets, squared error, MSE).

Binary node classification is a ``classification`` task with two classes: the model has two
output logits and is trained with cross-entropy like any other classification task. Data sets
whose benchmark reports ROC-AUC (minesweeper, tolokers, questions) set their metric to
:data:`BINARY_ROCAUC`, which ranks nodes by the logit margin ``out[:, 1] - out[:, 0]`` -- the
log-odds of class 1 under the softmax, so the same ranking as its probability.
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


#: Below this many classes torch's CPU ``log_softmax`` along rows is slower than along the columns of the
#: transposed matrix (2,100 rows x 7 classes: 217 us against 33 us; x 16: 34 us against 66 us; 2026-12-03)
NARROW_CLASSES = 8


def row_log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits, dim=1)`` for ``[rows, classes]``, on the transposed matrix when the rows are
    narrow (a transposed view is returned then); differentiable either way."""
    if logits.dim() == 2 and logits.shape[1] < NARROW_CLASSES and logits.shape[0] > 64:
        return torch.log_softmax(logits.t().contiguous(), dim=0).t()
    return torch.log_softmax(logits, dim=1)


@dataclass(frozen=True)
class Metric:
    """A score of predictions on a node set: a name, a direction, and the function.

    ``fn(out, labels, nodes) -> float`` scores ``out[nodes]`` against ``labels[nodes]``; calling
    the metric detaches ``out``, runs without a graph and returns NaN for an empty node set.
    :class:`~dgl_bilevel.BilevelData` takes one as ``metric`` (default: accuracy, mean ROC-AUC
    or MSE by task); ``higher_is_better`` tells model selection which way is up.

    Example:
        >>> import torch
        >>> def top_class_share(out, labels, nodes):  # a metric of one's own
        ...     return float((out[nodes].argmax(-1) == 0).double().mean())
        >>> metric = Metric("class0", higher_is_better=True, fn=top_class_share)
        >>> out = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]])
        >>> metric(out, torch.zeros(3), torch.tensor([0, 1, 2]))
        0.666...
        >>> metric(out, torch.zeros(3), torch.tensor([], dtype=torch.long))
        nan
        >>> accuracy = default_metric("classification")
        >>> accuracy.name, accuracy(out, torch.tensor([0, 1, 1]), torch.arange(3))
        ('acc', 0.666...)
    """

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


def roc_auc(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """ROC-AUC of ``scores`` for 0/1 ``targets``: the probability that a random positive scores
    above a random negative, ties counting one half (the Mann-Whitney statistic, with average ranks
    for tied scores; equal to ``sklearn.metrics.roc_auc_score``). NaN when one class is absent."""
    s = torch.as_tensor(scores).detach().flatten().double().cpu()
    y = torch.as_tensor(targets).detach().flatten().cpu()
    if s.numel() != y.numel():
        raise ValueError(f"roc_auc: {s.numel()} scores but {y.numel()} targets")
    positive = y.bool()
    n_pos = int(positive.sum())
    n_neg = y.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = torch.unique(s, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()  # 1-based rank of the last score in each group of ties
    ranks = (ends - (counts.double() - 1.0) / 2.0)[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_scores(out: torch.Tensor) -> torch.Tensor:
    """Per-node scores of class 1 from a binary model's outputs: the margin ``out[:, 1] - out[:, 0]``
    of two logits, or a single logit (``[N]`` or ``[N, 1]``) as it is."""
    if out.dim() == 2 and out.shape[1] == 2:
        return out[:, 1] - out[:, 0]
    if out.dim() == 1 or (out.dim() == 2 and out.shape[1] == 1):
        return out.reshape(-1)
    raise ValueError(f"binary ROC-AUC needs two logits (or one) per node, got outputs of shape {tuple(out.shape)}")


def _binary_rocauc(out, labels, nodes) -> float:
    return roc_auc(binary_scores(out)[nodes], labels[nodes])


ACCURACY = Metric("acc", True, _accuracy)
MSE = Metric("mse", False, _mse)
ROCAUC = Metric("rocauc", True, _rocauc)
#: ROC-AUC of a two-class classification task (labels 0/1, two logits; see the module docstring).
BINARY_ROCAUC = Metric("rocauc", True, _binary_rocauc)


def default_metric(task: str) -> Metric:
    return {"classification": ACCURACY, "multilabel": ROCAUC, "regression": MSE}[task]


def score(out: torch.Tensor, labels: torch.Tensor, nodes: torch.Tensor, task: str) -> float:
    """The task's default metric over ``nodes``; NaN if empty."""
    return default_metric(task)(out, labels, nodes)


def higher_is_better(task: str) -> bool:
    return default_metric(task).higher_is_better


def metric_name(task: str) -> str:
    return default_metric(task).name
