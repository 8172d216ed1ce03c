"""Evaluation of frozen features: weighted k-NN, linear probe and their metrics."""

from dino_mx.eval.knn import knn_evaluate, weighted_knn_predict
from dino_mx.eval.linear import linear_probe
from dino_mx.eval.metrics import as_class_labels, classification_metrics

__all__ = [
    "as_class_labels",
    "classification_metrics",
    "knn_evaluate",
    "linear_probe",
    "weighted_knn_predict",
]
