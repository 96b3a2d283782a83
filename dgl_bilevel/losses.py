"""Task losses and metrics shared by the inner and outer problems."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(out: torch.Tensor, labels: torch.Tensor, nodes: torch.Tensor, task: str) -> torch.Tensor:
    """Mean loss over ``nodes``: cross-entropy on logits (classification) or squared error (regression)."""
    if task == "classification":
        return F.cross_entropy(out[nodes], labels[nodes])
    pred = out[nodes]
    target = labels[nodes].reshape(pred.shape[0], -1).to(pred.dtype)
    return ((pred.reshape_as(target) - target) ** 2).sum(-1).mean()


@torch.no_grad()
def score(out: torch.Tensor, labels: torch.Tensor, nodes: torch.Tensor, task: str) -> float:
    """Accuracy (classification) or mean squared error (regression) over ``nodes``; NaN if empty."""
    if nodes.numel() == 0:
        return float("nan")
    if task == "classification":
        return float((out[nodes].argmax(-1) == labels[nodes]).double().mean())
    return float(task_loss(out, labels, nodes, task))


def higher_is_better(task: str) -> bool:
    """Accuracy is maximised, mean squared error minimised."""
    return task == "classification"


def metric_name(task: str) -> str:
    return "acc" if task == "classification" else "mse"
