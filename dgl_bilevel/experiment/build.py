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
