"""The validation gate: keep the baseline unless a candidate wins a paired randomisation test on validation."""
from __future__ import annotations

import math

import pytest
import torch

from dgl_bilevel.errors import ConfigError
from dgl_bilevel.losses import Metric, default_metric
from dgl_bilevel.outer.gate import validation_gate

ACCURACY = default_metric("classification")


def _outputs(labels: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Two-class outputs that are right exactly where ``right`` is True."""
    predicted = torch.where(right, labels, 1 - labels)
    return torch.nn.functional.one_hot(predicted, 2).double()


def _sign_test_p(wins: int, losses: int) -> float:
    """P(K >= wins), K ~ Binomial(wins + losses, 1/2): the exact one-sided p-value of a paired
    accuracy advantage (McNemar's sign test), which the randomisation test estimates."""
    n = wins + losses
    return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n


def test_p_value_is_the_exact_sign_test_on_disagreeing_nodes():
    n = 20
    labels = torch.zeros(n, dtype=torch.long)
    base_right = torch.ones(n, dtype=torch.bool)
    cand_right = torch.ones(n, dtype=torch.bool)
    base_right[:6] = False  # the candidate is right on nodes 0-5 where the baseline is wrong ...
    cand_right[6:8] = False  # ... and wrong on nodes 6-7 where the baseline is right: 6 wins, 2 losses
    base_right[8:10] = cand_right[8:10] = False  # both wrong: no effect on the paired difference
    permutations = 20_000
    outputs = {"observed": _outputs(labels, base_right), "learned": _outputs(labels, cand_right)}
    decision = validation_gate(outputs, "observed", labels, torch.arange(n), ACCURACY, permutations=permutations,
                               seed=3)
    exact = _sign_test_p(6, 2)  # 37/256
    se = math.sqrt(exact * (1 - exact) / permutations)
    assert abs(decision.p_values["learned"] - exact) < 3 * se
    assert decision.choice == "observed"  # p = 0.14: not enough evidence at 95%
    mirrored = validation_gate({"observed": outputs["learned"], "learned": outputs["observed"]}, "observed", labels,
                               torch.arange(n), ACCURACY, permutations=permutations, seed=3)
    assert abs(mirrored.p_values["learned"] - _sign_test_p(2, 6)) < 3 * se + 1e-3  # 0.965: the sign matters
    loose = validation_gate(outputs, "observed", labels, torch.arange(n), ACCURACY, confidence=0.8, seed=3)
    assert loose.choice == "learned"


def test_a_clearly_better_candidate_replaces_the_baseline_and_noise_does_not():
    g = torch.Generator().manual_seed(0)
    n = 250
    labels = torch.randint(0, 2, (n,), generator=g)
    base_right = torch.rand(n, generator=g) < 0.80
    nudged = base_right.clone()
    nudged[(~base_right).nonzero()[:3].squeeze(1)] = True  # +1.2 points: within validation noise
    better = base_right.clone()
    better[(~base_right).nonzero()[:25].squeeze(1)] = True  # +10 points
    outputs = {"observed": _outputs(labels, base_right), "nudged": _outputs(labels, nudged),
               "better": _outputs(labels, better)}
    decision = validation_gate(outputs, "observed", labels, torch.arange(n), ACCURACY)
    assert decision.scores["nudged"] > decision.scores["observed"]
    assert decision.p_values["nudged"] > 0.05 >= decision.p_values["better"]  # 3 wins, 0 losses: p = 1/8
    assert decision.choice == "better"
    only_nudged = {k: outputs[k] for k in ("observed", "nudged")}
    assert validation_gate(only_nudged, "observed", labels, torch.arange(n), ACCURACY).choice == "observed"


def test_lower_is_better_metrics_are_gated_in_their_direction():
    mse = Metric("mse", False, lambda out, y, nodes: ((out[nodes, 0] - y[nodes]) ** 2).mean())
    y = torch.linspace(0, 1, 100, dtype=torch.float64)
    close, far = (y + 0.01).unsqueeze(1), (y + 0.5).unsqueeze(1)
    assert validation_gate({"observed": far, "learned": close}, "observed", y, torch.arange(100), mse).choice == "learned"
    assert validation_gate({"observed": close, "learned": far}, "observed", y, torch.arange(100), mse).choice == "observed"


@pytest.mark.parametrize("kwargs, message", [
    ({"baseline": "missing"}, "baseline 'missing' is not among"),
    ({"confidence": 1.0}, "confidence must be in"),
    ({"permutations": 0}, "permutations must be >= 1"),
    ({"nodes": torch.tensor([], dtype=torch.long)}, "validation split is empty"),
])
def test_bad_gate_arguments_are_refused(kwargs, message):
    labels = torch.zeros(4, dtype=torch.long)
    arguments = {"outputs": {"observed": torch.ones(4, 2)}, "baseline": "observed", "labels": labels,
                 "nodes": torch.arange(4), "metric": ACCURACY, **kwargs}
    with pytest.raises(ConfigError, match=message):
        validation_gate(**arguments)
