"""The outer loop: learn a graph structure through the solution of an inner problem.

One outer iteration: weights ``w`` from the structure -> inner solution by the hypergradient
method -> predictions on every node -> outer loss on ``v_out`` (+ regulariser) -> backward
(the hypergradient) -> optimizer step on the structure's parameters. After each iteration the
four splits are scored and the graph with the best validation score is kept.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from .data.bilevel_data import SPLITS, BilevelData
from .diagnostics.profile import refined_edges
from .errors import ConfigError, NonFiniteHypergradientError
from .hypergrad import HypergradMethod, default_method, get_method
from .inner.base import InnerProblem
from .losses import task_loss
from .structure.base import GraphStructure

logger = logging.getLogger("dgl_bilevel")

Regularizer = Callable[[GraphStructure, torch.Tensor], torch.Tensor]


@dataclass
class IterationState:
    """What callbacks see after each outer iteration (before the optimizer step)."""

    iteration: int
    weights: torch.Tensor  # w used in this iteration (detached)
    hypergradient: Optional[torch.Tensor]  # dF/dw per edge (None when not finite)
    outputs: torch.Tensor  # inner predictions on every node (detached)
    record: dict
    structure: GraphStructure
    data: BilevelData


@dataclass
class FitResult:
    """Outcome of :func:`fit`: the best graph by validation score, with history."""

    best_iteration: int
    best_metrics: dict
    best_weights: torch.Tensor
    final_weights: torch.Tensor
    history: list
    support: Any  # the support DGLGraph
    config: dict
    metric: str
    stopped_early: Optional[str] = None
    extras: dict = field(default_factory=dict)

    @property
    def graph(self):
        """The support graph as a plain DGLGraph with the best weights in ``edata['w']``."""
        from ._dgl import dgl

        g = dgl.graph(self.support.edges(), num_nodes=self.support.num_nodes())
        g.edata["w"] = self.best_weights.clone()
        return g

    @property
    def seconds_per_iteration(self) -> float:
        times = sorted(r["seconds"] for r in self.history if "seconds" in r)
        return times[len(times) // 2] if times else float("nan")

    def summary(self) -> dict:
        return {
            "best_iteration": self.best_iteration,
            **{f"{split}_{self.metric}": self.best_metrics.get(split) for split in SPLITS},
            "outer_iterations": len(self.history),
            "median_seconds_per_iteration": self.seconds_per_iteration,
            "stopped_early": self.stopped_early,
        }


def evaluate(outputs: torch.Tensor, data: BilevelData) -> dict:
    """Score of every split with the data set's metric (accuracy, ROC-AUC, MSE, or OGB's Evaluator)."""
    return {split: data.score(outputs, split) for split in SPLITS}


INNER_SELECT = ("last", "best_val")


class BestInnerIterate:
    """A solve monitor that scores every inner iterate and keeps the metrics of the one with the
    best validation score -- the evaluation protocol of the paper's code ("inner early stopping").

    It only changes what is *reported*; the outer loss always uses the last inner iterate.
    """

    def __init__(self, problem: InnerProblem, weights: torch.Tensor, data: BilevelData) -> None:
        self.problem, self.weights, self.data = problem, weights.detach(), data
        self.maximize = data.metric.higher_is_better
        self.best: Optional[dict] = None

    def __call__(self, params) -> None:
        with torch.no_grad():
            metrics = evaluate(self.problem.predict(params, self.weights), self.data)
        if self.best is None or _improves(metrics["val"], self.best["val"], self.maximize):
            self.best = metrics


def solve_on_graph(
    data: BilevelData,
    inner: InnerProblem,
    weights: torch.Tensor,
    *,
    graph=None,
    hypergrad: "HypergradMethod | str | None" = None,
    seed: int = 0,
    inner_select: str = "last",
) -> tuple[dict, torch.Tensor]:
    """Solve the inner problem once on fixed weights (the ``A_obs`` baseline); returns (metrics, outputs).

    ``inner_select="best_val"`` reports the inner iterate with the best validation score
    (the paper code's protocol) instead of the last one.
    """
    graph = data.graph if graph is None else graph
    inner.bind(data, graph)
    method = default_method(inner) if hypergrad is None else get_method(hypergrad)
    generator = torch.Generator().manual_seed(seed)
    weights = weights.detach().to(data.features.dtype)
    _check_inner_select(inner_select)
    monitor = BestInnerIterate(inner, weights, data) if inner_select == "best_val" else None
    solution = method.solve(inner, weights, inner.starting_params(generator), monitor=monitor)
    with torch.no_grad():
        outputs = inner.predict(solution.params, weights).detach()
    metrics = evaluate(outputs, data)
    if monitor is not None and monitor.best is not None:
        metrics = monitor.best
    return metrics, outputs


def _check_inner_select(inner_select: str) -> None:
    if inner_select not in INNER_SELECT:
        raise ConfigError(f"inner_select must be one of {INNER_SELECT}, got {inner_select!r}")


def fit(
    data: BilevelData,
    structure: GraphStructure,
    inner: InnerProblem,
    hypergrad: "HypergradMethod | str | None" = None,
    *,
    outer_steps: int = 300,
    lr: float = 1e-2,
    optimizer: Optional[Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]] = None,
    regularizer: Optional[Regularizer] = None,
    seed: int = 0,
    callbacks: Sequence[Callable[[IterationState], None]] = (),
    checkpoint: "str | os.PathLike | None" = None,
    checkpoint_every: int = 10,
    resume: bool = False,
    progress: bool = True,
    log_every: int = 0,
    description: str = "",
    inner_select: str = "last",
) -> FitResult:
    """Learn ``structure`` by minimising the outer loss on ``v_out`` through ``inner``.

    Args:
        data: the problem (graph, features, labels, bilevel node sets).
        structure: the outer variable; the inner problem runs on ``structure.graph``.
        inner: the inner problem (bound to ``data`` and ``structure.graph`` here).
        hypergrad: a method or its name; default: the fastest exact one for ``inner``.
        outer_steps: outer iterations.
        lr: learning rate of the default outer optimizer (Adam).
        optimizer: ``params -> torch.optim.Optimizer`` to use instead.
        regularizer: ``(structure, w) -> scalar`` added to the outer loss.
        seed: seeds the inner initialisations and torch's global generator.
        callbacks: called with an :class:`IterationState` after every iteration.
        checkpoint: file for checkpoints, written every ``checkpoint_every`` iterations and
            at the end; with ``resume=True`` an existing one is continued.
        progress: show a progress bar with the outer loss and best validation score.
        log_every: log a line every this many iterations (0: never).
        inner_select: ``"last"`` scores the last inner iterate; ``"best_val"`` the inner iterate
            with the best validation score (the paper code's protocol; costs one prediction
            per inner step). The outer loss always uses the last iterate.
    """
    _check_inner_select(inner_select)
    if outer_steps < 0:
        raise ConfigError(f"outer_steps must be >= 0, got {outer_steps}")
    if structure.graph.num_nodes() != data.num_nodes:
        raise ConfigError(
            f"structure's graph has {structure.graph.num_nodes()} nodes but the data has {data.num_nodes}"
        )
    inner.bind(data, structure.graph)
    method = default_method(inner) if hypergrad is None else get_method(hypergrad)
    method.check(inner)
    structure = structure.to(data.features.dtype)
    params = [p for p in structure.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the structure has no trainable parameters")
    outer_opt = optimizer(params) if optimizer is not None else torch.optim.Adam(params, lr=lr)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    maximize = data.metric.higher_is_better
    config = {
        "data": data.name,
        "structure": type(structure).__name__,
        **inner.describe(),
        **method.describe(),
        "outer_steps": outer_steps,
        "outer_lr": lr,
        "seed": seed,
        "inner_select": inner_select,
    }

    state = _State(best_score=-math.inf if maximize else math.inf)
    with torch.no_grad():
        state.best_weights = structure().detach().clone()
    checkpoint_path = Path(checkpoint) if checkpoint is not None else None
    if resume and checkpoint_path is not None and checkpoint_path.is_file():
        state.start = _load_checkpoint(checkpoint_path, config, structure, outer_opt, inner, method, generator, state)
        logger.info("resumed from %s at outer iteration %d", checkpoint_path, state.start)

    bar = tqdm(
        total=outer_steps, initial=state.start, disable=not progress, desc=description or data.name,
        unit="it", dynamic_ncols=True, leave=True,
    )
    metric = data.metric.name
    try:
        for iteration in range(state.start, outer_steps if state.stopped is None else state.start):
            started = time.perf_counter()
            weights = structure()
            weights.retain_grad()
            monitor = BestInnerIterate(inner, weights, data) if inner_select == "best_val" else None
            solution = method.solve(inner, weights, inner.starting_params(generator), monitor=monitor)
            outputs = inner.predict(solution.params, weights)
            outer_loss = task_loss(outputs, data.labels, data.v_out, data.task)
            total = outer_loss + regularizer(structure, weights) if regularizer is not None else outer_loss
            outer_opt.zero_grad(set_to_none=True)
            metrics = evaluate(outputs.detach(), data) if monitor is None or monitor.best is None else monitor.best
            finite = bool(torch.isfinite(total))
            if finite:
                total.backward()
                finite = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)
            inner.remember(solution.params)
            record = {
                "iteration": iteration,
                "outer_loss": float(outer_loss.detach()),
                "total_loss": float(total.detach()),
                "inner_objective": solution.inner_objective,
                "refined_edges": refined_edges(weights),
                **{f"{split}_{metric}": value for split, value in metrics.items()},
                **{k: v for k, v in solution.info.items() if isinstance(v, (int, float, bool))},
            }
            improved = _improves(metrics["val"], state.best_score, maximize) or state.best_iteration < 0
            if improved:
                state.best_score = metrics["val"]
                state.best_iteration = iteration
                state.best_metrics = metrics
                state.best_weights = weights.detach().clone()
            hypergradient = weights.grad.detach() if finite and weights.grad is not None else None
            for callback in callbacks:
                callback(IterationState(iteration, weights.detach(), hypergradient, outputs.detach(), record, structure, data))
            if not finite:
                state.stopped = (
                    f"non-finite outer loss or hypergradient at outer iteration {iteration}; "
                    f"stopped and kept the best graph (iteration {state.best_iteration})"
                )
                record["seconds"] = time.perf_counter() - started
                state.history.append(record)
                logger.error(state.stopped)
                break
            outer_opt.step()
            structure.project_()
            record["seconds"] = time.perf_counter() - started
            state.history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['outer_loss']:.4f}", best_val=f"{state.best_score:.4f}", refresh=False)
            if log_every and (iteration + 1) % log_every == 0:
                bar.write(_format_record(record, metric))
            if checkpoint_path is not None and checkpoint_every and (iteration + 1) % checkpoint_every == 0:
                _save_checkpoint(checkpoint_path, config, structure, outer_opt, inner, method, generator, state)
    finally:
        bar.close()
    if checkpoint_path is not None:
        _save_checkpoint(checkpoint_path, config, structure, outer_opt, inner, method, generator, state)
    with torch.no_grad():
        final = structure().detach().clone()
    if state.best_iteration < 0:  # no iteration ran (outer_steps == 0)
        metrics, _ = solve_on_graph(data, inner, final, graph=structure.graph, hypergrad=method, seed=seed,
                                    inner_select=inner_select)
        state.best_metrics, state.best_iteration = metrics, 0
    return FitResult(
        best_iteration=state.best_iteration,
        best_metrics=state.best_metrics,
        best_weights=state.best_weights,
        final_weights=final,
        history=state.history,
        support=structure.graph,
        config=config,
        metric=metric,
        stopped_early=state.stopped,
    )


def raise_if_stopped(result: FitResult) -> None:
    """Turn an early stop into :class:`NonFiniteHypergradientError` for callers who want an exception."""
    if result.stopped_early:
        raise NonFiniteHypergradientError(result.stopped_early)


# --------------------------------------------------------------------- internals
@dataclass
class _State:
    best_score: float
    best_iteration: int = -1
    best_metrics: dict = field(default_factory=dict)
    best_weights: Optional[torch.Tensor] = None
    history: list = field(default_factory=list)
    start: int = 0
    stopped: Optional[str] = None


def _improves(value: float, best: float, maximize: bool) -> bool:
    if value != value:  # NaN: no validation set
        return False
    return value > best if maximize else value < best


def _format_record(record: dict, metric: str) -> str:
    scores = " ".join(f"{s}={record[f'{s}_{metric}']:.4f}" for s in SPLITS)
    return f"outer {record['iteration']:4d}  loss={record['outer_loss']:.4f}  {scores}  {record['seconds']:.2f}s"


def _save_checkpoint(path: Path, config, structure, outer_opt, inner, method, generator, state: _State) -> None:
    """Everything needed to continue bit for bit: parameters, optimizer, RNGs, warm starts, best graph."""
    payload = {
        "config": config,
        "next_iteration": len(state.history),
        "structure": structure.state_dict(),
        "optimizer": outer_opt.state_dict(),
        "inner": inner.state_dict(),
        "method": method.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "best": {
            "score": state.best_score,
            "iteration": state.best_iteration,
            "metrics": state.best_metrics,
            "weights": state.best_weights,
        },
        "history": state.history,
        "stopped": state.stopped,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, config, structure, outer_opt, inner, method, generator, state: _State) -> int:
    payload = torch.load(path, weights_only=False)
    saved = {k: v for k, v in payload.get("config", {}).items() if k != "outer_steps"}
    current = {k: v for k, v in config.items() if k != "outer_steps"}
    if saved != current:
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ConfigError(f"checkpoint {path} was written by a run with different settings ({', '.join(changed)}); "
                          "remove it or use a different output folder")
    structure.load_state_dict(payload["structure"])
    outer_opt.load_state_dict(payload["optimizer"])
    inner.load_state_dict(payload["inner"])
    method.load_state_dict(payload["method"])
    generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    best = payload["best"]
    state.best_score, state.best_iteration = best["score"], best["iteration"]
    state.best_metrics, state.best_weights = best["metrics"], best["weights"]
    state.history = list(payload["history"])
    state.stopped = payload.get("stopped")
    return int(payload["next_iteration"])
