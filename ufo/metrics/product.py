"""Product retrieval metric: Recall@K with the query set as its own gallery (SOP protocol).

Every image queries all the others (itself excluded); Recall@K is the fraction of queries with at
least one image of the same product among the K most similar. Similarity is the inner product of
the (L2-normalised) embeddings; ties are broken by the lower gallery index, as a stable sort by
descending score would.

Clamping: a query's gallery has n - 1 images, so for K >= n - 1 every image is retrieved and
Recall@K equals Recall@(n - 1) = 1.0; the key keeps the requested K (``"recall@100"``).
A query whose product has no other image can never be a hit: it is skipped and counted (the SOP
test split has at least two images per product, so nothing is skipped there).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ufo.metrics import _validate

log = logging.getLogger(__name__)


def recall_at_k(feats: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 10, 100)) -> dict[str, float]:
    """Recall@K for each K in `ks`, each image querying all the others.

    Returns ``"recall@{k}"`` fractions in [0, 1] plus the counts ``"num_valid_queries"`` and
    ``"num_skipped_queries"``. Raises ValueError on malformed input or when no product has two
    images.
    """
    feats = _validate.check_matrix("feats", feats)
    labels = _validate.check_vector("labels", labels, len(feats))
    ks = _validate.check_ks(ks)
    n = len(feats)
    if n < 2:
        raise ValueError(f"recall@k needs at least two images, got {n}")

    ranks = first_match_ranks(feats, labels)
    valid = ranks > 0
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise ValueError(f"none of the {n} images shares its label with another image: nothing to retrieve")
    if n_valid < n:
        log.info("recall@k: skipped %d of %d queries whose label has no other image", n - n_valid, n)
    out = {f"recall@{k}": float(np.mean(ranks[valid] <= k)) for k in ks}
    out["num_valid_queries"] = float(n_valid)
    out["num_skipped_queries"] = float(n - n_valid)
    return out


def first_match_ranks(feats: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1-based rank of each query's best same-label image among the others (0 when there is none).

    The rank is counted without sorting: the best match is the same-label image with the highest
    score (lowest index among equals); its rank is 1 + the number of other images that score higher
    or score the same with a lower index. Works on blocks of queries to bound memory.
    """
    n = len(feats)
    ranks = np.zeros(n, dtype=np.int64)
    step = _validate.block_rows(n)
    for start in range(0, n, step):
        rows = np.arange(start, min(start + step, n))
        ranks[rows] = first_match_ranks_block(feats[rows] @ feats.T, rows, labels)
    return ranks


def first_match_ranks_block(sim: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`first_match_ranks` for the queries `rows`, given their similarity rows `sim`."""
    local = np.arange(len(rows))
    sim = sim.astype(np.float64)
    sim[local, rows] = -np.inf  # a query never retrieves itself
    others = np.ones(sim.shape, dtype=bool)
    others[local, rows] = False
    positive = (labels[None, :] == labels[rows][:, None]) & others
    has_match = positive.any(axis=1)

    positive_sim = np.where(positive, sim, -np.inf)
    best_score = positive_sim.max(axis=1)
    # np.argmax returns the first (lowest-index) maximum: the best match under a stable sort.
    best_index = np.argmax(positive_sim, axis=1)
    cols = np.arange(sim.shape[1])[None, :]
    ahead = (sim > best_score[:, None]) | ((sim == best_score[:, None]) & (cols < best_index[:, None]))
    ahead &= others
    return np.where(has_match, 1 + ahead.sum(axis=1), 0)
