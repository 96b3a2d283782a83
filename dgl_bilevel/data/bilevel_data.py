"""The container every stage reads: a DGL graph with features, labels and the four bilevel node sets.

The bilevel split has four disjoint node sets:

* ``v_in``  -- labels the inner model is trained on;
* ``v_out`` -- labels the outer loss (and so the hypergradient) is computed on;
* ``val``   -- used only to pick the best graph;
* ``test``  -- reported, never used for any choice.

Construction validates everything and raises :class:`~dgl_bilevel.errors.DataError` with a
message naming the problem, so bad input never turns into a traceback deep inside training.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Union

import torch

from .._dgl import dgl
from .._graph_cache import graph_cache
from ..errors import DataError
from ..losses import TASKS, Metric, default_metric
from ..splits import SPLITS


NodeSet = Union[torch.Tensor, list, tuple]


@dataclass
class BilevelData:
    """A graph learning problem: observed graph, node features and labels, bilevel node sets.

    Args:
        graph: the observed graph ``A_obs`` (homogeneous). Its ``edata`` may hold edge
            weights under ``weight_key``; otherwise every edge has weight 1.
        features: node features ``[N, D]`` (float, finite).
        labels: ``[N]`` integer classes (classification), ``[N, T]`` 0/1 targets (multilabel)
            or ``[N]`` / ``[N, T]`` floats (regression). Nodes outside every split may hold
            anything (e.g. -1).
        v_in, v_out, val, test: node sets as boolean masks of length N or index tensors.
            ``v_in`` and ``v_out`` must be non-empty; all four must be disjoint.
        task: ``"classification"``, ``"multilabel"`` or ``"regression"``.
        num_classes: number of classes (classification); inferred from labels if omitted.
        name: a short name used in logs and result files.
        weight_key: edata key of observed edge weights, if any.
        metric: how splits are scored; default: accuracy, mean ROC-AUC or MSE by task (OGB data
            sets use their ``ogb.nodeproppred.Evaluator``).
        extras: anything else a data set carries (ground-truth graph, positions, ...).
        v_out_in_training: set in the copy :meth:`with_v_out_in_training` makes: ``v_in`` then
            also holds ``v_out``'s nodes (a baseline trained on every label bilevel optimisation
            uses), ``v_out`` lies inside ``v_in`` and its score is a training score; ``v_in``,
            ``val`` and ``test`` stay disjoint. Such data cannot drive an outer problem
            (:func:`~dgl_bilevel.fit` refuses it).
        outer_on_validation: set in the copy :meth:`with_outer_loss_on_validation` makes (LDS's
            protocol): ``v_out`` *is* ``val``, so the outer loss and the selection of the best graph
            read the same labels; ``v_in``, ``val`` and ``test`` stay disjoint.

    Raises:
        ~dgl_bilevel.errors.DataError: on a graph that is not a non-empty homogeneous DGLGraph with edges, features
            or labels of the wrong shape or not finite, an unknown task, node sets out of range,
            overlapping or (``v_in``, ``v_out``) empty, or invalid edge weights.

    Example:
        >>> import dgl
        >>> import torch
        >>> from dgl_bilevel.data import BilevelData
        >>> ring = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0])))
        >>> data = BilevelData(ring, features=torch.eye(6), labels=torch.tensor([0, 1, 0, 1, 0, 1]),
        ...                    v_in=[0, 1], v_out=[2, 3], val=[4], test=[5])
        >>> data.summary()
        'custom: 6 nodes, 12 edges, 6 features, 2 classes; v_in=2, v_out=2, val=1, test=1'
        >>> data.with_v_out_in_training().v_in.tolist()
        [0, 1, 2, 3]
        >>> BilevelData(ring, torch.eye(6), torch.zeros(6, dtype=torch.long),
        ...             v_in=[0, 1], v_out=[1, 2], val=[4], test=[5])
        Traceback (most recent call last):
        ...
        dgl_bilevel.errors.DataError: v_in and v_out overlap in 1 node(s) (first: node 1); ...
    """

    graph: Any
    features: torch.Tensor
    labels: torch.Tensor
    v_in: NodeSet
    v_out: NodeSet
    val: NodeSet
    test: NodeSet
    task: str = "classification"
    num_classes: Optional[int] = None
    name: str = "custom"
    weight_key: Optional[str] = None
    metric: Optional[Metric] = None
    extras: dict = field(default_factory=dict)
    v_out_in_training: bool = False
    outer_on_validation: bool = False

    def __post_init__(self) -> None:
        _check_graph(self.graph)
        n = self.graph.num_nodes()
        self.features = _check_features(self.features, n)
        if self.task not in TASKS:
            raise DataError(f"task must be one of {TASKS}, got {self.task!r}")
        for split in SPLITS:
            setattr(self, split, _as_index(getattr(self, split), n, split))
        for split in SPLITS[:2]:  # v_in and v_out: both levels need labels
            if getattr(self, split).numel() == 0:
                raise DataError(f"{split} is empty: the bilevel problem needs labelled nodes in both v_in and v_out")
        if self.outer_on_validation:
            if self.v_out_in_training:
                raise DataError("outer_on_validation and v_out_in_training exclude each other: training on v_out would "
                                "train on the labels that select the best graph")
            if not torch.equal(torch.sort(self.v_out).values, torch.sort(self.val).values):
                raise DataError("outer_on_validation is set but v_out and val differ; use "
                                "with_outer_loss_on_validation()")
            _check_disjoint({s: getattr(self, s) for s in SPLITS if s != "v_out"}, n)
        elif self.v_out_in_training:
            outside = ~torch.isin(self.v_out, self.v_in)
            if outside.any():
                raise DataError(f"v_out_in_training is set but {int(outside.sum())} v_out node(s) are not in v_in "
                                f"(first: node {int(self.v_out[outside][0])}); use with_v_out_in_training()")
            _check_disjoint({s: getattr(self, s) for s in SPLITS if s != "v_out"}, n)
        else:
            _check_disjoint({s: getattr(self, s) for s in SPLITS}, n)
        self.labels, self.num_classes = _check_labels(self.labels, n, self.task, self.num_classes, self.labelled())
        if self.metric is None:
            self.metric = default_metric(self.task)
        if self.weight_key is not None:
            if self.weight_key not in self.graph.edata:
                raise DataError(f"weight_key {self.weight_key!r} is not in graph.edata (keys: {list(self.graph.edata.keys())})")
            w = self.graph.edata[self.weight_key]
            if w.shape != (self.graph.num_edges(),) or not torch.isfinite(w).all() or (w < 0).any():
                raise DataError(f"graph.edata[{self.weight_key!r}] must be a finite, non-negative vector of length num_edges")

    # ------------------------------------------------------------------ helpers
    @property
    def num_nodes(self) -> int:
        return self.graph.num_nodes()

    @property
    def num_edges(self) -> int:
        return self.graph.num_edges()

    @property
    def num_features(self) -> int:
        return self.features.shape[1]

    @property
    def out_dim(self) -> int:
        """Width of the inner model's output: classes, or regression targets."""
        if self.task == "classification":
            return int(self.num_classes)
        return 1 if self.labels.dim() == 1 else self.labels.shape[1]

    def score(self, outputs: torch.Tensor, split: str) -> float:
        """The data set's metric of ``outputs`` on one split (NaN if the split is empty)."""
        return self.metric(outputs, self.labels, getattr(self, split))

    def labelled(self) -> torch.Tensor:
        """Indices of all nodes in some split."""
        return torch.cat([getattr(self, s) for s in SPLITS])

    def observed_weights(self) -> torch.Tensor:
        """Weights of ``A_obs``: ``graph.edata[weight_key]`` or ones."""
        if self.weight_key is None:
            return torch.ones(self.num_edges, dtype=self.features.dtype)
        return self.graph.edata[self.weight_key].to(self.features.dtype)

    def to(self, dtype: torch.dtype) -> "BilevelData":
        """A copy with floating tensors (features, float labels) cast to ``dtype``."""
        labels = self.labels.to(dtype) if self.labels.is_floating_point() else self.labels
        return replace(self, features=self.features.to(dtype), labels=labels)

    def with_splits(self, **splits: NodeSet) -> "BilevelData":
        """A copy with some node sets replaced (validated again)."""
        return replace(self, **splits)

    def with_v_out_in_training(self) -> "BilevelData":
        """A copy whose training set is ``v_in ∪ v_out``: the inner model sees the labels that
        bilevel optimisation learns its graph on (the ``a_obs+v_out`` baseline).

        ``v_out`` keeps its nodes, so its score is still reported -- as a training score; ``val``
        and ``test`` are unchanged, so selection and reporting stay honest. The copy has
        :attr:`v_out_in_training` set (an outer loop refuses it); applying this twice changes nothing.
        """
        if self.v_out_in_training:
            return self
        return replace(self, v_in=torch.cat([self.v_in, self.v_out]), v_out_in_training=True)

    def with_outer_loss_on_validation(self) -> "BilevelData":
        """A copy for LDS's protocol: the outer loss is computed on the whole validation set
        (``v_out ∪ val``), which also selects the best graph -- selection and outer loss share labels,
        so the validation score of the best graph is optimistic; ``test`` stays untouched.
        Applying this twice changes nothing."""
        if self.outer_on_validation:
            return self
        if self.v_out_in_training:
            raise DataError("this data trains on v_out (with_v_out_in_training): it cannot also compute the outer loss "
                            "on validation")
        validation = torch.cat([self.v_out, self.val])
        return replace(self, v_out=validation, val=validation, outer_on_validation=True)

    def summary(self) -> str:
        sizes = ", ".join(f"{s}={getattr(self, s).numel()}" for s in SPLITS)
        if self.v_out_in_training:
            sizes += " (v_in includes v_out: trained on both)"
        if self.outer_on_validation:
            sizes += " (v_out is val: the outer loss and the selection share labels)"
        kind = {"classification": f"{self.num_classes} classes", "multilabel": f"{self.out_dim} binary tasks"}.get(
            self.task, "regression")
        return (
            f"{self.name}: {self.num_nodes} nodes, {self.num_edges} edges, "
            f"{self.num_features} features, {kind}; {sizes}"
        )

    @classmethod
    def from_dgl(
        cls,
        graph: "dgl.DGLGraph",
        *,
        feat_key: str = "feat",
        label_key: str = "label",
        v_in: Union[str, NodeSet] = "train_mask",
        v_out: Union[str, NodeSet],
        val: Union[str, NodeSet] = "val_mask",
        test: Union[str, NodeSet] = "test_mask",
        weight_key: Optional[str] = None,
        **kwargs: Any,
    ) -> "BilevelData":
        """Build from a DGL graph whose ``ndata`` holds features, labels and masks.

        Each node set is an ``ndata`` key or a mask / index tensor, e.g.
        ``BilevelData.from_dgl(g, v_out=my_outer_idx)``.
        """
        _check_graph(graph)

        def get(key_or_set: Union[str, NodeSet], what: str, frame=graph.ndata):
            if isinstance(key_or_set, str):
                if key_or_set not in frame:
                    raise DataError(f"{what}: the graph has no data key {key_or_set!r} (keys: {list(frame.keys())})")
                return frame[key_or_set]
            return key_or_set

        structure = dgl.graph(graph.edges(), num_nodes=graph.num_nodes())
        if weight_key is not None:
            structure.edata[weight_key] = get(weight_key, "edge weights", graph.edata)
        return cls(
            graph=structure,
            features=get(feat_key, "features"),
            labels=get(label_key, "labels"),
            v_in=get(v_in, "v_in"),
            v_out=get(v_out, "v_out"),
            val=get(val, "val"),
            test=get(test, "test"),
            weight_key=weight_key,
            **kwargs,
        )


