"""Method presets: the names of the paper's experiments, each expanding into the separate fields.

``--method bo+g2g`` is shorthand for ``--structure g2g``; ``bo+power`` for ``--support power``;
``bo+reg`` for ``--regularizer log_degree``; ``a_obs`` and ``lp`` solve the inner problem once
on the observed graph; ``a_obs+v_out`` does too, trained on ``v_in ∪ v_out``: the honest
baseline that sees every label bilevel optimisation sees. Fields set explicitly win over the preset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .registry import METHODS

#: What the inner problem can be trained on: ``v_in`` (every method of the paper) or
#: ``v_in+v_out`` (a baseline given the labels the outer problem learns the graph on; its
#: ``v_out`` score is then a training score).
TRAINING_SETS = ("v_in", "v_in+v_out")


@dataclass(frozen=True)
class MethodPreset:
    """What a method name stands for: whether the graph is learned, the fields it sets where they
    were left unset, the fields it always sets (``lp`` *is* the label-propagation inner problem),
    and the node set the inner problem is trained on (:data:`TRAINING_SETS`).

    Presets are registered in :data:`~dgl_bilevel.registry.METHODS` under the names ``--method``
    accepts; :meth:`~dgl_bilevel.config.ExperimentConfig.resolved` applies them.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an unknown ``training_set``, or a method that learns the graph trained on
            more than ``v_in``.

    Example:
        >>> from dgl_bilevel.registry import METHODS
        >>> METHODS["bo+reg"].fields, METHODS["bo+reg"].learns_graph
        ({'structure': 'edges', 'regularizer': 'log_degree'}, True)
        >>> from dgl_bilevel.config import ExperimentConfig
        >>> ExperimentConfig(dataset="cora", method="bo+reg").resolved().regularizer
        'log_degree'
        >>> MethodPreset("the inner model on A_obs, trained on more labels", learns_graph=False,
        ...              training_set="v_in+v_out").training_set
        'v_in+v_out'
        >>> try:
        ...     MethodPreset("learned graph, outer labels in training", training_set="v_in+v_out")
        ... except ConfigError as exc:
        ...     print(str(exc)[:59])
        a method that learns the graph must train its inner problem
    """

    help: str
    learns_graph: bool = True
    fields: dict[str, Any] = field(default_factory=dict)
    requires: dict[str, Any] = field(default_factory=dict)
    training_set: str = "v_in"

    def __post_init__(self) -> None:
        if self.training_set not in TRAINING_SETS:
            raise ConfigError(f"training_set must be one of {', '.join(TRAINING_SETS)}, got {self.training_set!r}")
        if self.training_set != "v_in" and self.learns_graph:
            raise ConfigError(f"a method that learns the graph must train its inner problem on v_in only, not "
                              f"{self.training_set}: its outer loss on v_out would be a training loss")


for _name, _preset in {
    "a_obs": MethodPreset("the inner model on the observed graph (no outer learning)", learns_graph=False),
    "a_obs+v_out": MethodPreset("the inner model on the observed graph trained on V_in ∪ V_out: it sees the labels "
                                "BO sees", learns_graph=False, training_set="v_in+v_out"),
    "lp": MethodPreset("label propagation on the observed graph", learns_graph=False, requires={"inner": "lp"}),
    "bo": MethodPreset("bilevel edge refinement of the observed graph", fields={"structure": "edges"}),
    "bo+power": MethodPreset("edge refinement on the support of A^r",
                             fields={"structure": "edges", "support": "power"}),
    "bo+reg": MethodPreset("edge refinement with the log-degree regulariser",
                           fields={"structure": "edges", "regularizer": "log_degree"}),
    "bo+g2g": MethodPreset("latent graph learning: an MLP of feature differences gives the weights",
                           fields={"structure": "g2g"}),
}.items():
    METHODS.register(_name, _preset, help=_preset.help)


def preset_fields() -> frozenset:
    """The fields a method name expands into (``structure``, ``support``, ``regularizer``): a
    configuration that names another method must not keep the old method's values of these."""
    return frozenset(key for _, method in METHODS.items() for key in method.fields)


#: options that only mean something for a learned graph: a method that learns none drops a file's values
#: of these (``--config cora-best.yaml --method a_obs+v_out`` is the shipped run's honest baseline).
LEARNED_GRAPH_OPTIONS = ("refit", "cross_fit")
#: options of one structure: they follow a method's ``structure`` when another method replaces a file's.
STRUCTURE_OPTIONS = ("theta_shared",)
