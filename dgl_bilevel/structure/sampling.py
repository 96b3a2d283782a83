"""Drawing graphs from edge probabilities: how a probabilistic structure reaches the inner problem.

A probabilistic structure (:class:`~dgl_bilevel.structure.BernoulliEdges`) outputs one probability
``theta_e`` per candidate edge. Following LDS (Franceschi et al., ICML 2019), the inner model is
trained on graphs *sampled* from ``theta`` (``A ~ Bernoulli(theta)``, edges independent) and its
prediction is the *average* over sampled graphs. A :class:`GraphSampler` holds how: graphs per
inner objective, when they are redrawn, how many graphs an expected prediction averages, and the
gradient estimator that carries the outer gradient from a sampled 0/1 graph back to ``theta``.

Estimators:

* ``"ste"`` (straight-through, LDS's choice): the forward pass is the 0/1 sample ``m``, the
  backward pass treats ``dm/dtheta`` as the identity. Biased, low variance.
* ``"score"`` (score function / REINFORCE with a baseline): ``grad E[L] = E[(L - b) grad log
  p(m; theta)]``, unbiased for the expected outer loss of a graph drawn once per outer iteration
  (``resample="outer"``); ``b`` is a running mean of past losses (it lowers the variance and keeps
  the estimate unbiased, since ``E[grad log p] = 0``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ..errors import ConfigError

RESAMPLE = ("step", "outer")
SAMPLE_ESTIMATORS = ("ste", "score")


def bernoulli_mask(theta: torch.Tensor, generator: Optional[torch.Generator],
                   pair_index: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A 0/1 draw with ``P(m_e = 1) = theta_e`` (detached; ``theta`` clamped to [0, 1]).

    ``pair_index`` (edge -> its unordered pair) draws one coin per pair, so ``u->v`` and ``v->u``
    are kept or dropped together (their ``theta`` must then agree, as tied parameters do).
    """
    if pair_index is None:
        uniform = torch.rand(theta.shape, generator=generator, dtype=theta.dtype, device=theta.device)
    else:
        pairs = int(pair_index.max()) + 1 if pair_index.numel() else 0
        uniform = torch.rand(pairs, generator=generator, dtype=theta.dtype, device=theta.device)[pair_index]
    return (uniform < theta.detach().clamp(0.0, 1.0)).to(theta.dtype)


