"""Seeded helpers that carve bilevel node sets out of existing splits."""
from __future__ import annotations

import torch

from ..errors import DataError


def split_in_two(nodes: torch.Tensor, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``nodes`` at random into ``(first, rest)`` with ``round(fraction * len)`` in ``first``.

    The paper splits the Planetoid validation set in half into ``v_out`` and validation;
    OGB-compliant runs take ``v_out`` out of the training split the same way.

    Args:
        nodes: node ids (any shape; flattened).
        fraction: the share that goes to ``first``, strictly between 0 and 1.
        generator: draws the permutation (see :func:`seeded_generator`).

    Returns:
        ``(first, rest)``, each sorted, together holding every node once.

    Raises:
        ~dgl_bilevel.errors.DataError: if ``fraction`` is outside (0, 1) or leaves one side empty.

    Example:
        >>> import torch
        >>> from dgl_bilevel.data import seeded_generator, split_in_two
        >>> first, rest = split_in_two(torch.arange(10), 0.3, seeded_generator(0))
        >>> first.numel(), rest.numel(), sorted(first.tolist() + rest.tolist()) == list(range(10))
        (3, 7, True)
        >>> torch.equal(first, split_in_two(torch.arange(10), 0.3, seeded_generator(0))[0])
        True
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"fraction must be in (0, 1), got {fraction}")
    nodes = torch.as_tensor(nodes).flatten()
    k = int(round(fraction * nodes.numel()))
    if k == 0 or k == nodes.numel():
        raise DataError(f"splitting {nodes.numel()} nodes with fraction {fraction} leaves one side empty")
    perm = torch.randperm(nodes.numel(), generator=generator)
    return nodes[perm[:k]].sort().values, nodes[perm[k:]].sort().values


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: every random choice in data loading goes through one.

    Args:
        seed: the seed (cast to ``int``).

    Returns:
        A new ``torch.Generator`` on the CPU.

    Example:
        >>> import torch
        >>> from dgl_bilevel.data import seeded_generator
        >>> a = torch.rand(3, generator=seeded_generator(7))
        >>> torch.equal(a, torch.rand(3, generator=seeded_generator(7)))
        True
    """
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen
