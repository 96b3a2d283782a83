"""From a flat configuration to results on disk: what the CLI and the recipes run.

A configuration names the data set, the inner problem, the method (``a_obs``: the inner model
on the observed graph; ``bo``: bilevel edge refinement) and their options. Options left at
``None`` take the paper's settings for that data set (:data:`PRESETS`). Each seed gets its own
split, edge initialisation and inner initialisations; results go to ``<out>/<run name>/``.
"""
from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from . import __version__
from ._dgl import dgl
from .data import load_dataset
from .data.bilevel_data import BilevelData
from .errors import ConfigError
from .hypergrad import METHODS as HYPERGRAD_METHODS
from .hypergrad import HypergradMethod, default_method, get_method
from .inner import LaplacianRegularization, TrainedGNN
from .inner.base import InnerProblem
from .models import MODELS, build_model
from .results import aggregate, results_table, write_json
from .regularizers import LogDegree
from .structure import EdgeWeights, GraphStructure
from .structure.g2g import G2G
from .structure.support import knn_support, power_support
from .trainer import FitResult, fit, solve_on_graph

INNER_CHOICES = ("gnn", "laplacian")
METHOD_CHOICES = ("a_obs", "bo", "bo+power", "bo+reg", "bo+g2g")
G2G_SUPPORTS = ("observed", "power", "knn")

#: The paper's settings per data set (DESIGN.md section 3); ``None`` options fall back to these.
PRESETS: dict[str, dict[str, Any]] = {
    "cora": {
        "gnn": {"inner_steps": 100, "inner_lr": 1e-2, "hidden": 16, "outer_lr": 1e-2, "outer_steps": 200},
        "laplacian": {"inner_steps": 500, "inner_lr": 1e-2, "outer_lr": 1e-2, "outer_steps": 200},
    },
    "cheaters": {
        "gnn": {"inner_steps": 200, "inner_lr": 1e-2, "hidden": 8, "outer_lr": 1e-2, "outer_steps": 150,
                "parametrization": "box", "edge_scale": 1e-5},
        "laplacian": {"inner_steps": 500, "inner_lr": 1e-2, "outer_lr": 1e-2, "outer_steps": 150,
                      "parametrization": "box", "edge_scale": 1e-5},
    },
    "synthetic1": {
        "laplacian": {"inner_steps": 500, "inner_lr": 10.0, "outer_lr": 0.1, "outer_steps": 150},
        "gnn": {"inner_steps": 200, "inner_lr": 1e-2, "hidden": 16, "outer_lr": 1e-2, "outer_steps": 150},
    },
}

FALLBACK = {"inner_steps": 100, "inner_lr": 1e-2, "hidden": 16, "outer_lr": 1e-2, "outer_steps": 200,
            "g2g_hidden": 32, "g2g_layers": 1, "g2g_scale": 1.0}

#: Per data set and inner problem, what G2G changes (paper: outer lr 1e-4 with a GNN and 1e-3 with
#: the Laplacian on Cora, 1e-3 on cheaters; G2G 32 wide x 1 layer on Cora, 16 x 2 on cheaters).
G2G_PRESETS: dict[str, dict[str, Any]] = {
    "cora": {"gnn": {"outer_lr": 1e-4}, "laplacian": {"outer_lr": 1e-3}},
    "cheaters": {"gnn": {"outer_lr": 1e-3, "g2g_hidden": 16, "g2g_layers": 2, "g2g_scale": 1e-5},
                 "laplacian": {"outer_lr": 1e-3, "g2g_hidden": 16, "g2g_layers": 2, "g2g_scale": 1e-5}},
}


def preset(dataset: str, inner: str, method: str) -> dict[str, Any]:
    """The paper's settings for this data set, inner problem and method."""
    family = dataset.split("-")[0]
    values = {**FALLBACK, **PRESETS.get(family, {}).get(inner, {})}
    if method == "bo+g2g":
        values.update(G2G_PRESETS.get(family, {}).get(inner, {}))
    return values


