"""The graph a finished run hands to a user's own model: the learned one where the validation test
chose it, else the observed graph -- so taking it never costs the user's model accuracy on data
where the learned graph did not win. Optionally the user's model confirms the choice on
validation, since the run's test judged the library's inner model, not theirs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from .._dgl import dgl
from ..config import ExperimentConfig, load_yaml
from ..errors import ConfigError
from ..outer.loop import node_data
from ..outer.result import most_likely_graph
from .seed_files import SAVED_NODE_DATA, run_data

#: ``refit_gate`` values that hand over the learned graph (refit on it, or the bilevel model itself).
LEARNED_CHOICES = ("learned", "learned_v_in")


def confirmed_choice(run_choice: str, learned_score: Optional[float] = None,
                     observed_score: Optional[float] = None) -> str:
    """``"learned"`` where the run's gate chose a learned graph (``run_choice``, a ``refit_gate`` value)
    and the user's model, if it was scored, does no worse with it on validation; else ``"observed"``.

    Two tests must agree before a user's pipeline changes graph: the run's paired test, which judged
    the library's inner model, and the user's own model's validation score (higher is better), which
    may prefer the observed graph where its architecture already copes with the noise. A tie keeps
    the run's choice.

    Example:
        >>> confirmed_choice("learned"), confirmed_choice("observed", 0.9, 0.8)
        ('learned', 'observed')
        >>> confirmed_choice("learned_v_in", 0.80, 0.80), confirmed_choice("learned", 0.79, 0.80)
        ('learned', 'observed')
    """
    if run_choice not in LEARNED_CHOICES:
        return "observed"
    if (learned_score is None) != (observed_score is None):
        raise ConfigError("confirm the handover with both validation scores (learned and observed graph) or none")
    if learned_score is not None and learned_score < observed_score:
        return "observed"
    return "learned"


def handed_over_graph(run_dir: "str | Path", seed: int, data_root: Optional[str] = None,
                      confirm: Optional[Callable[["dgl.DGLGraph"], float]] = None) -> tuple["dgl.DGLGraph", str]:
    """The graph a ``--refit`` run recommends for ``seed``, and which one it is.

    ``--refit`` ends each seed with a paired test on the validation half (``refit_gate`` in
    ``seed_<s>.json``, :func:`~dgl_bilevel.validation_gate`): the library's inner model, retrained on
    every label, on the observed graph against the same model on the learned graph. Where a learned
    candidate won, this returns the learned graph as :attr:`~dgl_bilevel.outer.result.FitResult.graph`
    does (edge probabilities: the edges above 1/2, weighted by their probability); where none did, the
    data set's observed graph with its weights. Either way the weights are in ``edata["w"]`` and the
    seed's labels and split masks in ``ndata`` (``label``, ``v_in_mask``, ``v_out_mask``, ``val_mask``,
    ``test_mask``; not the features, which are the data set's).

    The run's test judged the library's inner model; a user's architecture may disagree (a
    ``SAGEConv``, with its separate self path, gains less from removing noisy edges). Pass
    ``confirm`` -- the user's model trained on a graph and scored on validation, higher is better --
    and the learned graph is handed over only where that score is not lower than on the observed
    graph as well (:func:`confirmed_choice`). ``confirm`` runs only where the run chose a learned graph.

    Args:
        run_dir: a run folder holding ``config.yaml``, ``seed_<s>.json`` and ``graph_seed<s>.bin``.
        seed: the seed whose graph to take.
        data_root: where the data set's files are, if not where the run found them.
        confirm: optional ``graph -> validation score`` of the user's model; never called with test labels
            by this function, so it must not use them either.

    Returns:
        ``(graph, choice)`` with ``choice`` ``"learned"`` or ``"observed"``.

    Raises:
        ~dgl_bilevel.errors.ConfigError: the run made no refit (no choice was tested), or its files
            for ``seed`` are missing.

    Example:
        >>> import os, shutil, tempfile
        >>> import dgl, torch
        >>> from dgl_bilevel.experiment import run_experiment
        >>> folder = tempfile.mkdtemp()
        >>> graph = dgl.to_bidirected(dgl.graph(([0, 1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7])))
        >>> graph.ndata["feat"] = torch.eye(8)
        >>> graph.ndata["label"] = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> for split, nodes in {"train": [0, 7], "val": [1, 2, 5, 6], "test": [3, 4]}.items():
        ...     graph.ndata[f"{split}_mask"] = torch.isin(torch.arange(8), torch.tensor(nodes))
        >>> path = os.path.join(folder, "path.bin")
        >>> dgl.save_graphs(path, [graph])
        >>> config = ExperimentConfig(dataset=path, inner="laplacian", laplacian_loss="mse", seeds=1,
        ...                           outer_steps=2, refit=True, out=folder, name="run", progress=False)
        >>> _ = run_experiment(config, echo=lambda *line: None)
        >>> handed, choice = handed_over_graph(os.path.join(folder, "run"), seed=0)
        >>> choice, handed.num_edges() == graph.num_edges()  # 4 validation nodes: no learned graph wins
        ('observed', True)
        >>> sorted(handed.ndata)
        ['label', 'test_mask', 'v_in_mask', 'v_out_mask', 'val_mask']
        >>> handed_over_graph(os.path.join(folder, "run"), seed=0, confirm=lambda g: 1.0)[1]
        'observed'
        >>> shutil.rmtree(folder)
    """
    run = Path(run_dir)
    record_path, config_path = run / f"seed_{seed}.json", run / "config.yaml"
    for path in (record_path, config_path):
        if not path.is_file():
            raise ConfigError(f"{path} is missing: {run} holds no finished seed {seed}")
    choice = json.loads(record_path.read_text())["result"].get("refit_gate")
    if choice is None:
        raise ConfigError(f"{record_path} records no refit_gate: rerun with --refit, whose validation test "
                          "decides between the learned and the observed graph")
    options = load_yaml(config_path)
    if data_root is not None:
        options["data_root"] = data_root
    if choice not in LEARNED_CHOICES:
        return _observed_graph(options, seed), "observed"
    graph_path = run / f"graph_seed{seed}.bin"
    if not graph_path.is_file():
        raise ConfigError(f"{graph_path} is missing (the run was made with save_graph off)")
    (learned,), _ = dgl.load_graphs(str(graph_path))
    if options.get("structure") == "bernoulli":  # as FitResult.graph reads edge probabilities
        learned = most_likely_graph(learned)
    if confirm is None:
        return learned, "learned"
    observed = _observed_graph(options, seed)
    if confirmed_choice(choice, float(confirm(learned)), float(confirm(observed))) == "learned":
        return learned, "learned"
    return observed, "observed"


def _observed_graph(options: dict, seed: int) -> "dgl.DGLGraph":
    """The run's data set's observed graph for ``seed``, its weights in ``edata["w"]``."""
    data = run_data(ExperimentConfig(**options).resolved(), seed)
    graph = dgl.graph(data.graph.edges(), num_nodes=data.num_nodes)
    graph.edata["w"] = data.observed_weights().detach().clone()
    for key, value in node_data(data).items():  # what the saved learned graph carries: labels and split masks
        if key in SAVED_NODE_DATA:
            graph.ndata[key] = value
    return graph
