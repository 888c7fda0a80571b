"""Re-identification metrics (CMC rank-k and mAP) under the Market-1501 protocol.

For every query the gallery is ranked by descending similarity; gallery images that show the
query's identity *from the query's camera* are removed from that query's ranking (they would be
trivial matches). What remains is the query's valid gallery. A query whose valid gallery holds no
image of its identity cannot be scored: it is skipped and counted, as in the reference evaluation
code (torchreid ``eval_market1501``). Junk images (Market-1501 pid -1) are the reader's job to drop;
distractors (pid 0) are ordinary non-matching gallery images here. Camera id -1 means "unknown"
(`Sample.camera` for layouts without cameras): such an image is never excluded as same-camera.

Ties in similarity are broken deterministically: a stable sort by descending score, so among equal
scores the lower gallery index ranks first.
"""

from __future__ import annotations

import logging

import numpy as np

from ufo.metrics import _validate

log = logging.getLogger(__name__)

REPORTED_RANKS: tuple[int, ...] = (1, 5, 10)
UNKNOWN_CAMERA = -1


def evaluate_reid(
    sim: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 10,
) -> dict[str, float]:
    """CMC and mAP of a query x gallery similarity matrix (higher = more similar).

    Returns fractions in [0, 1]: ``"rank{k}"`` for k in (1, 5, 10) with k <= `max_rank`, plus
    ``"rank{max_rank}"``; ``"mAP"``; and the counts ``"num_valid_queries"`` and
    ``"num_skipped_queries"`` (queries without a valid match). Raises ValueError when the inputs
    are malformed or when no query has a valid match.

    A rank-k larger than a query's valid gallery simply counts that query as a hit whenever it has
    a match (its first match is then necessarily within the first k).
    """
    sim = _validate.check_matrix("sim", sim)
    n_q, n_g = sim.shape
    q_pids = _validate.check_vector("q_pids", q_pids, n_q)
    q_camids = _validate.check_vector("q_camids", q_camids, n_q)
    g_pids = _validate.check_vector("g_pids", g_pids, n_g)
    g_camids = _validate.check_vector("g_camids", g_camids, n_g)
    if isinstance(max_rank, bool) or not isinstance(max_rank, int | np.integer) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    if n_q == 0 or n_g == 0:
        raise ValueError(f"re-id evaluation needs at least one query and one gallery image, got {sim.shape}")

    first_hit, ap = rank_queries(sim, q_pids, g_pids, q_camids, g_camids)
    valid = first_hit > 0
    n_valid = int(valid.sum())
    n_skipped = n_q - n_valid
    if n_valid == 0:
        raise ValueError(
            f"none of the {n_q} queries has a valid match in the gallery (same identity, different "
            "camera): check that query and gallery share identities and camera ids"
        )
    if n_skipped:
        log.info("re-id: skipped %d of %d queries with no valid gallery match", n_skipped, n_q)
    return summarise(first_hit[valid], ap[valid], max_rank, n_skipped)


def rank_queries(
    sim: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the 1-based rank of its first valid match (0 if none) and its average precision.

    Works on blocks of queries so memory stays bounded for large galleries.
    """
    n_q, n_g = sim.shape
    first_hit = np.zeros(n_q, dtype=np.int64)
    ap = np.zeros(n_q, dtype=np.float64)
    step = _validate.block_rows(n_g)
    for start in range(0, n_q, step):
        rows = slice(start, min(start + step, n_q))
        first_hit[rows], ap[rows] = rank_block(sim[rows], q_pids[rows], g_pids, q_camids[rows], g_camids)
    return first_hit, ap


def rank_block(
    sim: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """`rank_queries` for one block of queries, fully vectorised."""
    order = np.argsort(-sim, axis=1, kind="stable")
    same_pid = g_pids[order] == q_pids[:, None]
    same_cam = (g_camids[order] == q_camids[:, None]) & (q_camids[:, None] != UNKNOWN_CAMERA)
    keep = ~(same_pid & same_cam)  # the valid gallery, in ranked order
    match = same_pid & keep
    valid_rank = np.cumsum(keep, axis=1)  # 1-based rank among valid images, at each position
    n_match = match.sum(axis=1)
    has_match = n_match > 0

    first_pos = np.argmax(match, axis=1)
    first_hit = np.where(has_match, valid_rank[np.arange(len(sim)), first_pos], 0)

    # AP = mean over the matches of precision at the match = (#matches so far) / (valid rank).
    precision = np.cumsum(match, axis=1) / np.maximum(valid_rank, 1)
    ap_sum = np.where(match, precision, 0.0).sum(axis=1)
    ap = np.divide(ap_sum, n_match, out=np.zeros(len(sim)), where=has_match)
    return first_hit, ap


def summarise(first_hit: np.ndarray, ap: np.ndarray, max_rank: int, n_skipped: int) -> dict[str, float]:
    """Turn per-query first-match ranks and APs (valid queries only) into the result dict."""
    ranks = sorted({k for k in REPORTED_RANKS if k <= max_rank} | {int(max_rank)})
    out = {f"rank{k}": float(np.mean(first_hit <= k)) for k in ranks}
    out["mAP"] = float(np.mean(ap))
    out["num_valid_queries"] = float(len(first_hit))
    out["num_skipped_queries"] = float(n_skipped)
    return out
