"""Training a :class:`~.model.KGEModel` end to end: Adam, uniform head/tail corruption, margin or softplus loss.

Each mini-batch recomputes ``Y_K`` through the unrolled descent steps (the upper level differentiates
through them). With ``hide_targets`` the batch's own triples get weight 0 in the energy, so a triple is
never scored on embeddings that were pulled towards it by its own edge term (the training graph would
otherwise leak the answer; at evaluation every training triple is in the graph and no test triple is).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .data import KGData
from .evaluate import FilterIndex, rank_metrics, rank_triples
from .model import KGEModel, corrupt

LOSSES = ("margin", "softplus")


@dataclass
class KGTrainConfig:
    """Upper-level training settings (defaults: those of the recipe's table in docs/bloomgml.md).

    Args:
        epochs: passes over the training triples.
        batch_size: positive triples per Adam step.
        lr: Adam's learning rate.
        num_negatives: corruptions per positive triple.
        loss: ``"margin"`` or ``"softplus"`` (see :func:`kg_loss`).
        margin: the margin of the margin loss.
        hide_targets: give a batch's own triples weight 0 in the energy while it is scored.
        seed: seeds the batch order, the corruptions and the model's initial tables.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown loss, or ``epochs < 0``, ``batch_size < 1``, ``num_negatives < 1``
            or ``lr <= 0``.

    Example:
        >>> from dgl_bilevel.kg import KGTrainConfig
        >>> config = KGTrainConfig(epochs=5, loss="softplus")
        >>> config.batch_size, config.loss
        (1024, 'softplus')
        >>> KGTrainConfig(loss="hinge")
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: loss must be one of ('margin', 'softplus'), got 'hinge'
    """

    epochs: int = 100
    batch_size: int = 1024
    lr: float = 1e-2
    num_negatives: int = 4
    loss: str = "margin"
    margin: float = 1.0
    hide_targets: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.num_negatives < 1 or not self.lr > 0:
            raise ConfigError("epochs >= 0, batch_size >= 1, num_negatives >= 1 and lr > 0 are required, got "
                              f"{self.epochs}, {self.batch_size}, {self.num_negatives}, {self.lr}")


@dataclass
class KGTrainResult:
    """Per-epoch mean losses, wall time and final filtered metrics per evaluated split.

    Args:
        losses: the mean training loss of every epoch.
        seconds: the training wall time.
        metrics: split -> :func:`~.evaluate.rank_metrics` (filled by :func:`fit_kge`).
        config: the :class:`KGTrainConfig` as a dict.

    Example:
        >>> import torch
        >>> train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3]])
        >>> from dgl_bilevel.kg import KGEModel, KGTrainConfig, train_kge
        >>> model = KGEModel("transe", num_entities=4, num_relations=2, dim=4, seed=0)
        >>> result = train_kge(model, train, KGTrainConfig(epochs=3, batch_size=3))
        >>> len(result.losses), result.config["epochs"], result.metrics
        (3, 3, {})
    """

    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def kg_loss(pos: torch.Tensor, neg: torch.Tensor, loss: str = "margin", margin: float = 1.0) -> torch.Tensor:
    """``margin``: mean of ``max(0, margin - s_pos + s_neg)`` over (positive, its negative) pairs;
    ``softplus``: mean of ``softplus(-s)`` over positives and ``softplus(s)`` over negatives (all scores).

    Args:
        pos: scores of the positive triples, ``[B]``.
        neg: scores of their corruptions, ``[B, k]``.
        loss: ``"margin"`` or ``"softplus"``.
        margin: the margin.

    Returns:
        The loss, a scalar.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown ``loss``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.kg import kg_loss
        >>> pos, neg = torch.tensor([2.0]), torch.tensor([[0.5, 1.5]])
        >>> kg_loss(pos, neg, "margin").item()  # (max(0, 1 - 2 + 0.5) + max(0, 1 - 2 + 1.5)) / 2
        0.25
        >>> round(kg_loss(pos, neg, "softplus").item(), 4)  # (softplus(-2) + softplus(0.5) + softplus(1.5)) / 3
        0.9341
    """
    if loss == "margin":
        return F.relu(margin - pos[:, None] + neg).mean()
    if loss == "softplus":
        return torch.cat([F.softplus(-pos), F.softplus(neg.reshape(-1))]).mean()
    raise ConfigError(f"loss must be one of {LOSSES}, got {loss!r}")


def train_kge(model: KGEModel, train_triples: torch.Tensor, config: KGTrainConfig) -> KGTrainResult:
    """Train ``model`` on ``train_triples`` (which must be the model's graph triples when it takes steps).

    Adam on every parameter; each mini-batch recomputes ``Y_K`` (with the batch hidden when
    ``config.hide_targets``), scores positives against uniform corruptions, and re-normalises
    the base table after the step. The model is left in eval mode.

    Args:
        model: the :class:`~.model.KGEModel`.
        train_triples: ``[n, 3]`` training triples.
        config: the :class:`KGTrainConfig`.

    Returns:
        A :class:`KGTrainResult` with ``losses`` and ``seconds`` (no ``metrics``).

    Raises:
        ~dgl_bilevel.errors.ConfigError: the model takes steps on a graph built from other triples.

    Example:
        >>> import torch
        >>> train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3]])
        >>> from dgl_bilevel.kg import KGEModel, KGTrainConfig, train_kge
        >>> model = KGEModel("transe", num_entities=4, num_relations=2, dim=4, graph_triples=train, steps=1, seed=0)
        >>> result = train_kge(model, train, KGTrainConfig(epochs=4, batch_size=3, lr=0.05))
        >>> len(result.losses), all(loss > 0 for loss in result.losses), model.training
        (4, True, False)
        >>> train_kge(model, train[:3], KGTrainConfig(epochs=1))
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: train_triples must be the triples the model's energy graph was built from
    """
    if model.steps > 0 and len(train_triples) != model.num_positive_edges:
        raise ConfigError("train_triples must be the triples the model's energy graph was built from")
    gen = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    result = KGTrainResult(config=asdict(config))
    start = time.perf_counter()
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(train_triples), generator=gen)
        total = 0.0
        for batch in order.split(config.batch_size):
            pos_triples = train_triples[batch]
            neg_triples = corrupt(pos_triples, model.num_entities, config.num_negatives, gen)
            y = model.embed(batch if (config.hide_targets and model.steps > 0) else None)
            loss = kg_loss(model.score(y, pos_triples), model.score(y, neg_triples), config.loss, config.margin)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            model.constrain()
            total += float(loss.detach()) * len(batch)
        result.losses.append(total / max(1, len(train_triples)))
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


def evaluate_kge(model: KGEModel, data: KGData, splits: tuple[str, ...] = ("valid", "test"),
                 ks: tuple[int, ...] = (1, 3, 10)) -> dict[str, dict[str, float]]:
    """Filtered MRR / Hits@k (realistic ranks, both sides) on ``splits``; all known triples are filtered.

    Args:
        model: the :class:`~.model.KGEModel` (scored on ``Y_K`` over the full training graph).
        data: the :class:`~.data.KGData` (its splits and known triples).
        splits: the splits to evaluate.
        ks: the cut-offs of ``hits@k``.

    Returns:
        split -> :func:`~.evaluate.rank_metrics`.

    Example:
        >>> import torch
        >>> train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3]])
        >>> from dgl_bilevel.kg import KGData
        >>> data = KGData("ring", train, valid=torch.tensor([[2, 1, 0]]), test=torch.tensor([[3, 1, 1]]),
        ...               entity_to_id={"a": 0, "b": 1, "c": 2, "d": 3}, relation_to_id={"next": 0, "skip": 1})
        >>> from dgl_bilevel.kg import KGEModel, evaluate_kge
        >>> model = KGEModel("distmult", num_entities=4, num_relations=2, dim=4, seed=0)
        >>> metrics = evaluate_kge(model, data, ks=(1,))
        >>> sorted(metrics), sorted(metrics["test"])
        (['test', 'valid'], ['hits@1', 'mean_rank', 'mrr'])
        >>> 1 <= metrics["test"]["mean_rank"] <= 4  # four entities to rank among
        True
    """
    index = FilterIndex(data.all_triples(), data.num_entities, data.num_relations)
    predictor = model.predictor()
    return {s: rank_metrics(rank_triples(predictor, data.split(s), index), ks) for s in splits}


def fit_kge(data: KGData, interaction: str = "transe", dim: int = 64, steps: int = 0,
            config: KGTrainConfig | None = None, **model_options) -> tuple[KGEModel, KGTrainResult]:
    """Build a :class:`KGEModel` on ``data``'s training graph, train it, and evaluate valid and test.

    Args:
        data: the :class:`~.data.KGData`.
        interaction: ``"transe"``, ``"distmult"`` or ``"rotate"``.
        dim: the embedding width.
        steps: relation-aware descent steps (0: the plain embedding model).
        config: the :class:`KGTrainConfig` (``None``: its defaults); its seed seeds the model.
        **model_options: further :class:`~.model.KGEModel` keywords (``lam``, ``lam_neg``, ...).

    Returns:
        ``(model, result)``, ``result.metrics`` holding the ``valid`` and ``test`` metrics.

    Raises:
        ~dgl_bilevel.errors.ConfigError: as :class:`~.model.KGEModel` and :class:`KGTrainConfig`.

    Example:
        >>> import torch
        >>> train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3]])
        >>> from dgl_bilevel.kg import KGData
        >>> data = KGData("ring", train, valid=torch.tensor([[2, 1, 0]]), test=torch.tensor([[3, 1, 1]]),
        ...               entity_to_id={"a": 0, "b": 1, "c": 2, "d": 3}, relation_to_id={"next": 0, "skip": 1})
        >>> from dgl_bilevel.kg import KGTrainConfig, fit_kge
        >>> model, result = fit_kge(data, "transe", dim=4, steps=1, config=KGTrainConfig(epochs=2, batch_size=3))
        >>> model.steps, len(result.losses), sorted(result.metrics)
        (1, 2, ['test', 'valid'])
        >>> 0 < result.metrics["test"]["mrr"] <= 1
        True
    """
    config = config or KGTrainConfig()
    model = KGEModel(interaction, data.num_entities, data.num_relations, dim, graph_triples=data.train,
                     steps=steps, seed=config.seed, **model_options)
    result = train_kge(model, data.train, config)
    result.metrics = evaluate_kge(model, data)
    return model, result