# ---------------------------------------------------------------------- checks
def _check_graph(graph: Any) -> None:
    if not isinstance(graph, dgl.DGLGraph):
        raise DataError(f"graph must be a dgl.DGLGraph, got {type(graph).__name__}")
    if not graph.is_homogeneous:
        raise DataError("graph must be homogeneous (one node type, one edge type); convert it with dgl.to_homogeneous")
    if graph.num_nodes() == 0:
        raise DataError("graph has no nodes")
    if graph.num_edges() == 0:
        raise DataError("graph has no edges: there is no structure to learn (add a support such as a k-NN graph)")
    _warn_about_edges(graph)


def edge_anomalies(graph: Any) -> dict:
    """Counts of duplicate edges, self-loops, and edges whose reverse is missing."""
    src, dst = graph.edges()
    n = graph.num_nodes()
    keys = src.long() * n + dst.long()
    unique = torch.unique(keys)
    reverse = dst.long() * n + src.long()
    one_way = int((~torch.isin(reverse, unique)).sum())
    return {"duplicates": int(keys.numel() - unique.numel()), "self_loops": int((src == dst).sum()),
            "one_directional": one_way}


def _warn_about_edges(graph: Any) -> None:
    """Duplicate edges get independent weights; an undirected graph missing some reverse edges is
    learned asymmetrically there; self-loops are learned like any edge. Say so, with counts
    (once per graph, marked on the graph: copies of the data in another dtype share it)."""
    cache = graph_cache(graph)
    if cache.edges_checked:
        return
    cache.edges_checked = True
    counts = edge_anomalies(graph)
    problems = []
    if counts["duplicates"]:
        problems.append(f"{counts['duplicates']} duplicate edge(s) (each copy gets its own weight; "
                        "dgl.to_simple merges them)")
    if counts["self_loops"]:
        problems.append(f"{counts['self_loops']} self-loop(s) (learned like any edge; dgl.remove_self_loop drops them)")
    looks_undirected = counts["one_directional"] < graph.num_edges() / 2
    if counts["one_directional"] and looks_undirected:
        problems.append(f"{counts['one_directional']} edge(s) without their reverse in a graph that is otherwise "
                        "undirected (dgl.to_bidirected adds them)")
    if problems:
        warnings.warn("the graph has " + "; ".join(problems), UserWarning, stacklevel=4)


