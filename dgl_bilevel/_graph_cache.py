"""What the library derives from a graph's edges, kept on that graph.

Sparse index structures, the reverse graph and the like are built once per graph and reused
across outer iterations. They live in one :class:`GraphCache` stored on the ``DGLGraph`` object
itself (not in a module-level map keyed by the graph), so they live and die with the graph and
can never serve another one -- two same-size graphs included.
"""
from __future__ import annotations

import weakref
from typing import Any

#: The graph attribute that holds its :class:`GraphCache`.
ATTRIBUTE = "_dgl_bilevel_cache"


def _nobody() -> None:
    """The owner of a cache that belongs to no graph (unpickled, deep-copied)."""
    return None


class GraphCache:
    """Per-graph structures, each filled on first use by the module that owns it (``None`` until then).

    Belongs to one graph object: a shallow copy of the graph (``copy.copy``, DGL's ``local_var``,
    ``astype``, ...) shares its ``__dict__`` but not its cache (:func:`graph_cache` sees the owner
    differ and starts a fresh one). Pickled or deep-copied, it travels empty.
    """

    __slots__ = ("_owner", "csr", "laplacian", "topology", "self_looped", "edges_checked")

    def __init__(self, owner: Any = None) -> None:
        # a weak back-reference: a strong one would make a graph <-> cache cycle that only the GC frees
        self._owner = _nobody if owner is None else weakref.ref(owner)
        self.csr: Any = None  # ops._CSRPlan: CSR structures of A^T and A
        self.laplacian: Any = None  # ops._LaplacianPlan: CSR structure of L_s
        self.topology: Any = None  # energy._graph_ops._Topology: reverse graph, self-loops, reverse pairing
        self.self_looped: Any = None  # energy.twirls.with_self_loops: (graph with one loop per node, kept edges, E)
        self.edges_checked = False  # data.bilevel_data: its edge anomalies were reported

    def __reduce__(self) -> tuple:
        return (GraphCache, ())  # travels empty: rebuilt where the graph lands

    def __deepcopy__(self, memo: dict) -> "GraphCache":
        return GraphCache()


def graph_cache(graph: Any) -> GraphCache:
    """The :class:`GraphCache` of ``graph`` (a ``DGLGraph`` or block), created on first use."""
    cache = graph.__dict__.get(ATTRIBUTE)
    if cache is None or cache._owner() is not graph:  # made for another object (a copy's)
        cache = GraphCache(graph)
        setattr(graph, ATTRIBUTE, cache)
    return cache
