"""Turning a resolved configuration into the pipeline's objects, through the registries."""
from __future__ import annotations

import torch

from ..data.bilevel_data import BilevelData
from ..hypergrad import HypergradMethod, default_method_name
from ..inner.base import InnerProblem
from ..registry import HYPERGRADIENTS, INNER_PROBLEMS, REGULARIZERS, STRUCTURES, SUPPORTS
from ..structure import GraphStructure
from ..config import ExperimentConfig
from ..errors import ConfigError


def build_inner(config: ExperimentConfig, data: BilevelData) -> InnerProblem:
    """The inner problem ``config.inner`` names (not yet bound: :func:`~dgl_bilevel.fit` binds it once)."""
    return INNER_PROBLEMS.from_config(config.inner, config, data)


def build_hypergrad(config: ExperimentConfig, inner: InnerProblem) -> HypergradMethod:
    """``config.hypergrad``, or the fastest exact method for ``inner`` when none is named."""
    name = config.hypergrad or default_method_name(inner)
    if config.reverse_engine != "auto" and "reverse" not in (HYPERGRADIENTS.entry(name).options or {}):
        raise ConfigError(f"--reverse-engine {config.reverse_engine} chooses how unrolled and truncated hypergradients "
                          f"differentiate the inner trajectory; the {name} hypergradient (the default for "
                          f"{type(inner).__name__}) differentiates none: give --hypergrad unrolled or truncated")
    return HYPERGRADIENTS.from_config(name, config)


def build_support(config: ExperimentConfig, data: BilevelData):
    """The graph whose edges are learned: the observed one, ``A^r``, or a k-NN graph."""
    return SUPPORTS.from_config(config.support, config, data)


def build_structure(config: ExperimentConfig, data: BilevelData, seed: int, support=None) -> GraphStructure:
    """The outer variable on its support (``build_support``'s unless given: runs on the same graph
    share one), initialised from a generator seeded by ``seed``."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    support = build_support(config, data) if support is None else support
    return STRUCTURES.from_config(config.structure, config, data, support, generator=generator)


def build_regularizer(config: ExperimentConfig):
    """The outer-loss regulariser, or None."""
    return REGULARIZERS.from_config(config.regularizer, config)
