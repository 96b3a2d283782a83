"""The outer problem: the loop that learns a structure, selection by validation, checkpoints,
results, callbacks (experiment logs for TensorBoard or as CSV among them) and regularisers of the outer loss."""
from .callbacks import Callback, IterationState, LogLines, ProgressBar, RefinedEdgeCount, format_record
from .loggers import CsvLogger, RunLogger, TensorBoardLogger
from .loop import OuterLoop, fit, fit_loop, solve_on_graph
from .regularizers import LogDegree, Regularizer
from .result import FitResult, raise_if_stopped
from .gate import GateDecision, validation_gate
from .selection import INNER_SELECT, BestInnerIterate, BestValidation, evaluate
from .state import OuterState

__all__ = [
    "fit",
    "fit_loop",
    "solve_on_graph",
    "OuterLoop",
    "OuterState",
    "IterationState",
    "FitResult",
    "raise_if_stopped",
    "evaluate",
    "BestValidation",
    "BestInnerIterate",
    "validation_gate",
    "GateDecision",
    "INNER_SELECT",
    "Callback",
    "ProgressBar",
    "LogLines",
    "RefinedEdgeCount",
    "format_record",
    "RunLogger",
    "TensorBoardLogger",
    "CsvLogger",
    "LogDegree",
    "Regularizer",
]
