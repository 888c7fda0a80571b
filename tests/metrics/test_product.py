"""Product Recall@K: a hand-worked case on unit vectors, ties, clamping, and a slow reference."""

import numpy as np
import pytest

from ufo.metrics import _validate
from ufo.metrics.product import recall_at_k


def unit_vectors(degrees):
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


# Five images on the unit circle; similarity = cos(angle between them), so nearer angle = more similar.
#   image   0    1    2    3    4
#   angle   0   10   30   65  110
#   label   0    0    1    1    2
FEATS = unit_vectors([0, 10, 30, 65, 110])
LABELS = np.array([0, 0, 1, 1, 2])


def test_hand_worked_case():
    # Angular distances to the others, nearest first; the query's own label marked *:
    #   q0:  1*(10)  2(30)   3(65)  4(110)   -> first match at rank 1
    #   q1:  0*(10)  2(20)   3(55)  4(100)   -> rank 1
    #   q2:  1(20)   0(30)   3*(35) 4(80)    -> rank 3
    #   q3:  2*(35)  4(45)   1(55)  0(65)    -> rank 1
    #   q4:  label 2 has no other image      -> skipped
    # recall@1 = 3/4, recall@2 = 3/4, recall@3 = 4/4; recall@10 is clamped to the 4 other images -> 1.
    r = recall_at_k(FEATS, LABELS, ks=(1, 2, 3, 10))
    assert r["recall@1"] == pytest.approx(0.75)
    assert r["recall@2"] == pytest.approx(0.75)
    assert r["recall@3"] == pytest.approx(1.0)
    assert r["recall@10"] == pytest.approx(1.0)
    assert r["num_valid_queries"] == 4
    assert r["num_skipped_queries"] == 1


def test_default_ks_keep_their_names_when_clamped():
    assert set(recall_at_k(FEATS, LABELS)) == {
        "recall@1",
        "recall@10",
        "recall@100",
        "num_valid_queries",
        "num_skipped_queries",
    }


def test_ties_rank_the_lower_index_first():
    # Five identical vectors: every score is 1, so each query ranks the others by index.
    # Labels [5, 6, 6, 5, 5]:
    #   q0 (5): 1, 2, 3* -> rank 3      q1 (6): 0, 2* -> rank 2      q2 (6): 0, 1* -> rank 2
    #   q3 (5): 0* -> rank 1            q4 (5): 0* -> rank 1
    # recall@1 = 2/5, recall@2 = 4/5, recall@3 = 5/5. (Ranking ties by the higher index instead
    # would give recall@1 = 3/5.)
    r = recall_at_k(unit_vectors([0] * 5), np.array([5, 6, 6, 5, 5]), ks=(1, 2, 3))
    assert r["recall@1"] == pytest.approx(2 / 5)
    assert r["recall@2"] == pytest.approx(4 / 5)
    assert r["recall@3"] == pytest.approx(1.0)


def slow_recall(feats, labels, ks):
    """Independent loop: sort the others by (-score, index), look at the first k labels."""
    sim = feats.astype(np.float64) @ feats.T.astype(np.float64)  # exact for small-integer feats
    hits = {k: [] for k in ks}
    for q in range(len(feats)):
        others = [g for g in range(len(feats)) if g != q]
        if not any(labels[g] == labels[q] for g in others):
            continue
        ranked = sorted(others, key=lambda g: (-sim[q, g], g))
        for k in ks:
            hits[k].append(any(labels[g] == labels[q] for g in ranked[:k]))
    return {f"recall@{k}": float(np.mean(h)) for k, h in hits.items()}


@pytest.mark.parametrize("block_cells", [_validate.MAX_BLOCK_CELLS, 5 * 80])
def test_matches_slow_loop_on_random_data(monkeypatch, block_cells):
    monkeypatch.setattr(_validate, "MAX_BLOCK_CELLS", block_cells)
    rng = np.random.default_rng(0)
    # Small-integer vectors: every inner product is an exact small integer in any summation order,
    # so both implementations see the same scores, with many exact ties.
    feats = rng.integers(-2, 3, size=(80, 6)).astype(np.float32)
    labels = rng.integers(0, 30, 80)  # some labels with a single image -> skipped queries
    ks = (1, 2, 5, 10, 100)
    got = recall_at_k(feats, labels, ks)
    expected = slow_recall(feats, labels, ks)
    assert 0 < got["num_skipped_queries"] < 80
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.ones(4), [0, 0, 1, 1]), "feats must be 2-D"),
        ((np.ones((4, 2)), [0, 0, 1]), "labels has 3 entries, expected 4"),
        ((np.ones((1, 2)), [0]), "at least two images"),
        ((np.ones((3, 2)), [0, 1, 2]), "none of the 3 images shares its label"),
        ((np.full((2, 2), np.inf), [0, 0]), "feats holds 0 NaN and 4 infinite"),
    ],
)
def test_invalid_input_raises(args, message):
    with pytest.raises(ValueError, match=message):
        recall_at_k(*args)


@pytest.mark.parametrize("ks", [(), (0,), (1, -5), (1.5,), (True,)])
def test_invalid_ks_raise(ks):
    with pytest.raises(ValueError, match="ks must be"):
        recall_at_k(FEATS, LABELS, ks)
