"""Evaluation of frozen features: weighted k-NN, linear probe and their metrics."""

from dino_mx.eval.cli import evaluate_knn, evaluate_linear
from dino_mx.eval.features import (
    cached_features,
    extract_features,
    feature_key,
    load_backbone_from_checkpoint,
)
from dino_mx.eval.knn import knn_evaluate, weighted_knn_predict
from dino_mx.eval.linear import linear_probe
from dino_mx.eval.metrics import as_class_labels, classification_metrics
from dino_mx.eval.network import Network, load_network

__all__ = [
    "Network",
    "as_class_labels",
    "cached_features",
    "classification_metrics",
    "evaluate_knn",
    "evaluate_linear",
    "extract_features",
    "feature_key",
    "knn_evaluate",
    "linear_probe",
    "load_backbone_from_checkpoint",
    "load_network",
    "weighted_knn_predict",
]
