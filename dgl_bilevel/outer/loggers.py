"""Experiment tracking: a callback that writes one run's (one seed's) log for TensorBoard or as CSV.

Per outer iteration every number of the iteration's record -- outer loss, the four splits' scores,
the solver's residual and iterations, seconds -- and the hypergradient's norm; every
``histogram_every`` iterations (and at the last one) the distribution of the edge weights, split into
observed and added edges where the support marks them (``graph.edata["observed"]``: the k-NN and
``A^r`` supports); at the start the run's settings as hyper-parameters.

A logger is a :class:`~dgl_bilevel.outer.callbacks.Callback` like any other, so it works wherever
callbacks do: :func:`~dgl_bilevel.fit`, seeds in lockstep, worker processes and Ray tasks. It holds
plain values only until the fit starts -- the writer opens in :meth:`RunLogger.on_fit_start` and
closes in :meth:`RunLogger.close` -- so it pickles before a run and travels to other processes. A
resumed run continues its log: TensorBoard hides the events at or after the resumed iteration
(``purge_step``), the CSV file drops those rows.

The command line builds one per seed (``--logger tensorboard|csv``) in ``<run>/logs/seed_<s>/``
(:func:`seed_loggers`). TensorBoard is an optional extra (``pip install dgl_bilevel[tracking]``),
imported only when a TensorBoard logger starts; the CSV logger needs nothing.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..errors import ConfigError
from ..splits import SPLITS
from .callbacks import Callback, IterationState
from .state import LoopView


#: What to tell a user whose environment lacks TensorBoard.
INSTALL_HINT = "pip install 'dgl_bilevel[tracking]'"
#: Record entries of the linear solves (implicit and adjoint methods).
SOLVER_PREFIXES = ("implicit_", "adjoint_", "forward_")


def tag(key: str, metric: str) -> str:
    """The TensorBoard tag of a record entry: grouped as ``loss/``, ``metrics/``, ``solver/``,
    ``hypergradient/``, ``time/`` or ``run/`` (the entry's name after the slash is the record's key)."""
    if key in ("outer_loss", "total_loss", "inner_objective"):
        return f"loss/{key}"
    if any(key == f"{split}_{metric}" for split in SPLITS):
        return f"metrics/{key}"
    if key.startswith(SOLVER_PREFIXES):
        return f"solver/{key}"
    if key == "hypergradient_norm":
        return "hypergradient/norm"
    if key in ("seconds", "stacked_seconds"):
        return f"time/{key}"
    return f"run/{key}"


def iteration_scalars(state: IterationState) -> dict[str, float]:
    """The numbers logged for one outer iteration: every number of its record (the seed file's history
    row: losses, scores, solver residuals, seconds, ...) and ``hypergradient_norm`` (NaN when the
    hypergradient was not finite)."""
    values = {key: float(value) for key, value in state.record.items()
              if key != "iteration" and isinstance(value, (int, float))}  # bools too: converged -> 0/1
    gradient = state.hypergradient
    values["hypergradient_norm"] = float(gradient.norm()) if gradient is not None else math.nan
    return values


def edge_weight_groups(state: IterationState) -> dict[str, torch.Tensor]:
    """The edge weights of an iteration, ``{"observed": ..., "added": ...}`` where the support marks its
    observed edges (``edata["observed"]``), else ``{"all": ...}``; empty groups left out."""
    weights = state.weights.detach().reshape(-1).to(torch.float64)
    graph = state.structure.graph
    observed = graph.edata["observed"] if "observed" in graph.edata else None
    if observed is None or observed.numel() != weights.numel():
        groups = {"all": weights}
    else:
        mask = observed.reshape(-1) > 0.5
        groups = {"observed": weights[mask], "added": weights[~mask]}
    return {name: values for name, values in groups.items() if values.numel()}


def hparam_values(settings: Mapping[str, Any]) -> dict[str, "int | float | str | bool"]:
    """Settings as hyper-parameters: numbers, strings and booleans as they are, None as ``"none"``,
    paths as strings; nested values (dicts, lists) are left out."""
    out: dict[str, "int | float | str | bool"] = {}
    for key, value in settings.items():
        if value is None:
            out[key] = "none"
        elif isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, os.PathLike):
            out[key] = os.fspath(value)
    return out


class RunLogger(Callback):
    """Base class: the log of one run in ``logdir`` (see the module docstring).

    Args:
        logdir: folder of this run's log (created when the fit starts).
        hparams: the settings to record; default: the outer loop's own description
            (``OuterLoop.config``: data, structure, inner problem, method, outer steps, seed).
        histogram_every: write the edge weights' distribution every this many iterations (and at
            the last one); 0: never.

    A subclass writes through five hooks: ``_open(next_iteration)``, ``_write_hparams(hparams,
    step)``, ``_write_scalars(step, values)``, ``_write_histograms(step, groups)`` and
    ``_close()``; :class:`CsvLogger` and :class:`TensorBoardLogger` are the two built in.

    Raises:
        ~dgl_bilevel.errors.ConfigError: ``histogram_every`` is negative.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> class PrintLoss(RunLogger):
        ...     def _open(self, next_iteration):
        ...         self._writer = True
        ...     def _write_hparams(self, hparams, step):
        ...         print("outer steps:", hparams["outer_steps"])
        ...     def _write_scalars(self, step, values):
        ...         print(step, round(values["outer_loss"], 2))
        ...     def _write_histograms(self, step, groups):
        ...         print(step, sorted(groups), "histogram")
        ...     def _close(self):
        ...         print("closed")
        >>> _ = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), dbl.LabelPropagation(),
        ...             outer_steps=2, progress=False, callbacks=[PrintLoss("unused", histogram_every=0)])
        outer steps: 2
        0 0.63
        1 0.63
        closed
        >>> try:
        ...     RunLogger("logs", histogram_every=-1)
        ... except ConfigError as exc:
        ...     print(exc)
        histogram_every must be >= 0, got -1
    """

    def __init__(self, logdir: "str | os.PathLike", hparams: Optional[Mapping[str, Any]] = None,
                 histogram_every: int = 10) -> None:
        if histogram_every < 0:
            raise ConfigError(f"histogram_every must be >= 0, got {histogram_every}")
        self.logdir = Path(logdir)
        self.hparams = None if hparams is None else hparam_values(hparams)
        self.histogram_every = int(histogram_every)
        self.metric = "score"
        self.outer_steps = 0
        self._writer: Any = None  # opened in on_fit_start: a logger pickles until then

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_writer"] = None  # an open file does not travel; the copy opens its own when its fit starts
        return state

    # ---------------------------------------------------------------- hooks
    def on_fit_start(self, loop: LoopView) -> None:
        self.metric, self.outer_steps = loop.metric, loop.outer_steps
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._open(loop.state.next_iteration)
        self._write_hparams(self.hparams if self.hparams is not None else hparam_values(loop.config),
                            loop.state.next_iteration)

    def on_iteration(self, state: IterationState) -> None:
        if self._writer is None:  # driven without on_fit_start (OuterLoop.step by hand): nothing to write to
            return
        self._write_scalars(state.iteration, iteration_scalars(state))
        last = state.iteration == self.outer_steps - 1 or state.stopped is not None
        if self.histogram_every and (state.iteration % self.histogram_every == 0 or last):
            self._write_histograms(state.iteration, edge_weight_groups(state))

    def close(self) -> None:
        if self._writer is not None:
            self._close()
            self._writer = None

    # ---------------------------------------------------------------- what subclasses write
    def _open(self, next_iteration: int) -> None:
        raise NotImplementedError

    def _write_hparams(self, hparams: dict, step: int) -> None:
        raise NotImplementedError

    def _write_scalars(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def _write_histograms(self, step: int, groups: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


def _summary_writer() -> Any:
    """TensorBoard's writer class, or a ConfigError saying how to install it."""
    try:
        import tensorboard  # noqa: F401 -- torch.utils.tensorboard needs it; asked first for a clear message
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError(f"--logger tensorboard needs TensorBoard, which is not installed: {INSTALL_HINT} "
                          f"(or use --logger csv) [{exc}]") from None
    return SummaryWriter


