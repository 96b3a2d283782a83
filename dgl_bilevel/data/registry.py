"""Named data sets for the CLI and recipes: how each is loaded and where it is read from."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..config import is_graph_file
from ..errors import ConfigError
from ..registry import DATASETS
from .bilevel_data import BilevelData
from .files import PathLike, data_root
from .graph_file import load_graph_file
from .noise import NOISE_LEVELS, noisy
from .planetoid import planetoid, planetoid_files
from .heterophilous import (HETEROPHILOUS, HETEROPHILOUS_BENCHMARK, HETEROPHILOUS_BINARY, heterophilous,
                            heterophilous_file, upstream_name)
from .ogb import OGB_NODE_DATASETS, default_ogb_root, load_ogb, ogb_folder
from .synthetic import cheaters, synthetic1


@dataclass(frozen=True)
class DatasetEntry:
    """How a named data set is loaded and which files it needs (one row of :data:`DATASETS`).

    Args:
        name: the name ``--dataset`` and :func:`load_dataset` take.
        description: one line for ``dgl-bilevel datasets`` and ``--help``.
        loader: ``loader(root, seed) -> BilevelData``.
        files: ``files(data_root) -> paths`` of the files it reads; ``None`` for generated data.
        ogb: ``files`` takes the OGB root instead of the data root.

    Example:
        >>> import tempfile
        >>> from dgl_bilevel.data import DATASETS, DatasetEntry, cheaters
        >>> small = DatasetEntry("cheaters-64", "the cheaters network with 64 students",
        ...                      lambda root, seed: cheaters(n=64, seed=seed))
        >>> small.state(None), small.source(None), small.loader(None, 0).num_nodes
        ('generated', 'generated (seeded)', 64)
        >>> empty = tempfile.mkdtemp()
        >>> DATASETS["cora"].state(empty), [p.name for p in DATASETS["cora"].missing(empty)][:2]
        ('missing', ['ind.cora.x', 'ind.cora.y'])
    """

    name: str
    description: str
    loader: Callable[[Optional[PathLike], int], BilevelData]
    files: Optional[Callable[[Path], list[Path]]] = None  # None: generated in memory
    ogb: bool = False

    def paths(self, root: Optional[PathLike]) -> list[Path]:
        """The files this data set is read from under ``root`` (none when it is generated)."""
        if self.files is None:
            return []
        if self.ogb:
            return self.files(Path(root).expanduser() if root is not None else default_ogb_root())
        return self.files(data_root(root))

    def missing(self, root: Optional[PathLike]) -> list[Path]:
        """Those of :meth:`paths` that do not exist."""
        return [p for p in self.paths(root) if not p.exists()]

    def state(self, root: Optional[PathLike]) -> str:
        """``generated``, ``available`` (every file is there) or ``missing``."""
        if self.files is None:
            return "generated"
        return "missing" if self.missing(root) else "available"

    def source(self, root: Optional[PathLike]) -> str:
        """Where the data set is read from, and how many of its files are missing."""
        if self.files is None:
            return "generated (seeded)"
        paths, missing = self.paths(root), self.missing(root)
        where = str(paths[0].parent.resolve())
        return where + ("" if not missing else f"  [MISSING {len(missing)} file(s)]")


def register(entry: DatasetEntry) -> None:
    """Make a data set loadable by name (``--dataset``, :func:`load_dataset`).

    Args:
        entry: the data set; its ``name`` becomes a choice of :data:`DATASETS`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: if another entry is already registered under that name.

    Example:
        >>> from dgl_bilevel.data import DatasetEntry, cheaters, load_dataset, register
        >>> register(DatasetEntry("cheaters-32", "the cheaters network with 32 students",
        ...                       lambda root, seed: cheaters(n=32, seed=seed)))
        >>> load_dataset("cheaters-32", seed=1).summary()
        'cheaters: 32 nodes, ... edges, 10 features, 2 classes; v_in=8, v_out=8, val=8, test=8'
    """
    DATASETS.register(entry.name, entry, help=entry.description)


_PLANETOID_HELP = {
    "cora": "Cora citations (2,708 nodes, 7 classes); v_in = Planetoid train, Planetoid val halved into v_out/val",
    "citeseer": "CiteSeer citations (3,327 nodes incl. 15 isolated ones DGL adds with zero features, 6 classes); "
                "split as Cora",
    "pubmed": "PubMed citations (19,717 nodes, 3 classes); split as Cora",
}
for _name, _help in _PLANETOID_HELP.items():
    register(DatasetEntry(
        _name,
        _help,
        lambda root, seed, _n=_name: planetoid(_n, root, seed),
        lambda root, _n=_name: planetoid_files(root / "planetoid", _n),
    ))
for _level in NOISE_LEVELS:
    register(DatasetEntry(
        f"cora-noise{_level}",
        f"Cora with {_level}% random edges added (undirected pairs, both directions stored; drawn per seed), split "
        "as Cora: the noise protocol of graph-structure-learning benchmarks",
        lambda root, seed, _l=_level: noisy(planetoid("cora", root, seed), _l, seed),
        lambda root: planetoid_files(root / "planetoid", "cora"),
    ))
register(DatasetEntry(
    "cheaters",
    "paper's cheaters network (256 students, pass/fail), v_in at both ends, v_out in the middle",
    lambda root, seed: cheaters(seed=seed),
))
register(DatasetEntry(
    "synthetic1-high",
    "paper's synthetic set 1 (1,536 points, regression), 100 random v_in nodes",
    lambda root, seed: synthetic1("high", seed=seed),
))
register(DatasetEntry(
    "synthetic1-low",
    "paper's synthetic set 1 (1,536 points, regression), v_in = 100 nodes nearest the centre",
    lambda root, seed: synthetic1("low", seed=seed),
))


for _name in HETEROPHILOUS + HETEROPHILOUS_BENCHMARK:
    if _name in HETEROPHILOUS:
        _help = "heterophilous WebKB/Wikipedia graph, 10 official splits (seed s uses split s mod 10)"
    else:
        _help = ("heterophilous benchmark of Platonov et al. 2023, 10 official splits (seed s uses split s mod 10)"
                 + ("; binary, scored by ROC-AUC" if _name in HETEROPHILOUS_BINARY else "")
                 + (f"; upstream file {upstream_name(_name)}.npz also read" if upstream_name(_name) != _name else ""))
    register(DatasetEntry(
        _name,
        _help,
        lambda root, seed, _n=_name: heterophilous(_n, root, seed),
        lambda root, _n=_name: [heterophilous_file(root / "heterophilous", _n)],
    ))
for _name in OGB_NODE_DATASETS:
    register(DatasetEntry(
        _name,
        "OGB node property prediction through ogb's own loader; --data-root is the OGB root (default: "
        "<data root>/ogb); "
        "v_out taken from the training split (OGB rules), Evaluator metric",
        lambda root, seed, _n=_name, **options: load_ogb(_n, root, seed, **options),
        lambda root, _n=_name: [ogb_folder(root, _n) / "RELEASE_v1.txt"],
        ogb=True,
    ))


def load_dataset(name: str, root: Optional[PathLike] = None, seed: int = 0,
                 v_out_fraction: Optional[float] = None) -> BilevelData:
    """Load a registered data set by name, or a graph file (a path ending in ``.bin``, see
    :mod:`~dgl_bilevel.data.graph_file`), with the split for ``seed``. ``root`` is the data root of
    the named data sets; a relative graph file path is taken from the current directory.

    ``v_out_fraction`` (OGB data sets only; default 0.5) is the share of the official training
    nodes that becomes V_out; the other data sets have fixed bilevel splits.

    Args:
        name: a registered name (``DATASETS.choices()``) or a path ending in ``.bin``.
        root: the data root (default: see :func:`~dgl_bilevel.data.files.data_root`).
        seed: the split (and, for generated data, the draw).
        v_out_fraction: OGB only, strictly between 0 and 1.

    Returns:
        The :class:`~dgl_bilevel.data.BilevelData`.

    Raises:
        ~dgl_bilevel.errors.ConfigError: on an unknown name or a misplaced or invalid ``v_out_fraction``.
        ~dgl_bilevel.errors.DataError: if the data set's files are missing or malformed.

    Example:
        >>> from dgl_bilevel.data import load_dataset
        >>> data = load_dataset("cheaters", seed=0)
        >>> data.name, data.num_nodes, data.num_classes
        ('cheaters', 256, 2)
        >>> load_dataset("cheaters", v_out_fraction=0.3)
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.ConfigError: v_out_fraction applies to OGB data sets only; 'cheaters' has a fixed ...
    """
    if is_graph_file(name):
        if v_out_fraction is not None:
            raise ConfigError(f"v_out_fraction applies to OGB data sets only; the graph file {name!r} is split "
                              "by its masks")
        return load_graph_file(name, seed)
    entry = DATASETS[name]
    if v_out_fraction is None:
        return entry.loader(root, seed)
    if not entry.ogb:
        raise ConfigError(f"v_out_fraction applies to OGB data sets only; {name!r} has a fixed bilevel split")
    if not 0.0 < v_out_fraction < 1.0:
        raise ConfigError(f"v_out_fraction must be strictly between 0 and 1, got {v_out_fraction}")
    return entry.loader(root, seed, v_out_fraction=v_out_fraction)
