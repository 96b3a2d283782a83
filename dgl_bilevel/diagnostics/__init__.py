"""Seeing gradient scarcity: hop distances, hypergradient-vs-distance profiles, refined edges,
the Laplacian decay bound, and callbacks that record them during a run."""
from .distances import UNREACHABLE, edge_distances, hop_distances
from .edge_stats import edge_statistics, roc_auc
from .laplacian_bound import LaplacianBound, laplacian_bound
from .profile import ProfileRow, format_profile, hypergradient_profile, refined_edges
from .recorder import ScarcityRecorder

__all__ = [
    "UNREACHABLE",
    "hop_distances",
    "edge_distances",
    "ProfileRow",
    "hypergradient_profile",
    "format_profile",
    "refined_edges",
    "LaplacianBound",
    "laplacian_bound",
    "ScarcityRecorder",
    "edge_statistics",
    "roc_auc",
]