class TensorBoardLogger(RunLogger):
    """A run's log as TensorBoard event files in ``logdir`` (``tensorboard --logdir <logdir>/..``).

    Scalars under the tags of :func:`tag`, edge weights as histograms ``edge_weights/observed``,
    ``edge_weights/added`` (or ``edge_weights/all``), the settings in the HParams dashboard and as a
    ``settings`` text. Scalars are float32 in the event files (TensorBoard's format).

    It takes :class:`RunLogger`'s arguments.

    Raises:
        ~dgl_bilevel.errors.ConfigError: when the fit starts, if TensorBoard is not installed (``pip install
            'dgl_bilevel[tracking]'``).

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     logger = TensorBoardLogger(os.path.join(folder, "seed_0"))
        ...     _ = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), dbl.LabelPropagation(),
        ...                 outer_steps=2, progress=False, callbacks=[logger])
        ...     [name.split(".")[:2] for name in os.listdir(logger.logdir)]
        [['events', 'out']]
    """

    def _open(self, next_iteration: int) -> None:
        writer_class = _summary_writer()
        # starting at iteration k (0 for a fresh start): events of iterations >= k that an earlier or
        # interrupted run left in this folder are hidden, so the log shows this run's iterations once
        self._writer = writer_class(str(self.logdir), purge_step=next_iteration)

    def _write_hparams(self, hparams: dict, step: int) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        metrics = {tag(key, self.metric): 0.0 for key in ("outer_loss", f"val_{self.metric}", f"test_{self.metric}")}
        file_writer = self._writer._get_file_writer()  # noqa: SLF001 -- into this run's own event file
        for summary in hparams_summary(hparams, metrics):
            file_writer.add_summary(summary, step)
        text = "\n".join(f"    {key}: {value!r}" for key, value in sorted(hparams.items()))  # markdown code block
        self._writer.add_text("settings", text, step)

    def _write_scalars(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self._writer.add_scalar(tag(key, self.metric), value, step)

    def _write_histograms(self, step: int, groups: dict[str, torch.Tensor]) -> None:
        for name, weights in groups.items():
            self._writer.add_histogram(f"edge_weights/{name}", weights, step)

    def _close(self) -> None:
        self._writer.close()


#: Columns of ``edge_weights.csv``, after ``iteration`` and ``edges`` (the group).
HISTOGRAM_COLUMNS = ("count", "mean", "std", "min", "q05", "q25", "median", "q75", "q95", "max")


class CsvLogger(RunLogger):
    """A run's log as CSV files in ``logdir``: ``metrics.csv`` (one row per outer iteration, a column per
    record entry as the seed file's history names it, plus ``hypergradient_norm``), ``edge_weights.csv``
    (count, mean, spread and quantiles of each edge group every ``histogram_every`` iterations) and
    ``settings.csv`` (name, value). Numbers are written in full precision (``repr``).

    It takes :class:`RunLogger`'s arguments. A resumed run keeps the rows of the iterations before it.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4], [1, 2, 3, 4, 5])))
        >>> data = dbl.BilevelData(graph, torch.eye(6), torch.tensor([0, 0, 0, 1, 1, 1]),
        ...                        v_in=[0, 5], v_out=[1, 4], val=[2], test=[3])
        >>> import csv, os, tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     logger = CsvLogger(folder, histogram_every=1)
        ...     _ = dbl.fit(data, dbl.EdgeWeights(graph, init="constant"), dbl.LabelPropagation(),
        ...                 outer_steps=3, progress=False, callbacks=[logger])
        ...     with open(os.path.join(folder, "metrics.csv")) as handle:
        ...         rows = list(csv.DictReader(handle))
        ...     with open(os.path.join(folder, "edge_weights.csv")) as handle:
        ...         histograms = list(csv.DictReader(handle))
        ...     sorted(os.listdir(folder))
        ['edge_weights.csv', 'metrics.csv', 'settings.csv']
        >>> [row["iteration"] for row in rows], rows[0]["val_acc"], "hypergradient_norm" in rows[0]
        (['0', '1', '2'], '1.0', True)
        >>> histograms[0]["edges"], histograms[0]["count"], histograms[0]["mean"]
        ('all', '10', '0.5')
    """

    def _open(self, next_iteration: int) -> None:
        self._writer = True  # "open" (RunLogger writes while set); no file stays open: rows are appended
        self._rows = _read_rows(self.logdir / "metrics.csv", next_iteration)
        self._columns = list(self._rows[0]) if self._rows else []
        _write_table(self.logdir / "metrics.csv", self._columns, self._rows)
        histograms = _read_rows(self.logdir / "edge_weights.csv", next_iteration)
        _write_table(self.logdir / "edge_weights.csv", ["iteration", "edges", *HISTOGRAM_COLUMNS], histograms)

    def _write_hparams(self, hparams: dict, step: int) -> None:
        _write_table(self.logdir / "settings.csv", ["name", "value"],
                     [{"name": key, "value": value} for key, value in hparams.items()])

    def _write_scalars(self, step: int, values: dict[str, float]) -> None:
        row = {"iteration": step, **{key: repr(value) for key, value in values.items()}}
        self._rows.append(row)
        new = [key for key in row if key not in self._columns]
        if new:  # a column appears (or this is the first row): rewrite the file with the wider header
            self._columns.extend(new)
            _write_table(self.logdir / "metrics.csv", self._columns, self._rows)
        else:
            _append_row(self.logdir / "metrics.csv", self._columns, row)

    def _write_histograms(self, step: int, groups: dict[str, torch.Tensor]) -> None:
        columns = ["iteration", "edges", *HISTOGRAM_COLUMNS]
        for name, weights in groups.items():
            q = torch.quantile(weights, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=weights.dtype)).tolist()
            stats = [weights.numel(), float(weights.mean()), float(weights.std()) if weights.numel() > 1 else 0.0,
                     float(weights.min()), *q, float(weights.max())]
            _append_row(self.logdir / "edge_weights.csv", columns,
                        {"iteration": step, "edges": name, **{c: repr(v) for c, v in zip(HISTOGRAM_COLUMNS, stats)}})

    def _close(self) -> None:
        self._rows = []


