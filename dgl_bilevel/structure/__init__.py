"""Outer variables: learnable edge weights on a support graph."""
from .base import GraphStructure
from .edge_weights import EdgeWeights, undirected_pair_index
from .parametrizations import Box, Parametrization, Sigmoid, Softplus, get_parametrization

__all__ = [
    "GraphStructure",
    "EdgeWeights",
    "undirected_pair_index",
    "Parametrization",
    "Sigmoid",
    "Softplus",
    "Box",
    "get_parametrization",
]
