"""Inner problem: a BloomGML energy model -- an MLP ``f_theta`` followed by ``K`` descent steps on
the energy ``E(Y)`` over the learned graph (:class:`~dgl_bilevel.energy.EnergyGNN`) -- trained on
``v_in``.

The outer problem learns the edge weights ``a_ij`` of the energy's graph term. The ``K`` steps
are ordinary differentiable layers, so every hypergradient method applies: unrolled through the
inner training and the steps, truncated, or implicit at the trained ``theta``. With ``K``
steps the model's receptive field is ``K`` hops, so (paper Thm III.3) edges farther than ``K``
hops from ``V_in ∪ V_out`` get exactly zero hypergradient; as ``K`` grows the output approaches
the energy's minimiser, whose receptive field is the whole component and whose hypergradient
decays with distance instead (docs/bloomgml.md, "Bilevel training and gradient scarcity").
"""
from __future__ import annotations

from ..energy import EnergyGNN
from ..registry import INNER_PROBLEMS
from .base import optimizer_from_config
from .gnn import TrainedGNN


def energy_model_from_config(config, data) -> EnergyGNN:
    """The :class:`~dgl_bilevel.energy.EnergyGNN` an experiment configuration describes."""
    return EnergyGNN(data.num_features, config.hidden, data.out_dim, steps=config.energy_steps,
                     step_rule=config.energy_step, penalty=config.penalty, lam=config.energy_lam,
                     normalize=config.energy_normalize, num_layers=config.layers, dropout=config.inner_dropout)


@INNER_PROBLEMS.register("energy", help="an MLP and K descent steps on a BloomGML energy, trained on v_in "
                                        "(--energy-steps, --energy-step, --penalty, --energy-lam)")
class EnergyInner(TrainedGNN):
    """:class:`TrainedGNN` of an :class:`~dgl_bilevel.energy.EnergyGNN` (see the module docstring)."""

    config_options = frozenset({"inner_steps", "inner_lr", "inner_optimizer", "inner_init", "hidden", "layers",
                                "weight_decay", "energy_steps", "energy_step", "penalty", "energy_lam",
                                "energy_normalize", "inner_dropout"})  # what from_config reads (the model is EnergyGNN: no --model)

    @classmethod
    def from_config(cls, config, data) -> "EnergyInner":
        return cls(energy_model_from_config(config, data), steps=config.inner_steps, lr=config.inner_lr,
                   optimizer=optimizer_from_config(config), weight_decay=config.weight_decay,
                   init=config.inner_init, train_mode=config.inner_dropout > 0)
