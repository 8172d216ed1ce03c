"""Evaluation of frozen features: weighted k-NN, linear probe and their metrics; attention
maps, patch PCA / k-means figures and the attention localisation score."""

from dino_mx.eval.attention import cls_attention, eager_attention, top_mass_mask
from dino_mx.eval.cli import evaluate_knn, evaluate_linear
from dino_mx.eval.features import cached_features, extract_features, feature_key
from dino_mx.eval.knn import knn_evaluate, weighted_knn_predict
from dino_mx.eval.linear import linear_probe
from dino_mx.eval.localize import evaluate_localize, localization_scores
from dino_mx.eval.metrics import as_class_labels, classification_metrics
from dino_mx.eval.network import Network, NetworkSpec, load_network
from dino_mx.eval.patches import kmeans_segments, patch_features, pca_rgb

__all__ = [
    "Network",
    "NetworkSpec",
    "as_class_labels",
    "cached_features",
    "classification_metrics",
    "cls_attention",
    "eager_attention",
    "evaluate_knn",
    "evaluate_linear",
    "evaluate_localize",
    "extract_features",
    "feature_key",
    "kmeans_segments",
    "knn_evaluate",
    "linear_probe",
    "load_network",
    "localization_scores",
    "patch_features",
    "pca_rgb",
    "top_mass_mask",
    "weighted_knn_predict",
]
