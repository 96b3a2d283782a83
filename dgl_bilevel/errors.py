"""Exceptions raised by dgl_bilevel, so callers can catch the library's own errors."""


class BilevelError(Exception):
    """Base class of every error dgl_bilevel raises on purpose.

    Catch it to tell the library's own refusals (bad data, bad options, a diverged run) from
    bugs. The subclasses also derive from the built-in error of their kind (``ValueError``,
    ``FloatingPointError``), so code that catches those keeps working.

    Example:
        >>> from dgl_bilevel.config import check_device
        >>> try:
        ...     check_device("tpu")
        ... except BilevelError as exc:
        ...     print(type(exc).__name__, "|", exc)
        ConfigError | --device must be 'cpu', got 'tpu'
    """


class DataError(BilevelError, ValueError):
    """Input data is malformed: shapes, masks, labels, features or files.

    Raised by :class:`~dgl_bilevel.BilevelData` and the data loaders, with a message that says
    what is wrong; it is also a ``ValueError``.

    Example:
        >>> import dgl, torch
        >>> import dgl_bilevel as dbl
        >>> graph = dgl.graph(([0, 1, 2], [1, 2, 3]))
        >>> try:
        ...     dbl.BilevelData(graph, torch.eye(3), torch.tensor([0, 0, 1, 1]),
        ...                     v_in=[0], v_out=[1], val=[2], test=[3])
        ... except DataError as exc:
        ...     print(exc)
        features have 3 rows but the graph has 4 nodes
        >>> issubclass(DataError, ValueError)
        True
    """


class ConfigError(BilevelError, ValueError):
    """An option or a combination of options is invalid.

    Raised when a configuration is validated, when a registry is asked for a name it does not
    hold, and by constructors given arguments out of range; the message names the option. It is
    also a ``ValueError``.

    Example:
        >>> from dgl_bilevel.config import ExperimentConfig
        >>> try:
        ...     ExperimentConfig(dtype="float16").validate()
        ... except ConfigError as exc:
        ...     print(str(exc)[:41])
        --dtype must be one of float32, float64 (
    """


class NonFiniteHypergradientError(BilevelError, FloatingPointError):
    """The hypergradient contains NaN or infinity; the outer loop cannot continue.

    :func:`~dgl_bilevel.fit` does not raise it: it stops and returns a result whose
    ``stopped_early`` says why; :func:`~dgl_bilevel.raise_if_stopped` turns that into this
    error for callers who prefer an exception. It is also a ``FloatingPointError``.

    Example:
        >>> import torch
        >>> from dgl_bilevel.outer.result import FitResult, raise_if_stopped
        >>> result = FitResult(best_iteration=3, best_metrics={}, best_weights=torch.ones(2),
        ...                    final_weights=torch.ones(2), history=[], support=None, config={},
        ...                    metric="accuracy", stopped_early="non-finite outer loss or hypergradient at outer iteration 4")
        >>> try:
        ...     raise_if_stopped(result)
        ... except NonFiniteHypergradientError as exc:
        ...     print(exc)
        non-finite outer loss or hypergradient at outer iteration 4
    """


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: ``checkpoint`` is the file holding the last completed iteration
    (``None`` when the run kept no checkpoint), ``iteration`` that iteration (-1: none completed)."""

    def __init__(self, checkpoint=None, iteration: int = -1) -> None:
        super().__init__(f"interrupted after outer iteration {iteration}")
        self.checkpoint, self.iteration = checkpoint, iteration
