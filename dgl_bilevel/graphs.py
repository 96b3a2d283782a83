"""Structural graph utilities (connectivity, hop distances) computed with scipy's csgraph."""
from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse import csgraph

from ._dgl import dgl


def adjacency(graph: "dgl.DGLGraph", edge_mask: Optional[torch.Tensor] = None, symmetric: bool = True) -> sp.csr_matrix:
    """The 0/1 scipy adjacency of ``graph`` (optionally only edges in ``edge_mask``), symmetrised."""
    src, dst = graph.edges()
    if edge_mask is not None:
        src, dst = src[edge_mask], dst[edge_mask]
    n = graph.num_nodes()
    a = sp.coo_matrix((np.ones(src.numel(), dtype=np.int8), (src.numpy(), dst.numpy())), shape=(n, n)).tocsr()
    if symmetric:
        a = (a + a.T).tocsr()
    a.data[:] = 1
    return a


def reachable_from(graph: "dgl.DGLGraph", seeds: torch.Tensor, edge_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Boolean mask of nodes in a connected component (edges taken undirected) holding a seed."""
    _, component = csgraph.connected_components(adjacency(graph, edge_mask), directed=False)
    component = torch.from_numpy(component)
    seeded = torch.zeros(int(component.max()) + 1, dtype=torch.bool)
    seeded[component[seeds]] = True
    return seeded[component]
