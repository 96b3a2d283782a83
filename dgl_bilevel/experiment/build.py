"""Turning a resolved configuration into the pipeline's objects, through the registries, and the
objects into an outer loop (:func:`build_loop`: the one place a configuration becomes a run)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from ..data.bilevel_data import BilevelData
from ..hypergrad import HypergradMethod, default_method_name
from ..inner.base import InnerProblem
from ..outer import OuterLoop
from ..outer.callbacks import CallbackLike, LogLines, ProgressBar
from ..outer.loggers import seed_loggers
from ..registry import HYPERGRADIENTS, INNER_PROBLEMS, REGULARIZERS, STRUCTURES, SUPPORTS
from ..structure import GraphStructure
from ..config import ExperimentConfig
from ..errors import ConfigError
from .seed_files import run_data


def build_inner(config: ExperimentConfig, data: BilevelData) -> InnerProblem:
    """The inner problem ``config.inner`` names (not yet bound: :func:`~dgl_bilevel.fit` binds it once).

    Args:
        config: a resolved configuration (``config.resolved()``): its ``inner`` and that problem's settings.
        data: the data set it will learn on (sets the model's input and output widths).

    Returns:
        A fresh :class:`~dgl_bilevel.inner.base.InnerProblem` from the ``INNER_PROBLEMS`` registry.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if no inner problem is registered under ``config.inner``.

    Example:
        >>> from dgl_bilevel.experiment import run_data
        >>> config = ExperimentConfig(dataset="cheaters", inner_steps=3).resolved()
        >>> data = run_data(config, seed=0)
        >>> inner = build_inner(config, data)
        >>> inner.describe()["problem"], inner.describe()["model"], inner.steps
        ('TrainedGNN', 'SumAggGNN', 3)
        >>> laplacian = ExperimentConfig(dataset="cheaters", inner="laplacian").resolved()
        >>> build_inner(laplacian, data).describe()["problem"]
        'LaplacianRegularization'
    """
    return INNER_PROBLEMS.from_config(config.inner, config, data)


def build_hypergrad(config: ExperimentConfig, inner: InnerProblem) -> HypergradMethod:
    """``config.hypergrad``, or the fastest exact method for ``inner`` when none is named.

    Args:
        config: a resolved configuration: ``hypergrad`` (None: the default for ``inner``) and the
            options the method was registered with (``truncate_k``, ``reverse_engine``, ...).
        inner: the inner problem the method will differentiate.

    Returns:
        a :class:`~dgl_bilevel.hypergrad.HypergradMethod`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: an explicit ``reverse_engine`` for a method that
            differentiates no trajectory.

    Example:
        >>> from dgl_bilevel.experiment import run_data
        >>> config = ExperimentConfig(dataset="cheaters", inner_steps=3).resolved()
        >>> data = run_data(config, seed=0)
        >>> build_hypergrad(config, build_inner(config, data)).describe()
        {'hypergrad': 'unrolled', 'reverse': 'auto'}
        >>> truncated = ExperimentConfig(dataset="cheaters", hypergrad="truncated", truncate_k=2).resolved()
        >>> build_hypergrad(truncated, build_inner(truncated, data)).describe()
        {'hypergrad': 'truncated', 'k': 2, 'reverse': 'auto'}
    """
    name = config.hypergrad or default_method_name(inner)
    if config.reverse_engine != "auto" and "reverse" not in (HYPERGRADIENTS.entry(name).options or {}):
        raise ConfigError(f"--reverse-engine {config.reverse_engine} chooses how unrolled and truncated hypergradients "
                          f"differentiate the inner trajectory; the {name} hypergradient (the default for "
                          f"{type(inner).__name__}) differentiates none: give --hypergrad unrolled or truncated")
    return HYPERGRADIENTS.from_config(name, config)


def build_support(config: ExperimentConfig, data: BilevelData):
    """The graph whose edges are learned: the observed one, ``A^r``, or a k-NN graph.

    Args:
        config: a resolved configuration: its ``support`` (``bo+power`` sets ``"power"``) and that
            support's settings.
        data: the data set whose observed graph (or features, for k-NN) the support is built from.

    Returns:
        A DGLGraph on ``data``'s nodes (its edges are the structure's parameters).

    Raises:
        ~dgl_bilevel.errors.ConfigError: if no support is registered under ``config.support``.

    Example:
        >>> from dgl_bilevel.experiment import run_data
        >>> config = ExperimentConfig(dataset="cheaters").resolved()
        >>> data = run_data(config, seed=0)
        >>> build_support(config, data).num_edges() == data.graph.num_edges()  # "observed"
        True
        >>> power = ExperimentConfig(dataset="cheaters", method="bo+power").resolved()
        >>> power.support, build_support(power, data).num_edges() > data.graph.num_edges()
        ('power', True)
    """
    return SUPPORTS.from_config(config.support, config, data)


def build_structure(config: ExperimentConfig, data: BilevelData, seed: int, support=None) -> GraphStructure:
    """The outer variable on its support (``build_support``'s unless given: runs on the same graph
    share one), initialised from a generator seeded by ``seed``.

    Args:
        config: a resolved configuration: its ``structure`` and that structure's settings.
        data: the data set the structure is learned on.
        seed: the run's seed; the initialisation draws from ``torch.Generator().manual_seed(10_000 + seed)``,
            so one seed always starts from the same weights.
        support: the support graph; default: :func:`build_support`'s.

    Returns:
        A :class:`~dgl_bilevel.structure.GraphStructure`; calling it gives the ``[E]`` edge weights.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if no structure is registered under ``config.structure``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.experiment import run_data
        >>> config = ExperimentConfig(dataset="cheaters").resolved()
        >>> data = run_data(config, seed=0)
        >>> structure = build_structure(config, data, seed=0)
        >>> type(structure).__name__, tuple(structure().shape)
        ('EdgeWeights', (3178,))
        >>> torch.equal(structure(), build_structure(config, data, seed=0)())  # same seed, same start
        True
        >>> torch.equal(structure(), build_structure(config, data, seed=1)())
        False
        >>> support = build_support(config, data)
        >>> build_structure(config, data, seed=1, support=support).graph is support
        True
    """
    generator = torch.Generator().manual_seed(10_000 + seed)
    support = build_support(config, data) if support is None else support
    return STRUCTURES.from_config(config.structure, config, data, support, generator=generator)


def build_regularizer(config: ExperimentConfig):
    """The outer-loss regulariser, or None.

    Args:
        config: a resolved configuration: its ``regularizer`` (``bo+reg`` sets ``"log_degree"``) and
            that regulariser's settings.

    Returns:
        A ``(structure, weights) -> scalar`` added to the outer loss, or None for ``"none"``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if no regulariser is registered under ``config.regularizer``.

    Example:
        >>> build_regularizer(ExperimentConfig(dataset="cheaters").resolved()) is None
        True
        >>> build_regularizer(ExperimentConfig(dataset="cheaters", method="bo+reg").resolved())
        LogDegree(gamma=1.0, reduction='mean')
    """
    return REGULARIZERS.from_config(config.regularizer, config)


class _SeedLines:
    """Where a seed's log lines go when it has no progress bar of its own: above the bars, prefixed with the seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def write(self, line: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(f"seed {self.seed}: {line}")


