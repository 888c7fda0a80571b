"""Retrieval metrics: re-id CMC/mAP, face verification, product Recall@K, and one dispatcher."""

from ufo.metrics.evaluate import evaluate_embeddings
from ufo.metrics.face import tar_at_far, verification_accuracy
from ufo.metrics.product import recall_at_k
from ufo.metrics.reid import evaluate_reid

__all__ = ["evaluate_embeddings", "evaluate_reid", "recall_at_k", "tar_at_far", "verification_accuracy"]
