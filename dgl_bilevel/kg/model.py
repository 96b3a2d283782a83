"""A KG embedding model whose entity embeddings are K descent steps on the relation-aware energy.

``steps=0`` is the plain embedding model (scores on the base table ``E``); ``steps=K`` scores on
``Y_K`` = K (preconditioned) gradient steps on :func:`~.energy_steps.kg_energy` from ``E`` over the
training triples (attractive, weight ``lam``) and an optional fixed negative graph of corrupted triples
(repulsive, weight ``-lam_neg``). The upper level trains ``E`` and the relation parameters through the
unrolled steps (:mod:`.train`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .data import check_triples, relation_graph
from .energy_steps import RelationalDescent
from .scores import Interaction, make_interaction


def corrupt(triples: torch.Tensor, num_entities: int, num_negatives: int = 1,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """``num_negatives`` corruptions per triple (``[B, k, 3]``): head or tail (each with probability 1/2)
    replaced by a uniformly drawn *different* entity; no filtering of accidental true triples.

    Args:
        triples: ``[B, 3]`` id triples.
        num_entities: the entity id range.
        num_negatives: ``k``, corruptions per triple.
        generator: the random generator (``None``: torch's global one).

    Returns:
        ``[B, k, 3]``: each row differs from its triple in exactly one of head and tail.

    Raises:
        ~dgl_bilevel.errors.ConfigError: fewer than two entities.

    Example:
        >>> import torch
        >>> train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3]])
        >>> from dgl_bilevel.kg import corrupt
        >>> negatives = corrupt(train, num_entities=4, num_negatives=3, generator=torch.Generator().manual_seed(0))
        >>> negatives.shape
        torch.Size([6, 3, 3])
        >>> changed = negatives != train[:, None, :]
        >>> bool((changed.sum(-1) == 1).all()), bool(changed[..., 1].any())  # one end each, never the relation
        (True, False)
    """
    if num_entities < 2:
        raise ConfigError("negative sampling needs at least two entities")
    neg = triples[:, None, :].repeat(1, num_negatives, 1)
    column = 2 * torch.randint(0, 2, neg.shape[:2], generator=generator)  # 0 = head, 2 = tail
    old = neg.gather(2, column[..., None]).squeeze(-1)
    new = torch.randint(0, num_entities - 1, old.shape, generator=generator)
    new = new + (new >= old).long()  # skip the original entity
    neg.scatter_(2, column[..., None], new[..., None])
    return neg


class KGEModel(nn.Module):
    """Entity table ``E`` + relation map + ``steps`` relation-aware descent steps on the training graph.

    ``lam`` weighs the attractive edge terms; with the Jacobi preconditioner, ``lam * degree`` sets how much
    of a neighbourhood average replaces an entity's own row (Nations / UMLS: degrees ~230 / ~77, and the
    best lam by validation was 0.001-0.1). ``lam_neg`` weighs ``negative_ratio`` corruptions per training
    triple, sampled once (``seed``).

    Args:
        interaction: ``"transe"``, ``"distmult"``, ``"rotate"`` or an :class:`~.scores.Interaction`.
        num_entities, num_relations, dim: the table sizes.
        graph_triples: the triples the energy is built on (required when ``steps > 0``).
        steps, step_size, precondition: the descent (:class:`~.energy_steps.RelationalDescent`).
        lam, lam_neg: the weights of the attractive and repulsive edge terms (``>= 0``).
        negative_ratio: corruptions per training triple in the repulsive graph.
        seed: seeds the initial tables (and the negative graph); the global generator is left as it was.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an interaction whose sizes disagree, ``steps > 0`` without ``graph_triples``,
            negative ``lam`` or ``lam_neg``, or an unknown interaction name.

    Example:
        >>> import torch
        >>> train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3]])
        >>> from dgl_bilevel.kg import KGEModel
        >>> model = KGEModel("transe", num_entities=4, num_relations=2, dim=8, graph_triples=train, steps=2, seed=0)
        >>> y = model.embed()  # two descent steps from the base table
        >>> y.shape, torch.equal(y, model.entity)
        (torch.Size([4, 8]), False)
        >>> model.score(y, train).shape
        torch.Size([6])
        >>> KGEModel("transe", 4, 2, dim=8, steps=2)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: steps > 0 needs graph_triples (the training triples the energy is built on)
    """

    def __init__(self, interaction: str | Interaction, num_entities: int, num_relations: int, dim: int,
                 graph_triples: torch.Tensor | None = None, steps: int = 0, step_size: float = 1.0,
                 lam: float = 0.01, lam_neg: float = 0.0, negative_ratio: int = 1, precondition: bool = True,
                 seed: int | None = None) -> None:
        super().__init__()
        if steps > 0 and graph_triples is None:
            raise ConfigError("steps > 0 needs graph_triples (the training triples the energy is built on)")
        if lam < 0 or lam_neg < 0:
            raise ConfigError(f"lam and lam_neg must be >= 0, got {lam}, {lam_neg}")
        with torch.random.fork_rng(devices=[], enabled=seed is not None):  # a seed must not reset the caller's RNG
            if seed is not None:
                torch.manual_seed(seed)
            if isinstance(interaction, str):
                interaction = make_interaction(interaction, num_relations, dim)
            entity = torch.randn(num_entities, dim) / dim ** 0.5
        if interaction.dim != dim or interaction.num_relations != num_relations:
            raise ConfigError(f"interaction has dim {interaction.dim} and {interaction.num_relations} relations; "
                              f"the model {dim} and {num_relations}")
        self.num_entities, self.num_relations, self.dim = num_entities, num_relations, dim
        self.interaction = interaction
        if interaction.normalize_entities:
            entity = entity / entity.norm(dim=-1, keepdim=True)
        self.entity = nn.Parameter(entity)
        self.descent = RelationalDescent(steps, step_size, precondition)
        self.lam, self.lam_neg = float(lam), float(lam_neg)
        self.graph = None
        if graph_triples is not None:
            pos = check_triples(graph_triples, num_entities, num_relations)
            self.num_positive_edges = len(pos)
            neg = pos[:0]
            if lam_neg > 0:
                gen = torch.Generator().manual_seed(0 if seed is None else seed)
                neg = corrupt(pos, num_entities, negative_ratio, gen).reshape(-1, 3)
            self.graph = relation_graph(torch.cat([pos, neg]), num_entities)
            self.register_buffer("edge_weight", torch.cat([torch.full((len(pos),), self.lam),
                                                           torch.full((len(neg),), -self.lam_neg)]))

    @property
    def steps(self) -> int:
        return self.descent.steps

    def embed(self, hidden_edges: torch.Tensor | None = None) -> torch.Tensor:
        """``Y_K`` (``E`` itself when ``steps == 0``); ``hidden_edges`` (positive edge ids) get weight 0."""
        if self.steps == 0:
            return self.entity
        weight = self.edge_weight.to(self.entity.dtype)
        if hidden_edges is not None:
            weight = weight.clone()
            weight[hidden_edges] = 0.0
        return self.descent(self.graph, self.entity, self.interaction, weight)

    def score(self, y: torch.Tensor, triples: torch.Tensor) -> torch.Tensor:
        """Scores of ``triples`` (``[..., 3]``) under embeddings ``y``."""
        rel = self.interaction.relation(triples[..., 1]).to(y.dtype)
        return self.interaction.score(y[triples[..., 0]], rel, y[triples[..., 2]])

    @torch.no_grad()
    def constrain(self) -> None:
        """Project the base table after an optimiser step (unit-norm rows for TransE / DistMult, as PyKEEN)."""
        if self.interaction.normalize_entities:
            self.entity.div_(self.entity.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def predictor(self) -> "EmbeddingPredictor":
        """A frozen :class:`~.evaluate.LinkPredictor` on ``Y_K`` computed once (full training graph)."""
        return EmbeddingPredictor(self.embed().detach(), self.interaction)


class EmbeddingPredictor:
    """Scores every entity as head or tail, from fixed embeddings.

    The :class:`~.evaluate.LinkPredictor` that :meth:`KGEModel.predictor` returns.

    Args:
        y: entity embeddings, ``[N, d]``.
        interaction: the model's :class:`~.scores.Interaction`.

    Example:
        >>> import torch
        >>> from dgl_bilevel.kg import DistMult, EmbeddingPredictor
        >>> distmult = DistMult(num_relations=1, dim=3)
        >>> with torch.no_grad():
        ...     _ = distmult.weight.fill_(1.0)
        >>> predictor = EmbeddingPredictor(torch.eye(3), distmult)  # orthogonal entities
        >>> with torch.no_grad():  # as the evaluator calls it
        ...     predictor.score_tails(torch.tensor([0, 2]), torch.tensor([0, 0]))  # <e_h, 1, e_t>
        tensor([[1., 0., 0.],
                [0., 0., 1.]])
    """

    def __init__(self, y: torch.Tensor, interaction: Interaction) -> None:
        self.y, self.interaction = y, interaction

    def score_tails(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        rel = self.interaction.relation(relations).to(self.y.dtype)
        return self.interaction.score(self.y[heads][:, None, :], rel[:, None, :], self.y[None, :, :])

    def score_heads(self, relations: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        rel = self.interaction.relation(relations).to(self.y.dtype)
        return self.interaction.score(self.y[None, :, :], rel[:, None, :], self.y[tails][:, None, :])
