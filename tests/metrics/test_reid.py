"""Re-id CMC/mAP: hand-worked cases, the same-camera rule, and a slow reference loop."""

import numpy as np
import pytest

from ufo.metrics import _validate
from ufo.metrics.reid import evaluate_reid

# 3 queries x 5 gallery images. Query pids [1, 2, 3], all from camera 0.
#   gallery:  g0      g1      g2      g3      g4
#   pid       1       2       1       3       2
#   camera    0       1       1       0       1
Q_PIDS = np.array([1, 2, 3])
Q_CAMS = np.array([0, 0, 0])
G_PIDS = np.array([1, 2, 1, 3, 2])
G_CAMS = np.array([0, 1, 1, 0, 1])
SIM = np.array(
    [
        [0.9, 0.8, 0.7, 0.1, 0.5],  # q0 (pid 1, cam 0)
        [0.2, 0.9, 0.6, 0.3, 0.4],  # q1 (pid 2, cam 0)
        [0.1, 0.2, 0.3, 0.9, 0.4],  # q2 (pid 3, cam 0)
    ],
    dtype=np.float32,
)


def test_hand_worked_case_with_exclusion_and_skipped_query():
    # q0: ranking g0 .9, g1 .8, g2 .7, g4 .5, g3 .1. g0 is pid 1 from camera 0 = the query's camera:
    #     excluded. Valid ranking g1 (miss), g2 (hit), g4, g3 -> first hit at rank 2, AP = 1/2.
    # q1: ranking g1 .9 (hit), g2 .6, g4 .4 (hit), g3 .3, g0 .2; no pid-2 image on camera 0, nothing
    #     excluded. Hits at ranks 1 and 3 -> AP = (1/1 + 2/3) / 2 = 5/6.
    # q2: its only pid-3 image g3 is on camera 0 -> excluded -> no valid match -> skipped.
    # rank1 = (0 + 1) / 2 = 0.5; rank5 = rank10 = 2/2 = 1; mAP = (1/2 + 5/6) / 2 = 2/3.
    r = evaluate_reid(SIM, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    assert r["rank1"] == pytest.approx(0.5)
    assert r["rank5"] == pytest.approx(1.0)
    assert r["rank10"] == pytest.approx(1.0)
    assert r["mAP"] == pytest.approx(2 / 3)
    assert r["num_valid_queries"] == 2
    assert r["num_skipped_queries"] == 1


def test_same_camera_exclusion_changes_the_answer():
    # Move g0 to camera 2: nothing is excluded for q0 any more. q0 hits g0 at rank 1 and g2 at
    # rank 3 -> AP = (1/1 + 2/3) / 2 = 5/6; q1 unchanged (5/6); q2 still skipped.
    # rank1 = 2/2 = 1; mAP = 5/6 (it was 2/3 with g0 on the query's camera).
    g_cams = np.array([2, 1, 1, 0, 1])
    r = evaluate_reid(SIM, Q_PIDS, G_PIDS, Q_CAMS, g_cams)
    assert r["rank1"] == pytest.approx(1.0)
    assert r["mAP"] == pytest.approx(5 / 6)


def test_unknown_camera_is_never_excluded():
    # With every camera -1 (unknown) nothing is excluded: q0 -> 5/6 as above, q1 -> 5/6,
    # q2 hits g3 at rank 1 -> AP 1. mAP = (5/6 + 5/6 + 1) / 3 = 8/9, rank1 = 1.
    r = evaluate_reid(SIM, Q_PIDS, G_PIDS, np.full(3, -1), np.full(5, -1))
    assert r["mAP"] == pytest.approx(8 / 9)
    assert r["rank1"] == 1.0
    assert r["num_skipped_queries"] == 0


def test_ties_rank_the_lower_gallery_index_first():
    # Equal scores: a stable sort keeps gallery order, so g0 (miss) ranks before g1 (hit):
    # first hit at rank 2 -> rank1 = 0, AP = 1/2.
    r = evaluate_reid(np.array([[0.5, 0.5]]), [7], [3, 7], [0], [1, 1])
    assert r["rank1"] == 0.0
    assert r["mAP"] == pytest.approx(0.5)


def test_max_rank_controls_reported_ranks():
    assert set(evaluate_reid(SIM, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=3)) == {
        "rank1",
        "rank3",
        "mAP",
        "num_valid_queries",
        "num_skipped_queries",
    }
    assert "rank20" in evaluate_reid(SIM, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=20)


def slow_reid(sim, q_pids, g_pids, q_cams, g_cams, ranks=(1, 5, 10)):
    """Independent per-query loop: the textbook definitions, one query at a time."""
    aps, firsts = [], []
    for q in range(sim.shape[0]):
        order = sorted(range(sim.shape[1]), key=lambda g: (-float(sim[q, g]), g))
        valid = [g for g in order if not (g_pids[g] == q_pids[q] and g_cams[g] == q_cams[q])]
        hits = [rank for rank, g in enumerate(valid, start=1) if g_pids[g] == q_pids[q]]
        if not hits:
            continue
        firsts.append(hits[0])
        aps.append(sum((n + 1) / rank for n, rank in enumerate(hits)) / len(hits))
    out = {f"rank{k}": sum(f <= k for f in firsts) / len(firsts) for k in ranks}
    out["mAP"] = sum(aps) / len(aps)
    return out, len(firsts)


@pytest.mark.parametrize("block_cells", [_validate.MAX_BLOCK_CELLS, 7 * 60])
def test_matches_slow_loop_on_random_data(monkeypatch, block_cells):
    # block_cells = 7 rows of 60 forces several query blocks, including a short last one.
    monkeypatch.setattr(_validate, "MAX_BLOCK_CELLS", block_cells)
    rng = np.random.default_rng(0)
    n_q, n_g = 40, 60
    q_pids, g_pids = rng.integers(0, 14, n_q), rng.integers(0, 12, n_g)  # pids 12, 13: no match
    q_cams, g_cams = rng.integers(0, 3, n_q), rng.integers(0, 3, n_g)
    sim = rng.normal(size=(n_q, n_g)).astype(np.float32)
    sim[:, ::3] = np.round(sim[:, ::3])  # many exact ties
    expected, n_valid = slow_reid(sim, q_pids, g_pids, q_cams, g_cams)
    got = evaluate_reid(sim, q_pids, g_pids, q_cams, g_cams)
    assert 0 < n_valid < n_q  # the data exercises skipping
    assert got["num_valid_queries"] == n_valid
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="none of the 1 queries has a valid match"):
        evaluate_reid(np.ones((1, 2)), np.array([1]), np.array([1, 2]), np.array([0]), np.array([0, 0]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.ones(3), [1], [1, 2, 3], [0], [1, 1, 1]), "sim must be 2-D"),
        ((np.ones((1, 3)), [1, 2], [1, 2, 3], [0], [1, 1, 1]), "q_pids has 2 entries, expected 1"),
        ((np.ones((1, 3)), [1], [1, 2], [0], [1, 1, 1]), "g_pids has 2 entries, expected 3"),
        ((np.ones((1, 3)), [1], [1, 2, 3], [0], [1, 1]), "g_camids has 2 entries, expected 3"),
        ((np.array([[np.nan, 1, 1]]), [1], [1, 2, 3], [0], [1, 1, 1]), "sim holds 1 NaN"),
        ((np.ones((0, 3)), [], [1, 2, 3], [], [1, 1, 1]), "at least one query"),
    ],
)
def test_invalid_input_raises(args, message):
    with pytest.raises(ValueError, match=message):
        evaluate_reid(*args)


def test_invalid_max_rank_raises():
    with pytest.raises(ValueError, match="max_rank"):
        evaluate_reid(SIM, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=0)
