"""dgl_bilevel: bilevel graph learning for DGL.

Learn the weights of a graph's edges (or a model that outputs them) in an outer problem,
through the solution of an inner problem -- a GNN trained by a differentiable optimizer, or
Laplacian regularisation / label propagation solved exactly -- with exact hypergradients::

    import dgl_bilevel as dbl
    data = dbl.data.cora("../shared/data")
    structure = dbl.EdgeWeights(data.graph)
    inner = dbl.TrainedGNN(dbl.models.SumAggGNN(data.num_features, 16, data.num_classes))
    result = dbl.fit(data, structure, inner, hypergrad="unrolled", outer_steps=100)
    result.graph  # a DGLGraph with the learned weights in edata['w']

Names are imported on first use (PEP 562), so ``import dgl_bilevel.errors`` or the command
line's ``--help`` do not pay for importing torch and DGL.
"""
from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "BilevelData": "data",
    "BilevelError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "NonFiniteHypergradientError": "errors",
    "EdgeWeights": "structure",
    "G2G": "structure",
    "BernoulliEdges": "structure",
    "GraphSampler": "structure",
    "observed_knn_support": "structure",
    "GraphStructure": "structure",
    "power_support": "structure",
    "knn_support": "structure",
    "LogDegree": "outer",
    "TrainedGNN": "inner",
    "LaplacianRegularization": "inner",
    "LabelPropagation": "inner",
    "SampledGNN": "inner",
    "SampledGraphs": "inner",
    "Unrolled": "hypergrad",
    "Truncated": "hypergrad",
    "FirstOrder": "hypergrad",
    "Implicit": "hypergrad",
    "Adjoint": "hypergrad",
    "custom_root": "hypergrad",
    "fit": "outer",
    "fit_loop": "outer",
    "OuterLoop": "outer",
    "solve_on_graph": "outer",
    "evaluate": "outer",
    "validation_gate": "outer",
    "FitResult": "outer",
    "IterationState": "outer",
    "Callback": "outer",
    "TensorBoardLogger": "outer",
    "CsvLogger": "outer",
    "raise_if_stopped": "outer",
    "ExperimentConfig": "config",
    "DifferentiableSolver": "combinatorial",
    "Energy": "energy",
    "EnergyLayer": "energy",
    "EnergyGNN": "energy",
    "GraphRegularizedMLP": "energy",
    "Metric": "losses",
}
_SUBMODULES = ("data", "diagnostics", "hypergrad", "models", "outer", "combinatorial", "inner", "structure",
               "registry", "config", "ops", "losses", "experiment", "energy", "kg", "layers", "robust")

__all__ = ["__version__", *_SUBMODULES[:6], *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name == "dgl":  # kept importable for old callers; not part of the API
        value = importlib.import_module("._dgl", __name__).dgl
    else:
        raise AttributeError(f"module 'dgl_bilevel' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
