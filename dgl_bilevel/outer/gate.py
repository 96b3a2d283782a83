"""Keep the baseline graph unless validation shows a learned one is better.

A learned graph may score a point higher than the observed graph on a few hundred validation
nodes by chance; swapping it in on such evidence costs accuracy as often as it gains. The gate
makes the observed graph the default and replaces it only when a candidate wins a one-sided
paired randomisation test on the validation nodes: under the null that the two models are
exchangeable, each node's pair of outputs is swapped at random, and the candidate passes when
its observed advantage is reached by at most ``1 - confidence`` of the swaps (for accuracy this
is the exact sign test on the nodes where the two disagree, McNemar's). This is the rule behind
the "never below the observed graph" guarantee of ``--refit``: what a run hands over is the
learned graph where validation says it pays, the observed graph otherwise.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import torch

from ..errors import ConfigError
from ..losses import Metric


@dataclasses.dataclass(frozen=True)
class GateDecision:
    """What the gate chose and why: every candidate's validation score and the one-sided p-value of
    its advantage over the baseline.

    ``choice`` is the name of the chosen model's outputs, ``baseline`` the default one, ``scores``
    every candidate's score on the validation nodes, ``p_values`` every non-baseline candidate's
    p-value, ``confidence`` the level the test ran at. :func:`validation_gate` returns one.

    Example:
        >>> import torch
        >>> from dgl_bilevel.losses import default_metric
        >>> labels = torch.tensor([0, 1] * 10)
        >>> right = torch.nn.functional.one_hot(labels, 2).float()
        >>> half = right.clone()
        >>> half[:10] = 1 - half[:10]  # wrong on the first ten nodes
        >>> decision = validation_gate({"observed": half, "learned": right}, "observed", labels,
        ...                            torch.arange(20), default_metric("classification"), permutations=200)
        >>> decision.choice, decision.scores
        ('learned', {'observed': 0.5, 'learned': 1.0})
        >>> decision.p_values["learned"] <= 1 - decision.confidence
        True
    """

    choice: str
    baseline: str
    scores: dict
    p_values: dict
    confidence: float


def validation_gate(outputs: Mapping[str, torch.Tensor], baseline: str, labels: torch.Tensor,
                    nodes: torch.Tensor, metric: Metric, *, confidence: float = 0.95, permutations: int = 2000,
                    seed: int = 0) -> GateDecision:
    """Choose among models' ``outputs`` (name -> node outputs), keeping ``baseline`` unless another
    beats it on ``nodes`` with a one-sided p-value <= ``1 - confidence`` (paired randomisation test).

    Of the candidates that pass, the one with the best score on ``nodes`` wins (ties: the first in
    ``outputs``' order). ``metric`` is the data set's (``BilevelData.metric``).

    Example:
        >>> import torch
        >>> from dgl_bilevel.losses import default_metric
        >>> labels = torch.tensor([0, 1] * 100)
        >>> right = torch.nn.functional.one_hot(labels, 2).float()
        >>> validation_gate({"observed": 1 - right, "learned": right}, "observed", labels,
        ...                 torch.arange(200), default_metric("classification")).choice
        'learned'
    """
    if baseline not in outputs:
        raise ConfigError(f"the gate's baseline {baseline!r} is not among the candidates {sorted(outputs)}")
    if not 0.5 <= confidence < 1.0:
        raise ConfigError(f"gate confidence must be in [0.5, 1), got {confidence}")
    if permutations < 1:
        raise ConfigError(f"gate permutations must be >= 1, got {permutations}")
    if nodes.numel() == 0:
        raise ConfigError("the gate needs validation nodes: the validation split is empty")
    local = torch.arange(nodes.numel())
    y = labels[nodes]
    scores = {name: metric(out[nodes], y, local) for name, out in outputs.items()}
    generator = torch.Generator().manual_seed(seed)
    base = outputs[baseline][nodes]
    p_values = {}
    for name, out in outputs.items():
        if name == baseline:
            continue
        observed = _advantage(scores[name], scores[baseline], metric.higher_is_better)
        candidate, reached = out[nodes], 0
        for _ in range(permutations):
            swap = (torch.rand(nodes.numel(), generator=generator) < 0.5).unsqueeze(1)
            a = metric(torch.where(swap, base, candidate), y, local)
            b = metric(torch.where(swap, candidate, base), y, local)
            reached += _advantage(a, b, metric.higher_is_better) >= observed
        p_values[name] = (1 + reached) / (1 + permutations)
    choice = baseline
    for name, p in p_values.items():
        if p <= 1 - confidence and _advantage(scores[name], scores[baseline], metric.higher_is_better) > 0 and \
                (choice == baseline or _advantage(scores[name], scores[choice], metric.higher_is_better) > 0):
            choice = name
    return GateDecision(choice=choice, baseline=baseline, scores=scores, p_values=p_values, confidence=confidence)


def _advantage(value: float, other: float, higher_is_better: bool) -> float:
    """How much better ``value`` is than ``other`` in the metric's direction (NaN: -inf)."""
    if value != value or other != other:
        return float("-inf")
    return value - other if higher_is_better else other - value
