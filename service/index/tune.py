"""Operating-point tuning: the cheapest search parameters that reach a recall target.

Uses FAISS's ParameterSpace to enumerate and apply parameters (nprobe, efSearch, k_factor, ...
through any wrappers) and OperatingPoints to keep the measured (recall, time) front. Recall@k is
the intersection measure: the fraction of the exact top-k found in the returned top-k, on
held-out queries against exact ground truth.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import faiss
import numpy as np

from service.index.build import is_gpu_index

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """Search parameters ('' for an index without any), their recall@k and queries per second."""

    params: str
    recall: float
    qps: float


def exact_knn(xq: np.ndarray, xb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top-k (row positions of xb): the ground truth."""
    return faiss.knn(xq, xb, k, metric=faiss.METRIC_INNER_PRODUCT)


def recall_at_k(I: np.ndarray, gt: np.ndarray, k: int) -> float:  # noqa: E741 - FAISS's name
    """Mean |top-k found ∩ exact top-k| / k."""
    found = sum(len(np.intersect1d(row[:k][row[:k] >= 0], truth[:k])) for row, truth in zip(I, gt, strict=True))
    return found / (len(gt) * k)


def measure(index: faiss.Index, xq: np.ndarray, gt: np.ndarray, k: int, repeats: int = 1) -> tuple[float, float]:
    """(recall@k, best seconds of `repeats`) for one batched search of xq."""
    best, I = np.inf, None  # noqa: E741
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, I = index.search(xq, k)  # noqa: E741
        best = min(best, time.perf_counter() - t0)
    assert I is not None
    return recall_at_k(I, gt, k), best


def _unwrap_idmap(index: faiss.Index) -> faiss.Index:
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        index = faiss.downcast_index(index.index)
    return index


def tune_search_params(
    index: faiss.Index,
    xq: np.ndarray,
    gt: np.ndarray,
    *,
    k: int = 10,
    target_recall: float = 0.95,
    repeats: int = 1,
    max_combinations: int = 64,
) -> OperatingPoint:
    """Find and apply the fastest parameters with recall@k ≥ target on (xq, gt).

    gt: exact top-k labels (as the index returns them) of the held-out queries xq. With one
    parameter (IVF nprobe, HNSW efSearch) recall grows with the value, so the walk stops at the
    first value that reaches the target; with several, every combination (up to
    `max_combinations`) is measured and the fastest passing point on the front is taken.
    If none reaches the target, the best-recall point is applied and a warning logged.
    """
    space = faiss.GpuParameterSpace() if is_gpu_index(index) else faiss.ParameterSpace()
    space.initialize(_unwrap_idmap(index))  # initialize does not look through IDMap wrappers
    keys = [space.combination_name(c) for c in range(min(space.n_combinations(), max_combinations))]
    if not any(keys):  # nothing to tune (Flat)
        recall, seconds = measure(index, xq, gt, k, repeats)
        return OperatingPoint("", recall, len(xq) / seconds)
    monotone = space.parameter_ranges.size() == 1
    points = faiss.OperatingPoints()
    measured: list[OperatingPoint] = []
    for cno, key in enumerate(keys):
        space.set_index_parameters(index, key)
        recall, seconds = measure(index, xq, gt, k, repeats)
        points.add(recall, seconds, key, cno)
        measured.append(OperatingPoint(key, recall, len(xq) / seconds))
        log.debug("operating point %s: recall@%d %.4f, %.0f QPS", key, k, recall, measured[-1].qps)
        if monotone and recall >= target_recall:
            break
    passing = [p for p in measured if p.recall >= target_recall]
    if passing:
        chosen = passing[-1] if monotone else max(passing, key=lambda p: p.qps)
    else:
        chosen = max(measured, key=lambda p: (p.recall, p.qps))
        log.warning("no operating point reached recall@%d %.3f; using %s (%.4f)", k, target_recall,
                    chosen.params, chosen.recall)
    space.set_index_parameters(index, chosen.params)
    log.info("operating point %s: recall@%d %.4f at %.0f QPS (%d measured, %d on the front)", chosen.params, k,
             chosen.recall, chosen.qps, len(measured), points.optimal_pts.size())
    return chosen