def _check_features(features: Any, n: int) -> torch.Tensor:
    if not isinstance(features, torch.Tensor):
        raise DataError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dim() == 1:
        features = features.unsqueeze(-1)
    if features.dim() != 2:
        raise DataError(f"features must be 2-D [num_nodes, num_features], got shape {tuple(features.shape)}")
    if features.shape[0] != n:
        raise DataError(f"features have {features.shape[0]} rows but the graph has {n} nodes")
    if not features.is_floating_point():
        features = features.float()
    bad = ~torch.isfinite(features)
    if bad.any():
        rows = bad.any(dim=1).nonzero().flatten()
        raise DataError(
            f"features contain {int(bad.sum())} NaN or infinite values in {rows.numel()} nodes "
            f"(first: node {int(rows[0])}); impute or drop them first"
        )
    return features


def _as_index(nodes: Any, n: int, name: str) -> torch.Tensor:
    if nodes is None:
        return torch.zeros(0, dtype=torch.long)
    nodes = torch.as_tensor(nodes)
    if nodes.numel() == 0 and nodes.dtype != torch.bool:
        return torch.zeros(0, dtype=torch.long)
    if nodes.dim() == 2 and nodes.shape[0] == n and nodes.shape[1] > 1:
        raise DataError(f"{name} has shape {tuple(nodes.shape)}: one column per split (e.g. the 10 official splits "
                        f"of a benchmark); pick one, e.g. {name}=mask[:, 0]")
    if nodes.dim() == 2 and nodes.shape[0] == n and nodes.shape[1] == 1:
        nodes = nodes[:, 0]
    if nodes.dtype != torch.bool and not nodes.is_floating_point() and nodes.dim() == 1 and nodes.numel() == n \
            and n > 2 and bool(((nodes == 0) | (nodes == 1)).all()):
        nodes = nodes.bool()  # a 0/1 mask of integers (uint8 masks, numpy ints): as indices it would repeat nodes
    if nodes.dtype == torch.bool:
        if nodes.dim() != 1 or nodes.numel() != n:
            raise DataError(f"{name} mask has shape {tuple(nodes.shape)} but the graph has {n} nodes")
        return nodes.nonzero().flatten()
    if nodes.is_floating_point():
        raise DataError(f"{name} must be a boolean mask or integer node indices, got dtype {nodes.dtype}")
    nodes = nodes.flatten().long()
    if nodes.numel() and (nodes.min() < 0 or nodes.max() >= n):
        raise DataError(f"{name} holds node indices outside [0, {n}): min {int(nodes.min())}, max {int(nodes.max())}")
    unique = torch.unique(nodes)
    if unique.numel() != nodes.numel():
        raise DataError(f"{name} lists {nodes.numel() - unique.numel()} node(s) more than once")
    return unique


