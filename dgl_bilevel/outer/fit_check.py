"""Did the inner model learn anything? A warning when its training score stays at chance.

A trained inner model whose score on its own training nodes (V_in) is no better than a constant
prediction has not fitted: the graph it is given, or its settings, do not suit the data (the
paper's unnormalised sum-aggregation GNN on a large degree-skewed graph is one such case). The
run goes on, but says so, with the numbers and what to try.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch

from ..data.bilevel_data import BilevelData

#: How far above chance a training score must be to count as a fit (accuracy points / ROC-AUC).
MARGIN = 0.02


class InnerFitWarning(UserWarning):
    """The inner model's score on its training nodes stayed at chance level."""


def chance_level(data: BilevelData) -> Optional[float]:
    """The training score of a constant prediction: the majority class's share of V_in (accuracy),
    0.5 (ROC-AUC); None for metrics without one (regression errors)."""
    name = data.metric.name
    if data.task == "classification" and name == "acc":
        labels = data.labels[data.v_in]
        return float(torch.bincount(labels, minlength=int(data.num_classes)).max()) / max(1, labels.numel())
    if name in ("rocauc", "roc_auc"):
        return 0.5
    return None


def warn_if_at_chance(data: BilevelData, v_in_score: float, inner_name: str, where: str = "") -> bool:
    """Warn (an :class:`InnerFitWarning`) when ``v_in_score`` is within :data:`MARGIN` of chance; returns
    whether it warned."""
    chance = chance_level(data)
    if chance is None or v_in_score != v_in_score or v_in_score > chance + MARGIN:
        return False
    warnings.warn(
        f"{where}the {inner_name} inner model scores {data.metric.name} {v_in_score:.3f} on its own training nodes "
        f"(V_in), where a constant prediction scores {chance:.3f}: it has not fitted. Try a degree-normalised "
        "model (--model sage, which fitted where the paper's sumagg stayed at chance, docs/lab/default-model.md; "
        "or --inner energy), more inner steps or another inner learning rate.",
        InnerFitWarning, stacklevel=2)
    return True


#: Validation accuracy above which an outer loss on the validation set has memorised it.
MEMORISED = 0.99


class ValidationMemorisedWarning(UserWarning):
    """Under an outer loss on the validation set (``--protocol lds``), validation was memorised."""


def warn_if_validation_memorised(data: BilevelData, val_score: float, outer_steps: int, where: str = "") -> bool:
    """Warn when the outer loss is on the validation set that also selects (``data.outer_on_validation``)
    and the selected iterate's validation accuracy is above :data:`MEMORISED`: selection then keeps
    a late, over-fitted graph; returns whether it warned."""
    if not data.outer_on_validation or data.metric.name != "acc" or not val_score > MEMORISED:
        return False
    warnings.warn(
        f"{where}validation accuracy {val_score:.3f} at the selected iterate: the outer loss has memorised the "
        f"validation set that also selects, so selection keeps a late graph. Choose --outer-steps (now "
        f"{outer_steps}) where --protocol paper's held-out half peaks (recipes/graphs_that_pay.py does: the "
        "median best iteration of the paper-protocol run).", ValidationMemorisedWarning, stacklevel=2)
    return True