@dataclass
class ExperimentConfig:
    """Every option of a run; ``None`` means "the preset for this data set"."""

    dataset: str = "cora"
    inner: str = "gnn"
    method: str = "bo"
    seeds: int = 1
    seed_start: int = 0
    data_root: Optional[str] = None
    out: str = "results"
    name: Optional[str] = None
    # outer problem
    outer_steps: Optional[int] = None
    outer_lr: Optional[float] = None
    parametrization: Optional[str] = None
    edge_init: str = "uniform"
    edge_scale: Optional[float] = None
    tie_undirected: bool = False
    # inner problem
    inner_steps: Optional[int] = None
    inner_lr: Optional[float] = None
    inner_init: str = "fresh"
    model: str = "sumagg"
    hidden: Optional[int] = None
    layers: int = 2
    weight_decay: float = 5e-4
    lam: Optional[float] = None
    laplacian_loss: str = "auto"
    # mitigations
    power: int = 2
    power_budget: int = 5_000_000
    reg_gamma: float = 1.0
    reg_reduction: str = "mean"
    g2g_hidden: Optional[int] = None
    g2g_layers: Optional[int] = None
    g2g_dropout: float = 0.5
    g2g_scale: Optional[float] = None
    g2g_support: str = "observed"
    knn_k: int = 10
    # hypergradient
    hypergrad: Optional[str] = None
    truncate_k: int = 10
    unroll_checkpoint: bool = True
    implicit_solver: str = "cg"
    cg_maxiter: Optional[int] = None
    cg_tol: Optional[float] = None
    damping: float = 0.0
    # evaluation
    inner_select: str = "last"
    # running
    dtype: str = "float32"
    device: str = "cpu"
    checkpoint_every: int = 10
    resume: bool = False
    progress: bool = True
    log_every: int = 0
    save_graph: bool = True
    extra: dict = field(default_factory=dict)

    def resolved(self) -> "ExperimentConfig":
        """A copy with every ``None`` replaced by the data set's preset; validated."""
        if self.inner not in INNER_CHOICES:
            raise ConfigError(f"--inner must be one of {INNER_CHOICES}, got {self.inner!r}")
        if self.method not in METHOD_CHOICES:
            raise ConfigError(f"--method must be one of {METHOD_CHOICES}, got {self.method!r}")
        if self.model not in MODELS:
            raise ConfigError(f"--model must be one of {sorted(MODELS)}, got {self.model!r}")
        if self.hypergrad is not None and self.hypergrad not in HYPERGRAD_METHODS:
            raise ConfigError(f"--hypergrad must be one of {sorted(HYPERGRAD_METHODS)}, got {self.hypergrad!r}")
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {self.seeds}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"--dtype must be float32 or float64, got {self.dtype!r}")
        if self.g2g_support not in G2G_SUPPORTS:
            raise ConfigError(f"--g2g-support must be one of {G2G_SUPPORTS}, got {self.g2g_support!r}")
        if self.inner_select not in ("last", "best_val"):
            raise ConfigError(f"--inner-select must be 'last' or 'best_val', got {self.inner_select!r}")
        check_device(self.device)
        values = dataclasses.asdict(self)
        for key, value in preset(self.dataset, self.inner, self.method).items():
            if values.get(key) is None:
                values[key] = value
        if values["lam"] is None:  # paper: lambda = 1 when learning the graph, 0.1 on A_obs
            values["lam"] = 0.1 if self.method == "a_obs" else 1.0
        values["parametrization"] = values["parametrization"] or "sigmoid"
        values["edge_scale"] = 1.0 if values["edge_scale"] is None else values["edge_scale"]
        return ExperimentConfig(**values)

    @property
    def run_name(self) -> str:
        return self.name or f"{self.dataset}-{self.inner}-{self.method}"