def straight_through(mask: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``mask`` in the forward pass, the identity to ``theta`` in the backward pass."""
    return mask + (theta - theta.detach())


def bernoulli_log_prob(mask: torch.Tensor, theta: torch.Tensor, pair_index: Optional[torch.Tensor] = None,
                       eps: float = 1e-6) -> torch.Tensor:
    """``log p(mask; theta)`` of independent Bernoulli edges (probabilities clamped to ``[eps, 1 - eps]``);
    with ``pair_index``, of independent pairs (each pair counted once, whatever its edges)."""
    p = theta.clamp(eps, 1.0 - eps)
    per_edge = mask * torch.log(p) + (1.0 - mask) * torch.log1p(-p)
    if pair_index is None:
        return per_edge.sum()
    count = torch.zeros(int(pair_index.max()) + 1, dtype=theta.dtype).index_add_(
        0, pair_index, torch.ones_like(per_edge))
    return (per_edge / count[pair_index]).sum()


def enumerate_graphs(theta: torch.Tensor, pair_index: Optional[torch.Tensor] = None,
                     max_units: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Every graph on the candidate edges with its probability: ``(masks [G, E], probabilities [G])``.

    Exact expectations on tiny graphs (tests, checks of the Monte-Carlo estimates): ``2^U`` graphs
    for ``U`` independent units (edges, or pairs with ``pair_index``); refused above ``max_units``.
    """
    if pair_index is None:
        pair_index = torch.arange(theta.numel())
    units = int(pair_index.max()) + 1
    if units > max_units:
        raise ConfigError(f"exact enumeration of {units} independent edges means 2^{units} graphs; at most "
                          f"{max_units} are enumerated")
    unit_theta = torch.zeros(units, dtype=theta.dtype).scatter_(0, pair_index, theta)  # tied: equal per unit
    bits = ((torch.arange(2 ** units)[:, None] >> torch.arange(units)[None, :]) & 1).to(theta.dtype)
    probabilities = torch.where(bits > 0, unit_theta, 1 - unit_theta).prod(dim=1)
    return bits[:, pair_index], probabilities


@dataclass
class GraphSampler:
    """How graphs are drawn from edge probabilities (see the module docstring).

    Args:
        samples: graphs per inner objective (its value is their mean); LDS: 1.
        resample: ``"step"`` -- new graphs at every inner step (LDS; the objective is random, so
            only unrolled/truncated hypergradients apply); ``"outer"`` -- graphs drawn once per
            outer iteration and fixed through the inner solve (a deterministic inner problem:
            implicit hypergradients apply too).
        eval_samples: graphs a prediction averages over (LDS's expected prediction); 0 predicts
            on ``theta`` itself as edge weights (the expected graph, deterministic).
        estimator: ``"ste"`` or ``"score"`` (``resample="outer"`` only).
        baseline_decay: the score estimator's baseline is ``b <- decay b + (1 - decay) L``.
        generator: the draws' random generator (its state is checkpointed with the structure).

    Raises:
        ~dgl_bilevel.errors.ConfigError: on a setting out of range, or the score estimator without ``resample="outer"``.

    Example:
        Straight-through draws: 0/1 forward, identity backward to the probabilities.

        >>> import torch
        >>> from dgl_bilevel.structure import GraphSampler
        >>> sampler = GraphSampler(generator=torch.Generator().manual_seed(0))
        >>> theta = torch.tensor([0.0, 1.0, 0.5, 0.5], requires_grad=True)
        >>> graphs = sampler.draw(theta, count=3)
        >>> [g.detach()[:2].tolist() for g in graphs]  # probabilities 0 and 1 are certain
        [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
        >>> graphs[0].sum().backward()
        >>> theta.grad
        tensor([1., 1., 1., 1.])
        >>> GraphSampler(estimator="score")
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: the score-function estimator needs graphs drawn once per outer iteration ...
    """

    samples: int = 1
    resample: str = "step"
    eval_samples: int = 16
    estimator: str = "ste"
    baseline_decay: float = 0.9
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))
    baseline: Optional[float] = None
    #: edge -> unordered pair, set by a structure with tied directions: one coin per pair
    pair_index: Optional[torch.Tensor] = None
    #: predictions average over *every* graph, weighted by its probability (tiny graphs: checks of
    #: the Monte-Carlo average; :func:`enumerate_graphs`)
    exact_predictions: bool = False

    def __post_init__(self) -> None:
        if int(self.samples) < 1:
            raise ConfigError(f"graph samples must be >= 1 (graphs drawn per inner objective), got {self.samples}")
        if int(self.eval_samples) < 0:
            raise ConfigError(f"eval samples must be >= 0 (0: predict on the expected graph), got {self.eval_samples}")
        if self.resample not in RESAMPLE:
            raise ConfigError(f"resample must be one of {', '.join(RESAMPLE)}, got {self.resample!r}")
        if self.estimator not in SAMPLE_ESTIMATORS:
            raise ConfigError(f"the estimator of a sampled graph must be one of {', '.join(SAMPLE_ESTIMATORS)}, "
                              f"got {self.estimator!r}")
        if self.estimator == "score" and self.resample != "outer":
            raise ConfigError("the score-function estimator needs graphs drawn once per outer iteration "
                              "(resample='outer'): with a new graph at every inner step the outer loss is not a "
                              "function of one draw")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ConfigError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")
        self.samples, self.eval_samples = int(self.samples), int(self.eval_samples)

    @property
    def stochastic_objective(self) -> bool:
        """Whether the inner objective changes between calls within one outer iteration."""
        return self.resample == "step"

    def draw(self, theta: torch.Tensor, count: int) -> list[torch.Tensor]:
        """``count`` sampled graphs as edge weights, differentiable in ``theta`` by the estimator."""
        masks = [bernoulli_mask(theta, self.generator, self.pair_index) for _ in range(count)]
        if self.estimator == "ste":
            return [straight_through(m, theta) for m in masks]
        return masks  # score: no pathwise gradient; see surrogate()

    def surrogate(self, loss: torch.Tensor, masks: list[torch.Tensor], theta: torch.Tensor) -> torch.Tensor:
        """The score estimator's surrogate: its gradient in ``theta`` is ``(L - b) grad log p(masks)``.

        ``loss`` is returned unchanged in value. The baseline is updated after use (the estimate of
        this iteration does not see its own loss in ``b``, so it stays unbiased).
        """
        value = float(loss.detach())
        centred = value - (self.baseline if self.baseline is not None else 0.0)  # no baseline yet: plain REINFORCE
        log_prob = sum(bernoulli_log_prob(m.detach(), theta, self.pair_index) for m in masks) / len(masks)
        self.baseline = value if self.baseline is None else (
            self.baseline_decay * self.baseline + (1.0 - self.baseline_decay) * value)
        return loss + centred * (log_prob - log_prob.detach())

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.baseline = state.get("baseline")

    def describe(self) -> dict:
        return {"graph_samples": self.samples, "resample": self.resample, "eval_samples": self.eval_samples,
                "sample_estimator": self.estimator}
