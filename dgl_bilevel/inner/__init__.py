"""Inner problems: what is fitted on the weighted graph at every outer iteration."""
from .base import INIT_MODES, InnerProblem, LinearSystem, Params, default_adam
from .gnn import TrainedGNN
from .graph_sampling import SampledGraphs
from .label_propagation import LabelPropagation
from .laplacian import LaplacianRegularization
from .sampled import SampledGNN
from .training import run_steps, update_step

__all__ = [
    "InnerProblem",
    "LinearSystem",
    "Params",
    "INIT_MODES",
    "default_adam",
    "TrainedGNN",
    "LaplacianRegularization",
    "LabelPropagation",
    "SampledGNN",
    "SampledGraphs",
    "run_steps",
    "update_step",
]