def check_device(device: str) -> None:
    """Only devices that both torch and the installed DGL build support are accepted."""
    if device == "cpu":
        return
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: torch sees no CUDA device on this machine")
        try:
            dgl.graph(([0], [0])).to(device)
        except Exception as exc:  # DGL's CPU wheels raise DGLError here
            raise ConfigError(f"--device {device}: the installed DGL build cannot use CUDA ({exc})") from exc
        raise ConfigError("--device cuda: dgl_bilevel runs on CPU only in this version")
    raise ConfigError(f"--device must be 'cpu' or 'cuda[:N]', got {device!r}")


# ------------------------------------------------------------------ building
def build_inner(config: ExperimentConfig, data: BilevelData) -> InnerProblem:
    if config.inner == "gnn":
        model = build_model(config.model, data.num_features, config.hidden, data.out_dim, num_layers=config.layers)
        return TrainedGNN(model, steps=config.inner_steps, lr=config.inner_lr, weight_decay=config.weight_decay,
                          init=config.inner_init)
    return LaplacianRegularization(lam=config.lam, loss=config.laplacian_loss, steps=config.inner_steps,
                                   lr=config.inner_lr, init=config.inner_init)


def build_hypergrad(config: ExperimentConfig, inner: InnerProblem) -> HypergradMethod:
    if config.hypergrad is None:
        method = default_method(inner)
        if getattr(method, "name", "") == "unrolled":
            method.checkpoint = config.unroll_checkpoint
        return method
    options: dict[str, Any] = {}
    if config.hypergrad in ("unrolled", "truncated"):
        options["checkpoint"] = config.unroll_checkpoint
    if config.hypergrad == "truncated":
        options["k"] = config.truncate_k
    elif config.hypergrad == "implicit":
        options.update(solver=config.implicit_solver, damping=config.damping)
        if config.cg_maxiter is not None:
            options["maxiter"] = config.cg_maxiter
        if config.cg_tol is not None:
            options["tol"] = config.cg_tol
    elif config.hypergrad == "adjoint":
        if config.cg_maxiter is not None:
            options["maxiter"] = config.cg_maxiter
        if config.cg_tol is not None:
            options["tol"] = config.cg_tol
    return get_method(config.hypergrad, **options)


def build_support(config: ExperimentConfig, data: BilevelData):
    """The graph whose edges are learned: the observed one, or ``A^r`` for ``bo+power``/G2G on powers."""
    if config.method == "bo+power" or (config.method == "bo+g2g" and config.g2g_support == "power"):
        return power_support(data.graph, config.power, config.power_budget)
    if config.method == "bo+g2g" and config.g2g_support == "knn":
        return knn_support(data.features, config.knn_k, data.graph)
    return data.graph


def build_structure(config: ExperimentConfig, data: BilevelData, seed: int) -> GraphStructure:
    generator = torch.Generator().manual_seed(10_000 + seed)
    support = build_support(config, data)
    if config.method == "bo+g2g":
        return G2G(support, data.features, hidden=config.g2g_hidden, layers=config.g2g_layers,
                   dropout=config.g2g_dropout, last_layer_scale=config.g2g_scale, generator=generator)
    return EdgeWeights(
        support,
        parametrization=config.parametrization,
        init=config.edge_init,
        scale=config.edge_scale,
        tie_undirected=config.tie_undirected,
        generator=generator,
        weight_key=data.weight_key if support is data.graph else None,
        dtype=data.features.dtype,
    )


def build_regularizer(config: ExperimentConfig):
    return LogDegree(config.reg_gamma, config.reg_reduction) if config.method == "bo+reg" else None


