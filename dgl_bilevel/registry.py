"""Name -> component registries: data sets, structures, supports, inner problems, models,
hypergradient methods, regularisers and method presets.

One mechanism for all of them. A component registers itself where it is defined::

    @INNER_PROBLEMS.register("gnn", help="a GNN trained on v_in by a differentiable optimizer")
    class TrainedGNN(InnerProblem): ...

and from then on the command line lists it under ``--inner``, the configuration accepts it, and
``dgl-bilevel run --help`` and the docs show its help line. Each registry knows the module that
holds its built-in entries and imports it on first use, so this module stays free of torch.

Components that the experiment layer builds from a configuration have a classmethod
``from_config(config, ...)`` (or are plain functions of the configuration);
:meth:`Registry.from_config` calls it.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, Optional, TypeVar

from .errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered component: its name, the object (usually a class) and a one-line help."""

    name: str
    target: T
    help: str
    #: constructor parameter -> configuration field, for components built from a configuration
    #: without a ``from_config`` of their own (fields left at None keep the constructor's default).
    options: Optional[dict] = None


class Registry(Generic[T]):
    """A named collection of components of one kind.

    Args:
        kind: what the components are, for messages ("inner problem", "data set", ...).
        home: module(s) whose import registers the built-in entries.
    """

    def __init__(self, kind: str, home: "str | tuple[str, ...]" = ()) -> None:
        self.kind = kind
        self.home = (home,) if isinstance(home, str) else tuple(home)
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = not self.home

    # ------------------------------------------------------------------ registering
    def register(self, name: str, target: Optional[T] = None, *, help: str = "", options: Optional[dict] = None,
                 replace: bool = False):
        """Register ``target`` under ``name``; without ``target``, a decorator that registers what it decorates.

        ``options`` maps constructor parameters to configuration fields (see :meth:`from_config`).
        """

        def add(obj: T) -> T:
            if name in self._entries and not replace and self._entries[name].target is not obj:
                raise ConfigError(f"{self.kind} {name!r} is already registered; pass replace=True to override it")
            self._entries[name] = Entry(name, obj, help or _first_line(obj), options)
            return obj

        return add if target is None else add(target)

    # ------------------------------------------------------------------ reading
    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self.home:
                importlib.import_module(module)

    def entry(self, name: str) -> Entry[T]:
        self._load()
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(self.choices())}")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self.entry(name).target

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.choices())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def choices(self) -> tuple[str, ...]:
        """Registered names, in registration order."""
        self._load()
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return [(name, e.target) for name, e in self._entries.items()]

    def help(self, name: str) -> str:
        return self.entry(name).help

    def defaults(self, name: str) -> dict[str, Any]:
        """Constructor (or function) defaults of a registered component: ``{parameter: default}``."""
        target = self[name]
        signature = inspect.signature(target)
        return {p.name: p.default for p in signature.parameters.values() if p.default is not inspect.Parameter.empty}

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the registered component with these arguments."""
        return self[name](*args, **kwargs)

    def from_config(self, name: str, config: Any, *args: Any, **kwargs: Any) -> Any:
        """Build a component from an experiment configuration: through its ``from_config``, as a
        plain function of the configuration, or from the ``options`` it was registered with."""
        entry = self.entry(name)
        target = entry.target
        if entry.options is not None:
            chosen = {param: getattr(config, key) for param, key in entry.options.items()
                      if getattr(config, key) is not None}
            return target(*args, **chosen, **kwargs)
        builder: Optional[Callable[..., Any]] = getattr(target, "from_config", None)
        if builder is None and inspect.isfunction(target):  # a plain function of the configuration
            builder = target
        if builder is None:
            raise ConfigError(f"{self.kind} {name!r} cannot be built from a configuration (it has no from_config)")
        return builder(config, *args, **kwargs)

    def describe(self) -> str:
        """``name: help`` for every entry, for ``--help`` and docs."""
        self._load()
        return "; ".join(f"{name}: {entry.help}" for name, entry in self._entries.items())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self.choices())})"


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else ""


# The registries. Each lists the module that registers its built-in entries.
DATASETS: Registry = Registry("dataset", "dgl_bilevel.data.registry")
MODELS: Registry = Registry("model", ("dgl_bilevel.models", "dgl_bilevel.energy.layers"))
INNER_PROBLEMS: Registry = Registry("inner problem", ("dgl_bilevel.inner", "dgl_bilevel.inner.energy"))
HYPERGRADIENTS: Registry = Registry("hypergradient method", "dgl_bilevel.hypergrad")
INNER_OPTIMIZERS: Registry = Registry("inner optimizer", "dgl_bilevel.inner.optimizers")
LINEAR_SOLVERS: Registry = Registry("linear solver", "dgl_bilevel.numerics.linalg")
STRUCTURES: Registry = Registry("structure", "dgl_bilevel.structure")
SUPPORTS: Registry = Registry("support", "dgl_bilevel.structure")
REGULARIZERS: Registry = Registry("regularizer", "dgl_bilevel.outer.regularizers")
METHODS: Registry = Registry("method", "dgl_bilevel.methods")
STEP_RULES: Registry = Registry("step rule", "dgl_bilevel.energy.steps")
PENALTIES: Registry = Registry("penalty", "dgl_bilevel.energy.penalties")
NONSMOOTH_TERMS: Registry = Registry("non-smooth term h", "dgl_bilevel.energy.nonsmooth")
ESTIMATORS: Registry = Registry("gradient estimator", "dgl_bilevel.combinatorial.estimators")
SOLVERS: Registry = Registry("combinatorial solver", ("dgl_bilevel.combinatorial.selection",
                                                      "dgl_bilevel.combinatorial.graph_solvers"))
