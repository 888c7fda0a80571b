"""One entry point: score a task's embeddings of an EvalSet with that task's protocol."""

from __future__ import annotations

import numpy as np

from ufo.data.types import EvalSet
from ufo.metrics import _validate
from ufo.metrics.face import tar_at_far, verification_accuracy
from ufo.metrics.face_gallery import face_gallery_metrics
from ufo.metrics.product import recall_at_k
from ufo.metrics.reid import evaluate_reid
from ufo.tasks import get_task

FACE_FARS: tuple[tuple[str, float], ...] = (("1e-3", 1e-3), ("1e-4", 1e-4))
FACE_MAX_FOLDS = 10


def evaluate_embeddings(
    task: str, query_feats: np.ndarray, gallery_feats: np.ndarray, eval_set: EvalSet
) -> dict[str, float]:
    """Metrics of `task` for embeddings of ``eval_set.query`` and ``eval_set.gallery`` (row i = sample i),
    by the task's protocol (`ufo.tasks`):

    - reid (person, vehicle): CMC/mAP of query x gallery under the Market-1501 protocol (`evaluate_reid`),
      identities and cameras taken from the samples.
    - recall (product): Recall@1/10/100 with the query list as its own gallery (`recall_at_k` on
      `query_feats`; `gallery_feats` is only checked against ``eval_set.gallery``).
    - verification (face): pair scores from ``eval_set.pairs`` (indices into the query list) →
      ``verification_accuracy`` (10 folds, or one per pair when there are fewer than 10 pairs),
      ``verification_std``, ``threshold`` (best over all pairs), ``tar@far=1e-3``/``1e-4`` and
      their thresholds ``threshold@far=...`` (see `tar_at_far` for FARs too small for the data), and
      ``gallery_rank1``/``gallery_mAP``: enrolled photos vs other photos of the same people
      (`face_gallery_metrics`).

    The key ``get_task(task).metric`` is always present. Raises ValueError naming what is wrong.
    """
    spec = get_task(task)
    query_feats = check_feats("query_feats", query_feats, len(eval_set.query))
    gallery_feats = check_feats("gallery_feats", gallery_feats, len(eval_set.gallery))
    dims = (query_feats.shape[1], gallery_feats.shape[1])
    if dims[0] != dims[1]:
        raise ValueError(f"query_feats and gallery_feats differ in dimension: {dims[0]} vs {dims[1]}")
    if spec.protocol == "verification":
        result = evaluate_face(query_feats, eval_set)
    elif spec.protocol == "recall":
        result = recall_at_k(query_feats, labels_of(eval_set.query))
    else:
        result = evaluate_reid(
            query_feats @ gallery_feats.T,
            labels_of(eval_set.query),
            labels_of(eval_set.gallery),
            cameras_of(eval_set.query),
            cameras_of(eval_set.gallery),
        )
    assert spec.metric in result, f"{task} result lacks {spec.metric}"
    return result


def evaluate_face(feats: np.ndarray, eval_set: EvalSet) -> dict[str, float]:
    """Verification metrics of the face pairs in `eval_set` (indices into the query list)."""
    i, j, same = pair_indices(eval_set.pairs, len(feats))
    scores = np.einsum("nd,nd->n", feats[i].astype(np.float64), feats[j].astype(np.float64))
    acc = verification_accuracy(scores, same, n_folds=min(FACE_MAX_FOLDS, len(scores)))
    result = {
        "verification_accuracy": acc["accuracy"],
        "verification_std": acc["std"],
        "threshold": acc["threshold"],
    }
    for name, far in FACE_FARS:
        tar, threshold = tar_at_far(scores, same, far)
        result[f"tar@far={name}"] = tar
        result[f"threshold@far={name}"] = threshold
    result.update(face_gallery_metrics(feats, labels_of(eval_set.query)))
    return result


def pair_indices(pairs: list[tuple[int, int, bool]], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split (i, j, same) pairs into index and flag arrays, checking indices lie in [0, n)."""
    if len(pairs) < 2:
        raise ValueError(f"face evaluation needs at least 2 pairs in eval_set.pairs, got {len(pairs)}")
    arr = np.asarray([(int(a), int(b), bool(s)) for a, b, s in pairs], dtype=np.int64)
    i, j, same = arr[:, 0], arr[:, 1], arr[:, 2].astype(bool)
    bad = (i < 0) | (i >= n) | (j < 0) | (j >= n)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(
            f"eval_set.pairs[{k}] = {pairs[k]!r} indexes outside the query list of {n} samples "
            f"({int(bad.sum())} such pair(s))"
        )
    return i, j, same


def check_feats(name: str, feats: np.ndarray, n_samples: int) -> np.ndarray:
    """2-D, finite, float32 embeddings with one row per sample."""
    feats = _validate.check_matrix(name, feats)
    if len(feats) != n_samples:
        raise ValueError(f"{name} has {len(feats)} rows but the eval set lists {n_samples} samples")
    return feats


def labels_of(samples: list) -> np.ndarray:
    """Identity / product labels of `samples` as an int64 array."""
    return np.asarray([s.label for s in samples], dtype=np.int64)


def cameras_of(samples: list) -> np.ndarray:
    """Camera ids of `samples` as an int64 array (-1 where the layout has none)."""
    return np.asarray([s.camera for s in samples], dtype=np.int64)
