"""BloomGML-style energies on DGL graphs: GNN layers as descent steps on a lower-level energy. ::

    E(Y) = sum_i kappa(||y_i - f_theta(x_i)||^2) + lam * 1/2 sum_e a_e rho(||delta_e(Y)||^2) + h(Y)

* :class:`Energy` -- the energy (penalties from :mod:`.penalties`, ``h`` from :mod:`.nonsmooth`,
  normalised or unnormalised Laplacian term from :mod:`.graph_terms`);
* :class:`EnergyLayer` -- ``K`` unfolded steps (:data:`STEP_RULES`: gradient, preconditioned,
  proximal, momentum, nesterov, irls) as a DGL-style ``forward(graph, feat, edge_weight=None)``;
  :func:`build_layer` by name; :class:`EnergyGNN` -- MLP + layer, a model for ``TrainedGNN``;
* :func:`minimize_quadratic` -- the exact minimiser of quadratic energies (Jacobi-CG);
* :class:`TWIRLSPropagation` -- DGL's TWIRLS propagation with edge weights;
  :func:`appnp_layer`, :func:`label_propagation_layer` -- classic rules as energy layers;
* :class:`GraphRegularizedMLP` -- the graph term as a training regulariser, graph-free inference.

The paper's full text was not available: this is our interpretation (docs/bloomgml.md).
"""
from . import penalties
from .energy import BoundEnergy, Energy, Surrogate
from .graph_terms import BoundGraphTerm, GraphTerm, GraphWeights, LaplacianTerm
from .layers import MLP, EnergyGNN, EnergyLayer, build_layer
from .minimize import minimize_quadratic
from .nonsmooth import L1, NONSMOOTH_TERMS, NonNegative, NonSmoothTerm, NoTerm, make_nonsmooth
from .penalties import PENALTIES, Cauchy, Huber, Lp, Penalty, Quadratic, Truncated, Welsch, make_penalty
from .regularized_mlp import GraphRegularizedMLP
from .special_cases import appnp_layer, label_propagation_lam, label_propagation_layer
from .steps import (STEP_RULES, GradientStep, IRLSStep, MomentumStep, NesterovStep, PreconditionedStep, ProximalStep,
                    StepRule, make_step_rule)
from .twirls import TWIRLSPropagation, with_self_loops

__all__ = [
    "penalties", "Energy", "BoundEnergy", "Surrogate",
    "GraphTerm", "BoundGraphTerm", "GraphWeights", "LaplacianTerm",
    "EnergyLayer", "EnergyGNN", "MLP", "build_layer", "minimize_quadratic",
    "NonSmoothTerm", "NoTerm", "NonNegative", "L1", "NONSMOOTH_TERMS", "make_nonsmooth",
    "Penalty", "Quadratic", "Huber", "Lp", "Cauchy", "Welsch", "Truncated", "PENALTIES", "make_penalty",
    "GraphRegularizedMLP", "appnp_layer", "label_propagation_layer", "label_propagation_lam",
    "StepRule", "GradientStep", "ProximalStep", "PreconditionedStep", "IRLSStep", "MomentumStep", "NesterovStep",
    "STEP_RULES", "make_step_rule", "TWIRLSPropagation", "with_self_loops",
]