# ------------------------------------------------------------------- running
def run_seed(config: ExperimentConfig, seed: int, run_dir: Path) -> dict:
    """One seed: load the split, run ``a_obs`` or ``bo``, write ``seed_<s>.json`` (+ graph)."""
    dtype = getattr(torch, config.dtype)
    data = load_dataset(config.dataset, config.data_root, seed).to(dtype)
    inner = build_inner(config, data)
    started = time.perf_counter()
    if config.method == "a_obs":
        inner.bind(data, data.graph)
        method = build_hypergrad(config, inner)
        metrics, _ = solve_on_graph(data, inner, data.observed_weights(), hypergrad=method, seed=seed,
                                    inner_select=config.inner_select)
        metric = data.metric.name
        record = {f"{s}_{metric}": v for s, v in metrics.items()}
        record.update(best_iteration=0, outer_iterations=0, median_seconds_per_iteration=float("nan"),
                      stopped_early=None)
        config_used = {**inner.describe(), **method.describe()}
        history: list = []
    else:
        structure = build_structure(config, data, seed)
        inner.bind(data, structure.graph)
        method = build_hypergrad(config, inner)
        result: FitResult = fit(
            data, structure, inner, method,
            outer_steps=config.outer_steps, lr=config.outer_lr, seed=seed, regularizer=build_regularizer(config),
            checkpoint=run_dir / f"checkpoint_seed{seed}.pt", checkpoint_every=config.checkpoint_every,
            resume=config.resume, progress=config.progress, log_every=config.log_every,
            description=f"{config.run_name} seed {seed}", inner_select=config.inner_select,
        )
        record = result.summary()
        config_used, history = result.config, result.history
        if config.save_graph:
            dgl.save_graphs(str(run_dir / f"graph_seed{seed}.bin"), [result.graph])
    record = {"seed": seed, **record, "wall_seconds": time.perf_counter() - started}
    write_json(run_dir / f"seed_{seed}.json", {"result": record, "config": config_used, "history": history})
    return record


def run_experiment(config: ExperimentConfig, echo=print) -> dict:
    """Run every seed (skipping finished ones when resuming), write ``summary.json``, print the table."""
    config = config.resolved()
    run_dir = Path(config.out) / config.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    data0 = load_dataset(config.dataset, config.data_root, config.seed_start)
    echo(data0.summary())
    metric = data0.metric.name
    per_seed = []
    for seed in range(config.seed_start, config.seed_start + config.seeds):
        done = run_dir / f"seed_{seed}.json"
        if config.resume and done.is_file():
            import json

            per_seed.append(json.loads(done.read_text())["result"])
            echo(f"seed {seed}: already finished ({done}), skipped")
            continue
        per_seed.append(run_seed(config, seed, run_dir))
        stop = per_seed[-1].get("stopped_early")
        if stop:
            echo(f"seed {seed}: {stop}")
    keys = [f"{s}_{metric}" for s in ("v_in", "v_out", "val", "test")] + ["median_seconds_per_iteration"]
    summary = {
        "run": config.run_name,
        "metric": metric,
        "aggregate": aggregate(per_seed, keys),
        "per_seed": per_seed,
        "config": dataclasses.asdict(config),
        "versions": versions(),
    }
    write_json(run_dir / "summary.json", summary)
    echo(results_table(per_seed, metric, title=f"{config.run_name}: best-validation graph per seed"))
    echo(f"results written to {run_dir.resolve()}")
    return summary


