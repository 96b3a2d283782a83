"""Knowledge-graph triples: reading tab-separated files, entity / relation id maps, relation graphs.

Nations, Kinships and UMLS are read from the files the ``pykeen`` wheel ships
(``pykeen/datasets/<name>/{train,valid,test}.txt``; the ``kg`` extra installs it), or from any folder
holding the same three files. Nothing is downloaded. Ids follow PyKEEN's convention -- labels sorted,
ids assigned from the training split -- so ids, and therefore rankings, coincide with PyKEEN's.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import torch

from .._dgl import dgl
from ..errors import DataError

PathLike = Union[str, os.PathLike]

#: Data sets the pykeen wheel ships as plain triples files.
PYKEEN_DATASETS = ("nations", "kinships", "umls")
SPLITS = ("train", "valid", "test")
KG_EXTRA_HINT = "install the kg extra (pip install -e '.[kg]', i.e. pykeen==1.11.1)"


def read_triples(path: PathLike) -> list[tuple[str, str, str]]:
    """Triples ``(head, relation, tail)`` of a tab-separated file, one per non-empty line.

    Args:
        path: the file (UTF-8, ``head<TAB>relation<TAB>tail`` per line; blank lines are skipped).

    Returns:
        The triples as label tuples, in file order.

    Raises:
        ~dgl_bilevel.errors.DataError: the file does not exist, holds no triples, or a line has not three non-empty
            tab-separated fields.

    Example:
        >>> import pathlib
        >>> import tempfile
        >>> from dgl_bilevel.kg import read_triples
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = pathlib.Path(folder) / "train.txt"
        ...     _ = path.write_text("a\\tnext\\tb\\n\\nb\\tnext\\tc\\n", encoding="utf-8")
        ...     read_triples(path)
        [('a', 'next', 'b'), ('b', 'next', 'c')]
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = pathlib.Path(folder) / "train.txt"
        ...     _ = path.write_text("a next b\\n", encoding="utf-8")
        ...     read_triples(path)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.DataError: ...train.txt:1: expected 'head<TAB>relation<TAB>tail', got 'a next b'
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"triples file {path.resolve()} does not exist")
    triples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise DataError(f"{path}:{number}: expected 'head<TAB>relation<TAB>tail', got {line!r}")
        triples.append((parts[0].strip(), parts[1].strip(), parts[2].strip()))
    if not triples:
        raise DataError(f"triples file {path} holds no triples")
    return triples


def pykeen_dataset_dir(name: str) -> Path:
    """The folder of the pykeen wheel that holds ``name``'s ``train/valid/test.txt``.

    Args:
        name: ``"nations"``, ``"kinships"`` or ``"umls"`` (any case).

    Returns:
        The folder (``.../pykeen/datasets/<name>``); nothing is read or downloaded.

    Raises:
        ~dgl_bilevel.errors.DataError: another name, or pykeen is not installed (the ``kg`` extra).

    Example:
        >>> from dgl_bilevel.kg import pykeen_dataset_dir
        >>> folder = pykeen_dataset_dir("Nations")
        >>> folder.parts[-3:]
        ('pykeen', 'datasets', 'nations')
        >>> [(folder / f"{split}.txt").is_file() for split in ("train", "valid", "test")]
        [True, True, True]
        >>> pykeen_dataset_dir("fb15k")
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.DataError: unknown knowledge graph 'fb15k': choose one of ...
    """
    key = name.lower()
    if key not in PYKEEN_DATASETS:
        raise DataError(f"unknown knowledge graph {name!r}: choose one of {PYKEEN_DATASETS} or give a folder "
                        "holding train.txt, valid.txt and test.txt")
    spec = importlib.util.find_spec("pykeen")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"knowledge graph {name!r} is read from the pykeen wheel's pykeen/datasets/{key}/, but pykeen "
                        f"is not installed: {KG_EXTRA_HINT}, or pass the folder holding the three files")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / key


