"""Cross-fitting: learn a graph with every labelled node held out once, then refit on all labels.

A graph learned with ``V_out`` as the outer set is tuned to carry ``V_in``'s labels to ``V_out``;
the final model, though, is trained on ``V_in ∪ V_out`` and must carry *all* of them to unlabelled
nodes. Cross-fitting makes the graph learning look like that: split ``V_in ∪ V_out`` into ``K``
class-stratified folds; for fold ``k`` learn a graph with the inner model trained on the other
folds and the outer loss on fold ``k``; combine the ``K`` graphs (mean of the learned weights or
probabilities); refit the inner model on every label on the combined graph. Validation only
selects (each fold's best iteration); test is only reported.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from ..config import ExperimentConfig
from ..data.bilevel_data import BilevelData
from ..errors import ConfigError
from ..outer import FitResult, fit_loop
from .build import build_loop, build_support


def stratified_folds(data: BilevelData, k: int, seed: int) -> list[torch.Tensor]:
    """``V_in ∪ V_out`` dealt into ``k`` disjoint folds, each class spread evenly over them (seeded)."""
    if k < 2:
        raise ConfigError(f"--cross-fit needs at least 2 folds, got {k}")
    if data.task != "classification":
        raise ConfigError("--cross-fit stratifies folds by class: it needs a classification data set")
    labelled = torch.cat([data.v_in, data.v_out])
    labels = data.labels[labelled]
    counts = torch.bincount(labels, minlength=data.num_classes)
    present = counts[counts > 0]
    if int(present.min()) < k:
        raise ConfigError(f"--cross-fit {k}: the smallest class has {int(present.min())} labelled node(s) in V_in ∪ "
                          f"V_out, fewer than the folds, so some fold would miss it; use at most {int(present.min())} "
                          "folds")
    generator = torch.Generator().manual_seed(30_000 + seed)
    folds: list[list[torch.Tensor]] = [[] for _ in range(k)]
    offset = 0
    for c in range(data.num_classes):
        members = labelled[labels == c]
        members = members[torch.randperm(members.numel(), generator=generator)]
        for i in range(k):  # deal round-robin, starting where the previous class stopped
            folds[(offset + i) % k].append(members[i::k])
        offset += members.numel()
    return [torch.sort(torch.cat(f)).values for f in folds]


def fold_data(data: BilevelData, folds: Sequence[torch.Tensor], k: int) -> BilevelData:
    """The problem of fold ``k``: inner training on the other folds, outer loss on fold ``k``."""
    rest = torch.cat([f for i, f in enumerate(folds) if i != k])
    return data.with_splits(v_in=rest, v_out=folds[k])


def cross_fit(config: ExperimentConfig, data: BilevelData, seed: int, folds: int,
              callbacks_for: Optional[Callable[[int], Sequence]] = None) -> tuple[torch.Tensor, list[FitResult], object]:
    """Learn one graph per fold and combine them; returns ``(combined weights, fold results, structure)``.

    The structure of the last fold is returned too (its support and sampler say how the combined
    weights are read: as probabilities to sample from, or as weights).
    """
    if data.outer_on_validation or data.v_out_in_training:
        raise ConfigError("--cross-fit needs the paper protocol (V_out held out from training and from selection)")
    parts = stratified_folds(data, folds, seed)
    support = build_support(config, data)  # the folds differ in their labels, not in their graph: one support
    results, structure = [], None
    for k in range(folds):
        loop = build_loop(config, seed, data=fold_data(data, parts, k), support=support,
                          callbacks=list(callbacks_for(k)) if callbacks_for else [],
                          progress_bar=f"{config.run_name} seed {seed} fold {k + 1}/{folds}")
        structure = loop.structure
        results.append(fit_loop(loop))
    combined = torch.stack([r.best_weights for r in results]).mean(0)
    return combined, results, structure