def versions() -> dict:
    import torchopt

    return {
        "dgl_bilevel": __version__,
        "torch": torch.__version__,
        "dgl": dgl.__version__,
        "torchopt": torchopt.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


# ------------------------------------------------------------------ scarcity
@dataclass
class ScarcitySnapshot:
    """The hypergradient of one outer iteration with what is needed to read it."""

    config: ExperimentConfig
    iteration: int
    kind: str
    data: BilevelData
    structure: GraphStructure
    hypergradient: torch.Tensor
    weights: torch.Tensor
    distances: torch.Tensor
    history: list
    bound: Any = None


def scarcity_snapshot(config: ExperimentConfig, iteration: int = 0, keep_history_to: Optional[int] = None) -> ScarcitySnapshot:
    """Run outer iterations up to ``max(iteration, keep_history_to)`` and return the per-edge
    gradient of the outer objective (loss + regulariser) at ``iteration``, with the paper's edge
    distances and, for the quadratic Laplacian problem, the decay bound."""
    from .diagnostics import ScarcityRecorder, edge_distances, laplacian_bound
    from .losses import task_loss

    if config.method == "a_obs":
        raise ConfigError("scarcity needs a learning method (bo, bo+power, bo+reg or bo+g2g), not a_obs")
    steps = max(iteration, keep_history_to or 0) + 1
    config = dataclasses.replace(config, outer_steps=steps).resolved()
    seed = config.seed_start
    data = load_dataset(config.dataset, config.data_root, seed).to(getattr(torch, config.dtype))
    inner = build_inner(config, data)
    structure = build_structure(config, data, seed)
    inner.bind(data, structure.graph)
    kind = "laplacian" if config.inner == "laplacian" else "gnn"
    recorder = ScarcityRecorder(kind, keep=[iteration])
    result = fit(data, structure, inner, build_hypergrad(config, inner), outer_steps=steps, lr=config.outer_lr,
                 seed=seed, regularizer=build_regularizer(config), callbacks=[recorder], progress=config.progress,
                 inner_select=config.inner_select, description=f"{config.run_name} scarcity")
    if iteration not in recorder.hypergradients:
        raise ConfigError(f"no finite hypergradient at outer iteration {iteration}")
    grad, weights = recorder.hypergradients[iteration], recorder.weights[iteration]
    distances = edge_distances(structure.graph, data.v_in, data.v_out, kind)
    bound = None
    if kind == "laplacian" and inner.is_quadratic:
        solution = inner.predict(get_method("adjoint").solve(inner, weights, ()).params, weights).detach()
        y = solution.clone().requires_grad_(True)
        (outer_grad,) = torch.autograd.grad(task_loss(y, data.labels, data.v_out, data.task), y)
        bound = laplacian_bound(inner, weights, outer_grad, max_distance=int(distances.max()))
    return ScarcitySnapshot(config, iteration, kind, data, structure, grad, weights, distances, result.history, bound)


def run_scarcity(config: ExperimentConfig, iteration: int = 0, echo=print) -> dict:
    """Report the hypergradient-vs-distance profile at ``iteration``: a table on stdout,
    ``scarcity.json`` and ``scarcity.png`` in ``<out>/<run name>-scarcity/``."""
    from .diagnostics import format_profile, hypergradient_profile, refined_edges
    from .diagnostics.plots import plot_profile

    snap = scarcity_snapshot(config, iteration)
    config, bound = snap.config, snap.bound
    echo(snap.data.summary())
    run_dir = Path(config.out) / f"{config.run_name}-scarcity"
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = hypergradient_profile(snap.hypergradient, snap.distances)
    title = f"{config.run_name}, outer iteration {iteration}"
    echo(f"hypergradient vs {snap.kind} edge distance ({title}):")
    echo(format_profile(rows, bound.per_distance if bound else None))
    zero = float((snap.hypergradient == 0).double().mean())
    echo(f"edges with exactly zero hypergradient: {100 * zero:.1f}%  |  refined edges: {refined_edges(snap.weights)}")
    if bound:
        echo(f"Laplacian bound: mu_min={bound.mu_min:.4g} mu_max={bound.mu_max:.4g} rate rho={bound.rho:.4f}")
    plot_profile(snap.hypergradient, snap.distances, run_dir / "scarcity.png", title=title,
                 bound=bound.per_distance if bound else None, rate=bound.rho if bound else None,
                 xlabel=f"{snap.kind} edge distance")
    payload = {
        "config": dataclasses.asdict(config),
        "iteration": iteration,
        "kind": snap.kind,
        "zero_fraction": zero,
        "profile": [r.as_dict() for r in rows],
        "bound": None if bound is None else {
            "mu_min": bound.mu_min, "mu_max": bound.mu_max, "rho": bound.rho, "per_distance": bound.per_distance},
    }
    write_json(run_dir / "scarcity.json", payload)
    echo(f"plot and profile written to {run_dir.resolve()}")
    return payload
