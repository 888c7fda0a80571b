"""Face verification metrics: LFW-style k-fold accuracy and TAR at a fixed FAR.

A pair is predicted "same person" when its score (cosine similarity of the two embeddings) is
``>= threshold``. Thresholds are chosen among the cut points that change the decision on the data:
the midpoints between consecutive distinct scores, plus the lowest score (accept everything) and a
value just above the highest (reject everything). A midpoint is the widest-margin threshold for a
given split of the data, so it transfers better to new pairs than a threshold equal to a score.
Among equally accurate thresholds the lowest wins (deterministic).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ufo.metrics import _validate

log = logging.getLogger(__name__)


def verification_accuracy(
    scores: np.ndarray, same: np.ndarray, n_folds: int = 10, *, seed: int | None = None
) -> dict[str, float]:
    """k-fold verification accuracy, as in the LFW protocol.

    For each fold the threshold that maximises accuracy on the other ``n_folds - 1`` folds is
    applied to the held-out fold. Folds are contiguous slices of the pairs in the given order (LFW's
    pairs file is laid out that way); pass `seed` to shuffle the pairs first with that seed.

    Returns ``"accuracy"`` (mean held-out accuracy), ``"std"`` (population std over the folds,
    as the LFW reference code reports it) and ``"threshold"``: the threshold that maximises accuracy
    over ALL pairs — the calibrated operating point a service should use.
    """
    scores, same = check_pairs(scores, same)
    n = len(scores)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or not 2 <= n_folds <= n:
        raise ValueError(f"n_folds must be an integer in [2, number of pairs = {n}], got {n_folds!r}")
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    folds = np.array_split(order, n_folds)

    fold_acc = np.empty(n_folds)
    for i, test in enumerate(folds):
        train = np.ones(n, dtype=bool)
        train[test] = False
        threshold = best_threshold(scores[train], same[train])
        fold_acc[i] = accuracy_at(scores[test], same[test], threshold)
    return {
        "accuracy": float(fold_acc.mean()),
        "std": float(fold_acc.std()),
        "threshold": best_threshold(scores, same),
    }


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> tuple[float, float]:
    """True-accept rate at the lowest threshold whose false-accept rate is at most `far`.

    With ``n_imp`` impostor pairs at most ``k = floor(far * n_imp)`` of them may be accepted, so the
    threshold sits just above the (k+1)-th highest impostor score: at the midpoint between it and the
    next higher score among all pairs (the same TAR on the data with a margin), or just above it
    when no score is higher.

    Not resolvable: when ``far * n_imp < 1`` (e.g. FAR 1e-4 with fewer than 10,000 impostor pairs)
    no impostor may be accepted, the threshold lies above the highest impostor score, and the
    returned TAR is the TAR at an empirical FAR of 0 — a conservative (lower) estimate of the TAR at
    `far`. Returns ``(tar, threshold)``.
    """
    scores, same = check_pairs(scores, same)
    if not 0.0 <= far < 1.0 or math.isnan(far):
        raise ValueError(f"far must be in [0, 1), got {far!r}")
    genuine, impostor = scores[same], scores[~same]
    if len(genuine) == 0 or len(impostor) == 0:
        counts = f"{len(genuine)} genuine and {len(impostor)} impostor"
        raise ValueError(f"TAR@FAR needs both genuine and impostor pairs, got {counts}")
    k = int(math.floor(far * len(impostor) * (1 + 1e-9)))  # tolerate 0.29 * 100 = 28.99999...
    if k == 0:
        log.debug("FAR %g not resolvable with %d impostor pairs: using FAR 0", far, len(impostor))
    cut = np.sort(impostor)[::-1][k]  # the highest impostor score that must be rejected
    above = scores[scores > cut]
    threshold = (cut + above.min()) / 2 if len(above) else float(np.nextafter(cut, np.inf))
    tar = float(np.mean(genuine >= threshold))
    return tar, float(threshold)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold (see module docstring) that maximises accuracy on these pairs; lowest on ties."""
    candidates = candidate_thresholds(scores)
    acc = accuracies_at(scores, same, candidates)
    return float(candidates[int(np.argmax(acc))])


def candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """Ascending thresholds, one per distinct accept set: min, midpoints, just above max."""
    u = np.unique(scores)
    mids = (u[:-1] + u[1:]) / 2
    return np.concatenate([u[:1], mids, [np.nextafter(u[-1], np.inf)]])


def accuracies_at(scores: np.ndarray, same: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Accuracy of ``score >= t`` for every t in `thresholds`, in O((n + m) log n)."""
    genuine = np.sort(scores[same])
    impostor = np.sort(scores[~same])
    true_accepts = len(genuine) - np.searchsorted(genuine, thresholds, side="left")
    true_rejects = np.searchsorted(impostor, thresholds, side="left")
    return (true_accepts + true_rejects) / len(scores)


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided correctly by ``score >= threshold``."""
    return float(np.mean((scores >= threshold) == same))


def check_pairs(scores: object, same: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate pair scores (1-D, finite, non-empty) and same-person flags of the same length."""
    scores = _validate.check_vector("scores", scores, dtype=np.float64)
    if len(scores) == 0:
        raise ValueError("scores is empty: verification needs at least one pair")
    return scores, _validate.check_bools("same", same, len(scores))