@dataclass
class KGData:
    """A knowledge graph split into train / valid / test id triples (``LongTensor [n, 3]`` of (h, r, t)).

    Made by :func:`load_kg` (or directly, from id triples).

    Args:
        name: the data set's name.
        train, valid, test: the splits' id triples.
        entity_to_id, relation_to_id: label -> id maps (ids ``0..n-1``).
        dropped: per split, the triples dropped because a label never occurs in training.

    Example:
        A ring ``a -> b -> c -> d -> a`` (relation ``next``) with ``skip`` two steps ahead:

        >>> import torch
        >>> from dgl_bilevel.kg import KGData
        >>> train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3], [3, 0, 0], [0, 1, 2], [1, 1, 3]])
        >>> data = KGData("ring", train, valid=torch.tensor([[2, 1, 0]]), test=torch.tensor([[3, 1, 1]]),
        ...               entity_to_id={"a": 0, "b": 1, "c": 2, "d": 3}, relation_to_id={"next": 0, "skip": 1})
        >>> data
        KGData('ring', entities=4, relations=2, train=6, valid=1, test=1)
        >>> data.all_triples().shape
        torch.Size([8, 3])
        >>> data.graph("train").edata["etype"].tolist()
        [0, 0, 0, 0, 1, 1]
    """

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    entity_to_id: dict[str, int]
    relation_to_id: dict[str, int]
    #: valid / test triples dropped because an entity or relation never occurs in training (as PyKEEN does).
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def num_entities(self) -> int:
        return len(self.entity_to_id)

    @property
    def num_relations(self) -> int:
        return len(self.relation_to_id)

    def all_triples(self) -> torch.Tensor:
        """Every known true triple (train, valid, test): what filtered evaluation removes."""
        return torch.cat([self.train, self.valid, self.test])

    def split(self, name: str) -> torch.Tensor:
        """The id triples of split ``name`` (``train``, ``valid`` or ``test``); a :class:`DataError` otherwise."""
        if name not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def graph(self, split: str = "train") -> "dgl.DGLGraph":
        """The split as a DGL multigraph ``head -> tail`` with relation ids in ``edata['etype']``."""
        return relation_graph(self.split(split), self.num_entities)

    def __repr__(self) -> str:
        return (f"KGData({self.name!r}, entities={self.num_entities}, relations={self.num_relations}, "
                f"train={len(self.train)}, valid={len(self.valid)}, test={len(self.test)})")


def relation_graph(triples: torch.Tensor, num_entities: int) -> "dgl.DGLGraph":
    """DGL multigraph with one edge ``h -> t`` per triple (edge ``e`` = row ``e``), ``edata['etype'] = r``.

    Args:
        triples: integer ``[n, 3]`` rows ``(head, relation, tail)``.
        num_entities: the number of nodes (entity ids lie in ``[0, num_entities)``).

    Returns:
        The graph (the input of :class:`~.energy_steps.RelationalDescent`).

    Raises:
        ~dgl_bilevel.errors.DataError: ``triples`` is not an integer ``[n, 3]`` tensor, or an entity id is out of range.

    Example:
        >>> import torch
        >>> from dgl_bilevel.kg import relation_graph
        >>> graph = relation_graph(torch.tensor([[0, 0, 1], [1, 1, 2], [0, 1, 2]]), num_entities=3)
        >>> [ends.tolist() for ends in graph.edges()], graph.edata["etype"].tolist()
        ([[0, 1, 0], [1, 2, 2]], [0, 1, 1])
        >>> relation_graph(torch.tensor([[0, 0, 7]]), num_entities=3)
        Traceback (most recent call last):
            ...
        dgl_bilevel.errors.DataError: entity ids must lie in [0, 3), got range [0, 7]
    """
    triples = check_triples(triples, num_entities)
    graph = dgl.graph((triples[:, 0], triples[:, 2]), num_nodes=num_entities)
    graph.edata["etype"] = triples[:, 1].clone()
    return graph


def check_triples(triples: torch.Tensor, num_entities: int, num_relations: int | None = None) -> torch.Tensor:
    """``triples`` as a ``LongTensor [n, 3]`` with ids in range; a :class:`DataError` otherwise."""
    triples = torch.as_tensor(triples)
    if triples.dim() != 2 or triples.shape[1] != 3 or triples.dtype not in (torch.int32, torch.int64):
        raise DataError(f"triples must be an integer tensor of shape [n, 3] (head, relation, tail), got "
                        f"{tuple(triples.shape)} {triples.dtype}")
    triples = triples.long()
    if len(triples):
        ents = triples[:, [0, 2]]
        if int(ents.min()) < 0 or int(ents.max()) >= num_entities:
            raise DataError(f"entity ids must lie in [0, {num_entities}), got range "
                            f"[{int(ents.min())}, {int(ents.max())}]")
        if num_relations is not None and (int(triples[:, 1].min()) < 0 or int(triples[:, 1].max()) >= num_relations):
            raise DataError(f"relation ids must lie in [0, {num_relations})")
    return triples


