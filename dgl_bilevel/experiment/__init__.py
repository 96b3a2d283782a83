"""From a flat configuration to results on disk: what the CLI and the recipes run.

A configuration names the data set, the inner problem, the method (``a_obs``/``lp``: a fixed
graph; ``bo``, ``bo+power``, ``bo+reg``, ``bo+g2g``: learning the graph) and their options.
Each seed gets its own split, edge initialisation and inner initialisations; results go to
``<out>/<run name>/``.
"""
from .build import build_hypergrad, build_inner, build_regularizer, build_structure, build_support
from .config import (
    FIXED_GRAPH_METHODS, G2G_SUPPORTS, INNER_CHOICES, METHOD_CHOICES, PRESETS, ExperimentConfig, check_device, preset,
)
from .leaderboard import run_leaderboard
from .run import run_experiment, run_seed, versions
from .scarcity import ScarcitySnapshot, run_scarcity, scarcity_snapshot

__all__ = [
    "ExperimentConfig", "PRESETS", "preset", "check_device", "INNER_CHOICES", "METHOD_CHOICES",
    "FIXED_GRAPH_METHODS", "G2G_SUPPORTS", "build_inner", "build_hypergrad", "build_structure", "build_support",
    "build_regularizer", "run_seed", "run_experiment", "run_leaderboard", "versions", "ScarcitySnapshot",
    "scarcity_snapshot", "run_scarcity",
]