def _read_rows(path: Path, before: int) -> list[dict]:
    """The rows of a CSV log written by an earlier (interrupted) run, those of iterations < ``before``."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["iteration"]) < before]


def _write_table(path: Path, columns: list, rows: list) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        if columns:
            writer.writeheader()
        writer.writerows(rows)


def _append_row(path: Path, columns: list, row: dict) -> None:
    with path.open("a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=columns, restval="").writerow(row)


#: ``--logger`` values and the class each builds (``none``: no logger).
LOGGERS: dict[str, Optional[type]] = {"none": None, "tensorboard": TensorBoardLogger, "csv": CsvLogger}


def logs_dir(run_dir: "str | os.PathLike", seed: int, fold: Optional[int] = None) -> Path:
    """Where a seed's log goes: ``<run_dir>/logs/seed_<s>`` (``.../fold_<k>`` for a cross-fit fold)."""
    path = Path(run_dir) / "logs" / f"seed_{seed}"
    return path if fold is None else path / f"fold_{fold}"


def seed_loggers(config: Any, seed: int, run_dir: "str | os.PathLike", fold: Optional[int] = None) -> list[Callback]:
    """The logger ``config.logger`` names for one seed of a resolved configuration, as a list (empty for
    ``none``), recording the configuration's options and the seed as hyper-parameters."""
    cls = LOGGERS.get(config.logger)
    if config.logger not in LOGGERS:
        raise ConfigError(f"--logger must be one of {', '.join(LOGGERS)}, got {config.logger!r}")
    if cls is None:
        return []
    settings = {**config.to_dict(nested=False), "seed": seed, **({"fold": fold} if fold is not None else {})}
    return [cls(logs_dir(run_dir, seed, fold), hparams=settings, histogram_every=config.log_histogram_every)]
