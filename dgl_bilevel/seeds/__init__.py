"""Seeds in one computation: ``S`` runs of one configuration share every inner solve.

Bilevel graph learning is run over many seeds, and on Cora-sized graphs per-call overhead, not
arithmetic, sets the time (docs/benchmarks.md). :func:`fit_seeds` runs one
:class:`~dgl_bilevel.outer.OuterLoop` per seed in lockstep: their inner problems are stacked into
one (:func:`stack_problems`: the graph copied ``S`` times, parameters side by side, the objective
the sum of the seeds'), solved and differentiated by the runs' own hypergradient method, and each
seed keeps its own split, structure, optimizer, selection, callbacks and checkpoint.
``dgl-bilevel run --seeds S`` does this automatically (``--stack-seeds``).
"""
from .lockstep import Lockstep, fit_seeds, why_not_lockstep
from .problems import STACKABLE, NotStackable, StackedGNN, StackedLaplacian, StackedProblem, stack_problems, why_not_stackable
from .stack import SeedStack

__all__ = [
    "fit_seeds",
    "Lockstep",
    "why_not_lockstep",
    "stack_problems",
    "why_not_stackable",
    "NotStackable",
    "StackedProblem",
    "StackedGNN",
    "StackedLaplacian",
    "STACKABLE",
    "SeedStack",
]
