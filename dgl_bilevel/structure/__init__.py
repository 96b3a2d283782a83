"""Outer variables: learnable edge weights on a support graph."""
from .base import GraphStructure
from .bernoulli import BernoulliEdges
from .edge_weights import EdgeWeights, undirected_pair_index
from .g2g import G2G
from .parametrizations import Box, Parametrization, Sigmoid, Softplus, get_parametrization
from .sampling import GraphSampler
from .support import knn_neighbours, knn_support, observed_knn_support, power_support
from .topk import TopKEdges

__all__ = [
    "GraphStructure",
    "EdgeWeights",
    "G2G",
    "TopKEdges",
    "BernoulliEdges",
    "GraphSampler",
    "observed_knn_support",
    "knn_neighbours",
    "power_support",
    "knn_support",
    "undirected_pair_index",
    "Parametrization",
    "Sigmoid",
    "Softplus",
    "Box",
    "get_parametrization",
]
