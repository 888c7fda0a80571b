"""Face search on held-out people: enrolled photos vs other photos of the same people.

This is how the service is used for faces (enroll a few photos per person, search with a new one), so it
is reported beside LFW-style verification. Each identity's images, in their given order, are split in two:
the first half is enrolled (the gallery), the rest are queries; a query's relevant images are its
person's enrolled ones. Rank-1 and mAP come from the re-id ranking code with cameras unknown (nothing is
excluded as a same-camera match).
"""

from __future__ import annotations

import numpy as np

from ufo.metrics.reid import UNKNOWN_CAMERA, evaluate_reid


def enrolled_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gallery rows, query rows): per identity, the first ceil(n/2) rows enrolled, the rest queries.

    Identities with a single image are enrolled only (they act as distractors)."""
    labels = np.asarray(labels)
    gallery, query = [], []
    for label in dict.fromkeys(labels.tolist()):
        rows = np.flatnonzero(labels == label)
        cut = (len(rows) + 1) // 2
        gallery += rows[:cut].tolist()
        query += rows[cut:].tolist()
    if not query:
        raise ValueError("face gallery protocol needs an identity with at least 2 images")
    return np.asarray(gallery, dtype=np.int64), np.asarray(query, dtype=np.int64)


def face_gallery_metrics(feats: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``gallery_rank1`` and ``gallery_mAP`` of L2-normalised `feats` (one row per image, `labels` its
    person) under the enrolled/query split above."""
    labels = np.asarray(labels)
    if len(feats) != len(labels):
        raise ValueError(f"face gallery protocol: {len(feats)} feature rows but {len(labels)} labels")
    gallery, query = enrolled_split(labels)
    unknown = np.full(len(labels), UNKNOWN_CAMERA, dtype=np.int64)
    result = evaluate_reid(feats[query] @ feats[gallery].T, labels[query], labels[gallery], unknown[query],
                           unknown[gallery])
    return {"gallery_rank1": result["rank1"], "gallery_mAP": result["mAP"]}
