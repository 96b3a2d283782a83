"""Knowledge-graph embeddings as BloomGML energies: TransE / DistMult / RotatE, relation-aware descent steps.

Entity embeddings are ``K`` descent steps on a relation-aware lower-level energy started at the base
table; ``K = 0`` is the plain embedding model. See docs/bloomgml.md, "Knowledge graphs". ::

    from dgl_bilevel import kg
    data = kg.load_kg("nations")              # read from the pykeen wheel (the kg extra)
    model, result = kg.fit_kge(data, "transe", dim=64, steps=2)
    result.metrics["test"]["mrr"]
"""
from __future__ import annotations

from .data import KGData, kinships, load_kg, nations, pykeen_dataset_dir, read_triples, relation_graph, umls
from .energy_steps import RelationalDescent, kg_energy, kg_energy_grad, kg_preconditioner
from .evaluate import FilterIndex, LinkPredictor, evaluate_link_prediction, rank_metrics, rank_triples, realistic_ranks
from .model import EmbeddingPredictor, KGEModel, corrupt
from .scores import INTERACTIONS, DistMult, Interaction, RotatE, TransE, make_interaction
from .train import KGTrainConfig, KGTrainResult, evaluate_kge, fit_kge, kg_loss, train_kge

__all__ = [
    "KGData", "load_kg", "nations", "umls", "kinships", "pykeen_dataset_dir", "read_triples", "relation_graph",
    "Interaction", "TransE", "DistMult", "RotatE", "INTERACTIONS", "make_interaction",
    "RelationalDescent", "kg_energy", "kg_energy_grad", "kg_preconditioner",
    "FilterIndex", "LinkPredictor", "realistic_ranks", "rank_triples", "rank_metrics", "evaluate_link_prediction",
    "KGEModel", "EmbeddingPredictor", "corrupt",
    "KGTrainConfig", "KGTrainResult", "kg_loss", "train_kge", "evaluate_kge", "fit_kge",
]
