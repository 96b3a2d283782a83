"""TransE, DistMult and RotatE: the triple score and the energy's edge term ``d_r(h, t)``.

    model     score                 energy edge term d_r(h, t)
    TransE    -||h + r - t||_2      ||h + r - t||^2
    RotatE    -||h * r - t||_2      ||h * r - t||^2        (complex, |r_k| = 1)
    DistMult  <h, r, t>             sum_k |r_k| (h_k - sign(r_k) t_k)^2 = sum_k |r_k| (h_k^2 + t_k^2) - 2 <h, r, t>

For TransE and RotatE the edge term is the squared distance whose (unsquared) negation is the score:
same ranking, smooth at zero. For DistMult it is minus twice the score plus ``|r|``-weighted norms: a
signed graph Laplacian per dimension, convex and, like the score, symmetric in head and tail. (The bare
``-<h, r, t>`` is indefinite; ``||r * h - t||^2`` is asymmetric and shrinks heads by ``r^2``, which
measured worse.) The energy only needs, per edge, ``d_r``, its half-gradients in ``h`` and ``t``
(:meth:`Interaction.edge_grads`) and the diagonals of its half-Hessian blocks (:meth:`Interaction.curvature`),
each block ``[[C_h, X], [X^T, C_t]] <= 2 diag(C_h, C_t)``, which bounds the Hessian for the step-size rule.

Embeddings are real tensors; RotatE's complex vectors of dimension m are stored as interleaved
``(real, imag)`` pairs, dimension 2m (a free ``view_as_complex``), and its relations as m phases ``theta``
with ``r = exp(i theta)`` -- unit modulus by construction.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError


class Interaction(nn.Module):
    """Relation parameters plus the relation map ``phi_r`` and the score of one KG embedding model.

    A subclass implements :meth:`relation`, :meth:`score`, :meth:`distance2`, :meth:`edge_grads`
    and :meth:`curvature` (see the module docstring); the scores broadcast over leading dims.

    Args:
        num_relations: the number of relations.
        dim: the embedding width.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``num_relations`` or ``dim`` below 1.

    Example:
        >>> import torch
        >>> from dgl_bilevel.kg import Interaction, make_interaction
        >>> model = make_interaction("distmult", num_relations=2, dim=4)
        >>> isinstance(model, Interaction), model.relation(torch.tensor([0, 1, 1])).shape
        (True, torch.Size([3, 4]))
        >>> heads, tails = torch.randn(5, 1, 4), torch.randn(1, 7, 4)
        >>> model.score(heads, model.relation(torch.tensor([0])), tails).shape  # every pair
        torch.Size([5, 7])
    """

    name = "interaction"
    #: Re-normalise entity rows of the base table to unit L2 norm after each optimiser step (PyKEEN's default).
    normalize_entities = False

    def __init__(self, num_relations: int, dim: int) -> None:
        super().__init__()
        if num_relations < 1 or dim < 1:
            raise ConfigError(f"{self.name}: num_relations and dim must be positive, got {num_relations}, {dim}")
        self.num_relations, self.dim = num_relations, dim

    def relation(self, relation_ids: torch.Tensor) -> torch.Tensor:
        """The relation tensor the maps consume, one row per id (shape ``[..., dim]``)."""
        raise NotImplementedError

    def score(self, head: torch.Tensor, rel: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        """Plausibility of ``(h, r, t)``; higher is more plausible (broadcasting over leading dims)."""
        raise NotImplementedError

    def distance2(self, head: torch.Tensor, rel: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        """The energy's edge term ``d_r(h, t)`` (broadcasting, summed over the last dim)."""
        raise NotImplementedError

    def edge_grads(self, head: torch.Tensor, rel: torch.Tensor,
                   tail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d/dh, d/dt)`` of ``d_r(h, t) / 2``: the messages an edge sends to its head and its tail."""
        raise NotImplementedError

    def curvature(self, rel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Diagonals of the ``h``-``h`` and ``t``-``t`` Hessian blocks of ``d_r / 2`` (for the preconditioner)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"num_relations={self.num_relations}, dim={self.dim}"


class _DistanceModel(Interaction):
    """Score ``-||phi_r(h) - t||``, edge term ``||phi_r(h) - t||^2`` for an orthogonal-Jacobian map ``phi_r``."""

    def transform(self, head: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        """``phi_r(h)``."""
        raise NotImplementedError

    def adjoint(self, vec: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        """``J_r^T v``, ``J_r`` the Jacobian of ``phi_r``."""
        raise NotImplementedError

    def score(self, head, rel, tail):
        return -(self.transform(head, rel) - tail).norm(dim=-1)

    def distance2(self, head, rel, tail):
        return (self.transform(head, rel) - tail).pow(2).sum(-1)

    def edge_grads(self, head, rel, tail):
        rho = self.transform(head, rel) - tail
        return self.adjoint(rho, rel), -rho

    def curvature(self, rel):
        ones = torch.ones_like(rel)  # J^T J = I for a translation or a rotation
        return ones, ones


class TransE(_DistanceModel):
    """``phi_r(h) = h + r``; score ``-||h + r - t||_2`` (Bordes et al. 2013, L2 variant).

    Relation vectors start as random unit vectors; entity rows are kept at unit norm
    (``normalize_entities``).

    Args:
        num_relations: the number of relations.
        dim: the embedding width.

    Example:
        >>> import torch
        >>> from dgl_bilevel.kg import TransE
        >>> transe = TransE(num_relations=1, dim=2)
        >>> with torch.no_grad():
        ...     _ = transe.weight.copy_(torch.tensor([[1.0, 0.0]]))
        >>> head, rel, tail = torch.tensor([0.0, 0.0]), transe.relation(torch.tensor(0)), torch.tensor([1.0, 1.0])
        >>> transe.score(head, rel, tail).item(), transe.distance2(head, rel, tail).item()  # h + r - t = (0, -1)
        (-1.0, 1.0)
    """

    name = "transe"
    normalize_entities = True

    def __init__(self, num_relations: int, dim: int) -> None:
        super().__init__(num_relations, dim)
        weight = torch.randn(num_relations, dim)
        self.weight = nn.Parameter(weight / weight.norm(dim=-1, keepdim=True))

    def relation(self, relation_ids):
        return self.weight[relation_ids]

    def transform(self, head, rel):
        return head + rel

    def adjoint(self, vec, rel):
        return vec


class DistMult(Interaction):
    """Score ``<h, r, t>`` (Yang et al. 2015); edge term ``sum_k |r_k| (h_k - sign(r_k) t_k)^2``.

    Relation vectors start as random unit vectors; entity rows are kept at unit norm.

    Args:
        num_relations: the number of relations.
        dim: the embedding width.

    Example:
        >>> import torch
        >>> from dgl_bilevel.kg import DistMult
        >>> distmult = DistMult(num_relations=1, dim=2)
        >>> head, rel, tail = torch.tensor([1.0, 2.0]), torch.tensor([1.0, -1.0]), torch.tensor([3.0, 1.0])
        >>> distmult.score(head, rel, tail).item()  # 1 * 1 * 3 + 2 * (-1) * 1
        1.0
        >>> distmult.distance2(head, rel, tail).item()  # (1 - 3)^2 + (2 + 1)^2
        13.0
    """

    name = "distmult"
    normalize_entities = True

    def __init__(self, num_relations: int, dim: int) -> None:
        super().__init__(num_relations, dim)
        weight = torch.randn(num_relations, dim)  # unit-norm rows: an all-ones start measured stuck near log 2
        self.weight = nn.Parameter(weight / weight.norm(dim=-1, keepdim=True))

    def relation(self, relation_ids):
        return self.weight[relation_ids]

    def score(self, head, rel, tail):
        return (head * rel * tail).sum(-1)

    def distance2(self, head, rel, tail):
        return (rel.abs() * (head * head + tail * tail) - 2 * head * rel * tail).sum(-1)

    def edge_grads(self, head, rel, tail):
        mag = rel.abs()
        return mag * head - rel * tail, mag * tail - rel * head

    def curvature(self, rel):
        mag = rel.abs()
        return mag, mag


class RotatE(_DistanceModel):
    """``phi_r(h) = h * exp(i theta_r)`` on interleaved (real, imag) pairs; score ``-||h * r - t||_2``
    (Sun et al. 2019).

    Args:
        num_relations: the number of relations.
        dim: real coordinates per embedding (twice the complex dimension; even).

    Raises:
        ~dgl_bilevel.errors.ConfigError: an odd ``dim``.

    Example:
        >>> import math
        >>> import torch
        >>> from dgl_bilevel.kg import RotatE
        >>> rotate = RotatE(num_relations=1, dim=2)  # one complex coordinate
        >>> with torch.no_grad():
        ...     _ = rotate.phase.fill_(math.pi / 2)  # multiply by i
        >>> rel = rotate.relation(torch.tensor(0))
        >>> head, tail = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])  # 1 and 2i
        >>> round(rotate.score(head, rel, tail).item(), 4)  # -|1 * i - 2i|
        -1.0
        >>> RotatE(num_relations=1, dim=3)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: rotate: dim counts real coordinates of complex vectors and must be even, got 3
    """

    name = "rotate"

    def __init__(self, num_relations: int, dim: int) -> None:
        if dim % 2:
            raise ConfigError(f"rotate: dim counts real coordinates of complex vectors and must be even, got {dim}")
        super().__init__(num_relations, dim)
        self.phase = nn.Parameter(2 * math.pi * torch.rand(num_relations, dim // 2))

    def relation(self, relation_ids):
        phase = self.phase[relation_ids]
        return torch.view_as_real(torch.polar(torch.ones_like(phase), phase)).flatten(-2)

    @staticmethod
    def _complex(vec: torch.Tensor) -> torch.Tensor:
        return torch.view_as_complex(vec.unflatten(-1, (-1, 2)))

    def transform(self, head, rel):
        return torch.view_as_real(self._complex(head) * self._complex(rel)).flatten(-2)

    def adjoint(self, vec, rel):  # rotation by -theta: the transpose of an orthogonal map
        return torch.view_as_real(self._complex(vec) * self._complex(rel).conj()).flatten(-2)


INTERACTIONS: dict[str, type[Interaction]] = {"transe": TransE, "distmult": DistMult, "rotate": RotatE}


def make_interaction(name: str, num_relations: int, dim: int) -> Interaction:
    """``TransE`` / ``DistMult`` / ``RotatE`` by (case-insensitive) name.

    Args:
        name: ``"transe"``, ``"distmult"`` or ``"rotate"``.
        num_relations, dim: the interaction's sizes.

    Returns:
        A freshly initialised :class:`Interaction`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown name (or bad sizes).

    Example:
        >>> from dgl_bilevel.kg import make_interaction
        >>> make_interaction("TransE", num_relations=2, dim=4)
        TransE(num_relations=2, dim=4)
        >>> make_interaction("complex", 2, 4)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.ConfigError: unknown KG model 'complex': choose one of ['distmult', 'rotate', 'transe']
    """
    key = name.lower()
    if key not in INTERACTIONS:
        raise ConfigError(f"unknown KG model {name!r}: choose one of {sorted(INTERACTIONS)}")
    return INTERACTIONS[key](num_relations, dim)
