"""Filtered link-prediction evaluation: realistic ranks of heads and tails, MRR and Hits@k.

For a test triple ``(h, r, t)`` the tail is ranked against every entity ``t'`` for which ``(h, r, t')`` is
not a known true triple (train, valid or test: the *filtered* setting), and the head likewise. Ties are
counted as PyKEEN's "realistic" rank does: the mean of the optimistic rank ``1 + #{score > s_true}`` and the
pessimistic rank ``1 + #{score >= s_true}`` (candidates other than the true entity), i.e. the expected rank
under random tie breaking. MRR and Hits@k average over both sides (2 ranks per triple).
"""
from __future__ import annotations

from typing import Iterable, Protocol

import torch

from ..errors import DataError
from .data import check_triples


class LinkPredictor(Protocol):
    """What the evaluator calls: scores of every entity as the tail of ``(h, r, ?)`` / head of ``(?, r, t)``.

    Any object with these two methods will do (:class:`~.model.EmbeddingPredictor` is the library's);
    each takes ``[B]`` id tensors and returns ``[B, N]`` scores, higher meaning more plausible.

    Example:
        A hand-written predictor that knows the rule of a ring:

        >>> import torch
        >>> train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3]])
        >>> class RingPredictor:  # on the ring a -> b -> c -> d -> a: "next" is +1, "skip" is +2
        ...     def score_tails(self, heads, relations):
        ...         return torch.nn.functional.one_hot((heads + 1 + relations) % 4, 4).float()
        ...     def score_heads(self, relations, tails):
        ...         return torch.nn.functional.one_hot((tails - 1 - relations) % 4, 4).float()
        >>> from dgl_bilevel.kg import evaluate_link_prediction
        >>> evaluate_link_prediction(RingPredictor(), train, None, num_entities=4, num_relations=2)["mrr"]
        1.0
    """

    def score_tails(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor: ...  # [B, N]

    def score_heads(self, relations: torch.Tensor, tails: torch.Tensor) -> torch.Tensor: ...  # [B, N]


class FilterIndex:
    """Every known true triple, queried as boolean masks over candidate heads or tails (vectorised).

    Args:
        triples: the known true triples, ``[n, 3]``.
        num_entities, num_relations: the id ranges.

    Raises:
        ~dgl_bilevel.errors.DataError: ``triples`` is malformed or has ids out of range.

    Example:
        >>> import torch
        >>> train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3]])
        >>> from dgl_bilevel.kg import FilterIndex
        >>> index = FilterIndex(train, num_entities=4, num_relations=2)
        >>> index.known_tails(torch.tensor([0]), torch.tensor([0]))  # (0, next, ?)
        tensor([[False,  True, False, False]])
        >>> index.known_heads(torch.tensor([1]), torch.tensor([2]))  # (?, skip, 2)
        tensor([[ True, False, False, False]])
    """

    def __init__(self, triples: torch.Tensor, num_entities: int, num_relations: int) -> None:
        triples = check_triples(triples, num_entities, num_relations)
        self.num_entities, self.num_relations = num_entities, num_relations
        self.keys = torch.unique(self._key(triples[:, 0], triples[:, 1], triples[:, 2]))

    def _key(self, h, r, t):
        return (h * self.num_relations + r) * self.num_entities + t

    def known_tails(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """``mask[b, j]``: ``(heads[b], relations[b], j)`` is a known triple."""
        cand = torch.arange(self.num_entities)
        return torch.isin(self._key(heads[:, None], relations[:, None], cand[None, :]), self.keys)

    def known_heads(self, relations: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """``mask[b, j]``: ``(j, relations[b], tails[b])`` is a known triple."""
        cand = torch.arange(self.num_entities)
        return torch.isin(self._key(cand[None, :], relations[:, None], tails[:, None]), self.keys)


def realistic_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Rank of ``scores[b, targets[b]]`` among the row's candidates not in ``exclude`` (mean of optimistic and
    pessimistic rank; the target itself is never excluded). Returns float64 ``[B]``.

    Args:
        scores: ``[B, N]``, higher is better.
        targets: ``[B]``, the true candidate of each row.
        exclude: ``[B, N]`` boolean mask of candidates to leave out (the filtered setting), or ``None``.

    Returns:
        The ranks (1 is best; ties give half-integers).

    Raises:
        ~dgl_bilevel.errors.DataError: the shapes do not match, or ``scores`` has NaN or infinity.

    Example:
        >>> import torch
        >>> from dgl_bilevel.kg import realistic_ranks
        >>> scores = torch.tensor([[0.1, 0.9, 0.5], [0.5, 0.5, 0.5]])
        >>> realistic_ranks(scores, torch.tensor([2, 0]))  # one better; a three-way tie: (1 + 3) / 2
        tensor([2., 2.], dtype=torch.float64)
        >>> realistic_ranks(scores, torch.tensor([2, 0]), exclude=torch.tensor([[False, True, False]] * 2))
        tensor([1.0000, 1.5000], dtype=torch.float64)
    """
    if scores.dim() != 2 or targets.shape != (scores.shape[0],):
        raise DataError(f"scores must be [B, N] and targets [B], got {tuple(scores.shape)} and {tuple(targets.shape)}")
    if not torch.isfinite(scores).all():
        raise DataError("scores contain NaN or infinity: the model diverged; ranks would be meaningless")
    true = scores.gather(1, targets[:, None])
    others = torch.ones_like(scores, dtype=torch.bool) if exclude is None else ~exclude
    others = others.clone()
    others[torch.arange(len(targets)), targets] = False
    greater = ((scores > true) & others).sum(1)
    at_least = ((scores >= true) & others).sum(1)
    return (2.0 + greater + at_least).double() / 2.0


@torch.no_grad()
def rank_triples(model: LinkPredictor, triples: torch.Tensor, filter_index: FilterIndex | None = None,
                 batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Realistic ranks of the heads and the tails of ``triples``; filtered when ``filter_index`` is given.

    Args:
        model: a :class:`LinkPredictor`.
        triples: the triples to rank, ``[n, 3]``.
        filter_index: the known true triples to filter out, or ``None`` (raw ranks).
        batch_size: triples scored at once.

    Returns:
        ``{"head": ranks [n], "tail": ranks [n]}`` (float64, see :func:`realistic_ranks`).

    Example:
        >>> import torch
        >>> train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3]])
        >>> class RingPredictor:  # on the ring a -> b -> c -> d -> a: "next" is +1, "skip" is +2
        ...     def score_tails(self, heads, relations):
        ...         return torch.nn.functional.one_hot((heads + 1 + relations) % 4, 4).float()
        ...     def score_heads(self, relations, tails):
        ...         return torch.nn.functional.one_hot((tails - 1 - relations) % 4, 4).float()
        >>> class Indifferent:  # the same score for every entity
        ...     def score_tails(self, heads, relations):
        ...         return torch.zeros(len(heads), 4)
        ...     def score_heads(self, relations, tails):
        ...         return torch.zeros(len(tails), 4)
        >>> from dgl_bilevel.kg import rank_triples
        >>> rank_triples(RingPredictor(), train[:2])
        {'head': tensor([1., 1.], dtype=torch.float64), 'tail': tensor([1., 1.], dtype=torch.float64)}
        >>> rank_triples(Indifferent(), train[:1])["tail"]  # a four-way tie: (1 + 4) / 2
        tensor([2.5000], dtype=torch.float64)
    """
    heads, tails = [], []
    for start in range(0, len(triples), batch_size):
        h, r, t = triples[start:start + batch_size].unbind(1)
        tail_mask = filter_index.known_tails(h, r) if filter_index is not None else None
        head_mask = filter_index.known_heads(r, t) if filter_index is not None else None
        tails.append(realistic_ranks(model.score_tails(h, r), t, tail_mask))
        heads.append(realistic_ranks(model.score_heads(r, t), h, head_mask))
    empty = torch.zeros(0, dtype=torch.float64)
    return {"head": torch.cat(heads) if heads else empty, "tail": torch.cat(tails) if tails else empty}


def rank_metrics(ranks: torch.Tensor | dict[str, torch.Tensor], ks: Iterable[int] = (1, 3, 10)) -> dict[str, float]:
    """``mrr`` (mean reciprocal rank), ``mean_rank`` and ``hits@k`` (fraction of ranks <= k).

    Args:
        ranks: a rank tensor, or :func:`rank_triples`' dict (head and tail ranks pooled).
        ks: the cut-offs of ``hits@k``.

    Returns:
        The metrics, as floats.

    Raises:
        ~dgl_bilevel.errors.DataError: no ranks.

    Example:
        >>> import torch
        >>> from dgl_bilevel.kg import rank_metrics
        >>> metrics = rank_metrics(torch.tensor([1.0, 2.0, 4.0]), ks=(1, 3))
        >>> {name: round(value, 4) for name, value in metrics.items()}  # mrr = (1 + 1/2 + 1/4) / 3
        {'mrr': 0.5833, 'mean_rank': 2.3333, 'hits@1': 0.3333, 'hits@3': 0.6667}
    """
    if isinstance(ranks, dict):
        ranks = torch.cat([ranks["head"], ranks["tail"]])
    if ranks.numel() == 0:
        raise DataError("no ranks to summarise (empty evaluation split)")
    out = {"mrr": float((1.0 / ranks).mean()), "mean_rank": float(ranks.mean())}
    out.update({f"hits@{k}": float((ranks <= k).double().mean()) for k in ks})
    return out


def evaluate_link_prediction(model: LinkPredictor, triples: torch.Tensor, known_triples: torch.Tensor | None,
                             num_entities: int, num_relations: int, ks: Iterable[int] = (1, 3, 10),
                             batch_size: int = 256) -> dict[str, float]:
    """Filtered (``known_triples`` given: all true triples) or raw ranking metrics over head and tail ranks.

    Args:
        model: a :class:`LinkPredictor`.
        triples: the triples to rank, ``[n, 3]``.
        known_triples: every known true triple (filtered setting), or ``None`` (raw).
        num_entities, num_relations: the id ranges.
        ks: the cut-offs of ``hits@k``.
        batch_size: triples scored at once.

    Returns:
        :func:`rank_metrics` of the head and tail ranks.

    Raises:
        ~dgl_bilevel.errors.DataError: malformed triples or ids out of range, or no triples.

    Example:
        >>> import torch
        >>> train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3]])
        >>> class RingPredictor:  # on the ring a -> b -> c -> d -> a: "next" is +1, "skip" is +2
        ...     def score_tails(self, heads, relations):
        ...         return torch.nn.functional.one_hot((heads + 1 + relations) % 4, 4).float()
        ...     def score_heads(self, relations, tails):
        ...         return torch.nn.functional.one_hot((tails - 1 - relations) % 4, 4).float()
        >>> from dgl_bilevel.kg import evaluate_link_prediction
        >>> metrics = evaluate_link_prediction(RingPredictor(), train, train, num_entities=4, num_relations=2)
        >>> metrics["mrr"], metrics["hits@1"]
        (1.0, 1.0)
    """
    triples = check_triples(triples, num_entities, num_relations)
    index = FilterIndex(known_triples, num_entities, num_relations) if known_triples is not None else None
    return rank_metrics(rank_triples(model, triples, index, batch_size), ks)