def _check_disjoint(sets: dict[str, torch.Tensor], n: int) -> None:
    owner = torch.full((n,), -1, dtype=torch.long)
    names = list(sets)
    for i, name in enumerate(names):
        idx = sets[name]
        clash = owner[idx] >= 0
        if clash.any():
            other = names[int(owner[idx][clash][0])]
            raise DataError(
                f"{other} and {name} overlap in {int(clash.sum())} node(s) (first: node {int(idx[clash][0])}); "
                "the bilevel node sets must be disjoint"
            )
        owner[idx] = i


def _check_labels(labels: Any, n: int, task: str, num_classes: Optional[int], labelled: torch.Tensor):
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.shape[0] != n:
        raise DataError(f"labels have length {labels.shape[0]} but the graph has {n} nodes")
    if task == "classification":
        if labels.is_floating_point() or labels.dim() != 1:
            raise DataError(
                f"classification labels must be a 1-D integer tensor, got dtype {labels.dtype} and shape {tuple(labels.shape)}"
            )
        labels = labels.long()
        seen = labels[labelled]
        if num_classes is None:
            num_classes = int(seen.max()) + 1
        if num_classes < 2:
            raise DataError(f"classification needs at least 2 classes, got num_classes={num_classes}")
        bad = (seen < 0) | (seen >= num_classes)
        if bad.any():
            node = int(labelled[bad][0])
            raise DataError(
                f"{int(bad.sum())} labelled node(s) have labels outside [0, {num_classes}) "
                f"(first: node {node} with label {int(labels[node])})"
            )
        return labels, int(num_classes)
    if task == "multilabel":
        if labels.dim() != 2:
            raise DataError(f"multilabel labels must be [num_nodes, num_tasks], got shape {tuple(labels.shape)}")
        seen = labels[labelled]
        if not bool(((seen == 0) | (seen == 1)).all()):
            raise DataError("multilabel labels of labelled nodes must be 0 or 1")
        return labels.float(), None
    if not labels.is_floating_point():
        labels = labels.float()
    if not torch.isfinite(labels[labelled]).all():
        raise DataError("regression labels of labelled nodes contain NaN or infinite values")
    return labels, None