def _to_ids(triples, entity_to_id, relation_to_id) -> tuple[torch.Tensor, int]:
    rows = [(entity_to_id[h], relation_to_id[r], entity_to_id[t]) for h, r, t in triples
            if h in entity_to_id and t in entity_to_id and r in relation_to_id]
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 3), len(triples) - len(rows)


def load_kg(name_or_folder: PathLike) -> KGData:
    """Nations / Kinships / UMLS from the pykeen wheel, or any folder with ``train/valid/test.txt``.

    Ids: sorted labels of the training split (PyKEEN's convention); valid / test triples whose entity
    or relation is not in training are dropped and counted in ``KGData.dropped``.

    Args:
        name_or_folder: ``"nations"``, ``"kinships"`` or ``"umls"`` (read from the pykeen wheel),
            or a folder holding ``train.txt``, ``valid.txt`` and ``test.txt`` (see :func:`read_triples`).

    Returns:
        The :class:`KGData` (named after the data set or the folder).

    Raises:
        ~dgl_bilevel.errors.DataError: a triples file is missing or malformed, or pykeen is missing for a named set.

    Example:
        >>> import pathlib
        >>> import tempfile
        >>> from dgl_bilevel.kg import load_kg
        >>> splits = {"train": "b\\tr\\tc\\na\\tr\\tb\\n", "valid": "a\\tr\\tc\\n", "test": "c\\tr\\tz\\n"}
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     for split, text in splits.items():
        ...         _ = (pathlib.Path(folder) / f"{split}.txt").write_text(text, encoding="utf-8")
        ...     data = load_kg(folder)
        >>> data.entity_to_id, data.train.tolist()
        ({'a': 0, 'b': 1, 'c': 2}, [[1, 0, 2], [0, 0, 1]])
        >>> data.dropped  # 'z' never occurs in training
        {'train': 0, 'valid': 0, 'test': 1}
    """
    text = str(name_or_folder)
    if text.lower() in PYKEEN_DATASETS and not Path(text).is_dir():
        folder, name = pykeen_dataset_dir(text), text.lower()
    else:
        folder, name = Path(text).expanduser(), Path(text).name
    missing = [str((folder / f"{s}.txt").resolve()) for s in SPLITS if not (folder / f"{s}.txt").is_file()]
    if missing:
        hint = f" ({KG_EXTRA_HINT})" if name in PYKEEN_DATASETS else ""
        raise DataError(f"knowledge graph {name!r}: missing triples file(s) {', '.join(missing)}{hint}")
    raw = {s: read_triples(folder / f"{s}.txt") for s in SPLITS}
    entities = sorted({h for h, _, _ in raw["train"]} | {t for _, _, t in raw["train"]})
    relations = sorted({r for _, r, _ in raw["train"]})
    entity_to_id = {label: i for i, label in enumerate(entities)}
    relation_to_id = {label: i for i, label in enumerate(relations)}
    tensors, dropped = {}, {}
    for s in SPLITS:
        tensors[s], dropped[s] = _to_ids(raw[s], entity_to_id, relation_to_id)
    return KGData(name, tensors["train"], tensors["valid"], tensors["test"], entity_to_id, relation_to_id, dropped)


def nations() -> KGData:
    """Nations (14 entities, 55 relations), from the pykeen wheel.

    Returns:
        ``load_kg("nations")``.

    Raises:
        ~dgl_bilevel.errors.DataError: pykeen (the ``kg`` extra) is not installed.

    Example:
        >>> from dgl_bilevel.kg import nations
        >>> nations()
        KGData('nations', entities=14, relations=55, train=1592, valid=199, test=201)
    """
    return load_kg("nations")


def umls() -> KGData:
    """UMLS (135 entities, 46 relations), from the pykeen wheel.

    Returns:
        ``load_kg("umls")``.

    Raises:
        ~dgl_bilevel.errors.DataError: pykeen (the ``kg`` extra) is not installed.

    Example:
        >>> from dgl_bilevel.kg import umls
        >>> umls()
        KGData('umls', entities=135, relations=46, train=5216, valid=652, test=661)
    """
    return load_kg("umls")


def kinships() -> KGData:
    """Kinships (104 entities, 25 relations), from the pykeen wheel.

    Returns:
        ``load_kg("kinships")``.

    Raises:
        ~dgl_bilevel.errors.DataError: pykeen (the ``kg`` extra) is not installed.

    Example:
        >>> from dgl_bilevel.kg import kinships
        >>> kinships()
        KGData('kinships', entities=104, relations=25, train=8544, valid=1068, test=1074)
    """
    return load_kg("kinships")