def build_loop(
    config: ExperimentConfig,
    seed: int,
    *,
    data: Optional[BilevelData] = None,
    support=None,
    callbacks: Sequence[CallbackLike] = (),
    run_dir: Optional[Path] = None,
    progress_bar: Optional[str] = None,
    log_every: int = 0,
) -> OuterLoop:
    """The outer loop of one seed of a resolved ``config``: the one place a configuration becomes a run
    (``run``, stacked seeds, ``tune``, ``scarcity`` and cross-fitting all build theirs here).

    Args:
        data: what it learns on; default: :func:`~dgl_bilevel.experiment.run_data` (the seed's split,
            as a run of ``config`` sees it).
        support: the structure's support graph; default: built from ``config`` (runs on one graph may share one).
        callbacks: called first after every iteration, in order.
        run_dir: the seed's logger (``config.logger``) writes under it; None: no logger.
        progress_bar: the description of the loop's own progress bar (shown when ``config.progress``);
            None: no bar of its own (:func:`~dgl_bilevel.seeds.fit_seeds` shows one over all its loops).
        log_every: a line of scores every this many iterations, through the bar, or above the bars
            prefixed with the seed when the loop has none; 0: never.

    Example:
        >>> config = ExperimentConfig(dataset="cheaters", outer_steps=2, inner_steps=3).resolved()
        >>> loop = build_loop(config, seed=0)
        >>> loop.outer_steps, loop.config["seed"]
        (2, 0)
    """
    data = run_data(config, seed) if data is None else data
    inner = build_inner(config, data)
    structure = build_structure(config, data, seed, support)
    method = build_hypergrad(config, inner)
    watchers: list[CallbackLike] = [*callbacks, *(seed_loggers(config, seed, run_dir) if run_dir is not None else [])]
    bar = ProgressBar(progress_bar, enabled=config.progress) if progress_bar is not None else None
    if bar is not None:
        watchers.append(bar)
    if log_every:
        watchers.append(LogLines(log_every, data.metric.name, bar if bar is not None else _SeedLines(seed)))
    return OuterLoop(data, structure, inner, method, outer_steps=config.outer_steps, lr=config.outer_lr,
                     regularizer=build_regularizer(config), seed=seed, inner_select=config.inner_select,
                     callbacks=watchers)
