"""evaluate_embeddings: dispatch per task, headline keys, and input validation."""

import numpy as np
import pytest

from ufo.data.types import EvalSet, Sample
from ufo.metrics import evaluate_embeddings, evaluate_reid, recall_at_k, tar_at_far, verification_accuracy
from ufo.tasks import TASK_SPECS, TASKS


def unit_vectors(degrees):
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def samples(labels, cameras=None):
    cameras = [-1] * len(labels) if cameras is None else cameras
    pairs = enumerate(zip(labels, cameras, strict=True))
    return [Sample(f"img{i}.jpg", int(p), int(c)) for i, (p, c) in pairs]


# Re-id: 2 queries x 3 gallery images on the unit circle.
#   query  q0 pid 1 cam 0 at 0 deg;  q1 pid 2 cam 0 at 90 deg
#   gallery g0 pid 1 cam 0 at 5 deg (same camera as q0: excluded); g1 pid 1 cam 1 at 40 deg;
#           g2 pid 2 cam 1 at 80 deg
# q0 ranks g0 (excluded), g1 (hit), g2 -> rank 1, AP 1. q1 ranks g2 (hit) first -> rank 1, AP 1.
REID_SET = EvalSet(query=samples([1, 2], [0, 0]), gallery=samples([1, 1, 2], [0, 1, 1]))
REID_Q = unit_vectors([0, 90])
REID_G = unit_vectors([5, 40, 80])


@pytest.mark.parametrize("task", ["person", "vehicle"])
def test_reid_tasks_use_pids_and_cameras(task):
    r = evaluate_embeddings(task, REID_Q, REID_G, REID_SET)
    assert r["mAP"] == pytest.approx(1.0)
    assert r["rank1"] == pytest.approx(1.0)
    expected = evaluate_reid(REID_Q @ REID_G.T, [1, 2], [1, 1, 2], [0, 0], [0, 1, 1])
    assert r == expected


def test_product_uses_the_query_list_as_gallery():
    # Angles 0, 10, 30, 65 with labels 0, 0, 1, 1: nearest others 1*, 0*, 1, 2* -> ranks 1, 1, 3, 1
    # (q2 at 30 deg: 1 at 20, 0 at 30, 3* at 35). recall@1 = 3/4.
    feats = unit_vectors([0, 10, 30, 65])
    items = samples([0, 0, 1, 1])
    r = evaluate_embeddings("product", feats, feats, EvalSet(query=items, gallery=items))
    assert r["recall@1"] == pytest.approx(0.75)
    assert r == recall_at_k(feats, [0, 0, 1, 1])


def test_face_builds_pair_scores_from_query_indices():
    # Four faces at 0, 20, 60, 90 deg. Pairs (i, j, same) -> score cos(angle difference):
    #   (0,1,T) cos20 = .940   (2,3,T) cos30 = .866   (0,2,F) cos60 = .5   (1,3,F) cos70 = .342
    # Separable: the best threshold over all pairs is the gap midpoint (.5 + .866) / 2.
    feats = unit_vectors([0, 20, 60, 90])
    items = samples([0, 0, 1, 1])
    pairs = [(0, 1, True), (2, 3, True), (0, 2, False), (1, 3, False)]
    r = evaluate_embeddings("face", feats, feats, EvalSet(query=items, gallery=items, pairs=pairs))
    scores = np.cos(np.deg2rad([20, 30, 60, 70]))
    same = np.array([True, True, False, False])
    acc = verification_accuracy(scores, same, n_folds=4)  # fewer than 10 pairs: one fold per pair
    assert r["verification_accuracy"] == pytest.approx(acc["accuracy"])
    assert r["verification_std"] == pytest.approx(acc["std"])
    assert r["threshold"] == pytest.approx((np.cos(np.deg2rad(60)) + np.cos(np.deg2rad(30))) / 2, abs=1e-6)
    # 2 impostors: FAR 1e-3 and 1e-4 are not resolvable -> threshold above the top impostor (.5),
    # midway to the next score (.866); both genuine pairs pass -> TAR 1.
    assert r["tar@far=1e-3"] == 1.0 and r["tar@far=1e-4"] == 1.0
    assert r["threshold@far=1e-4"] == pytest.approx(tar_at_far(scores, same, 1e-4)[1], abs=1e-6)
    face_keys = {"verification_accuracy", "verification_std", "threshold", "tar@far=1e-3", "tar@far=1e-4"}
    assert face_keys <= set(r)


@pytest.mark.parametrize("task", TASKS)
def test_headline_metric_is_always_present(task):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 4)
    feats = rng.normal(size=(24, 16)).astype(np.float32) + 3 * np.eye(16, dtype=np.float32)[labels]
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    items = samples(labels, np.tile([0, 1, 2, 3], 6))
    pairs = [(i, i + 1, True) for i in range(0, 24, 4)] + [(i, i + 4, False) for i in range(0, 20, 4)]
    r = evaluate_embeddings(task, feats, feats, EvalSet(query=items, gallery=items, pairs=pairs))
    value = r[TASK_SPECS[task].metric]
    assert 0.0 <= value <= 1.0 and all(isinstance(v, float) for v in r.values())


FEATS3 = unit_vectors([0, 10, 20])
SET3 = EvalSet(query=samples([0, 0, 1]), gallery=samples([0, 0, 1]), pairs=[(0, 1, True), (0, 2, False)])


@pytest.mark.parametrize(
    ("task", "query", "gallery", "eval_set", "message"),
    [
        ("cars", FEATS3, FEATS3, SET3, "unknown task 'cars'"),
        ("product", FEATS3[0], FEATS3, SET3, "query_feats must be 2-D"),
        ("product", FEATS3[:2], FEATS3, SET3, "query_feats has 2 rows but the eval set lists 3 samples"),
        ("person", FEATS3, FEATS3[:2], SET3, "gallery_feats has 2 rows but the eval set lists 3"),
        ("person", FEATS3, np.ones((3, 4), np.float32), SET3, "differ in dimension: 2 vs 4"),
        ("person", np.where(np.eye(3, 2) > 0, np.nan, FEATS3), FEATS3, SET3, "query_feats holds 2 NaN"),
        ("face", FEATS3, FEATS3, EvalSet(SET3.query, SET3.gallery, [(0, 1, True)]), "at least 2 pairs"),
        (
            "face",
            FEATS3,
            FEATS3,
            EvalSet(SET3.query, SET3.gallery, [(0, 1, True), (0, 3, False)]),
            r"pairs\[1\] = \(0, 3, False\) indexes outside the query list of 3",
        ),
        (
            "face",
            FEATS3,
            FEATS3,
            EvalSet(SET3.query, SET3.gallery, [(0, 1, True), (1, 0, True)]),
            "0 impostor",
        ),
    ],
)
def test_invalid_input_raises(task, query, gallery, eval_set, message):
    with pytest.raises(ValueError, match=message):
        evaluate_embeddings(task, query, gallery, eval_set)
