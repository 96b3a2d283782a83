"""From a configuration to results on disk: what the CLI and the recipes run.

A configuration (:class:`~dgl_bilevel.config.ExperimentConfig`) names the data set, the method
preset (``a_obs``/``lp``: a fixed graph; ``a_obs+v_out``: a fixed graph, trained on ``v_in ∪ v_out``;
``bo``, ``bo+power``, ``bo+reg``, ``bo+g2g``: learning the graph), the stages and their options. Each
seed gets its own split, edge initialisation and inner initialisations; results go to
``<out>/<run name>/``.
"""
from ..config import PRESETS, ExperimentConfig, check_device, preset
from .handover import confirmed_choice, handed_over_graph
from .build import build_hypergrad, build_inner, build_loop, build_regularizer, build_structure, build_support
from .leaderboard import run_leaderboard
from ..methods import MethodPreset
from .run import run_data, run_experiment, run_experiments, run_seed, training_view, versions
from .scarcity import ScarcitySnapshot, run_scarcity, scarcity_snapshot

__all__ = [
    "ExperimentConfig", "PRESETS", "preset", "check_device", "MethodPreset", "build_inner", "build_hypergrad",
    "build_structure", "build_support", "build_regularizer", "build_loop", "run_data", "training_view", "run_seed", "run_experiment", "run_experiments",
    "run_leaderboard", "versions", "handed_over_graph", "confirmed_choice", "ScarcitySnapshot", "scarcity_snapshot", "run_scarcity",
]
