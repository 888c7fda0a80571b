"""Face search protocol (enrolled half vs the other half) and the classical baselines it is reported beside."""

import numpy as np
import pytest

from ufo.metrics.baselines import fit_fisherfaces, fit_pixels
from ufo.metrics.face_gallery import enrolled_split, face_gallery_metrics


def test_enrolled_split_takes_the_first_half_of_each_identity_in_order():
    gallery, query = enrolled_split(np.array([7, 7, 7, 3, 3, 3, 3, 9]))
    assert gallery.tolist() == [0, 1, 3, 4, 7]  # ceil(3/2)=2 of id 7, 2 of id 3, the lone id 9
    assert query.tolist() == [2, 5, 6]


def test_enrolled_split_refuses_a_set_without_queries():
    with pytest.raises(ValueError, match="at least 2 images"):
        enrolled_split(np.array([1, 2, 3]))


def test_gallery_metrics_hand_computed():
    # id 0: enrolled e0 (0 deg), query q0 (10 deg); id 1: enrolled e1 (60 deg), query q1 (40 deg).
    # q1 is nearer e1 (20 deg) than e0 (40 deg): rank 1. Move q1 to 25 deg: e0 (25) beats e1 (35): AP 1/2.
    def feats(q1_deg):
        rad = np.deg2rad([0, 10, 60, q1_deg])
        return np.stack([np.cos(rad), np.sin(rad)], 1).astype(np.float32)

    labels = np.array([0, 0, 1, 1])
    assert face_gallery_metrics(feats(40), labels) == {"gallery_rank1": 1.0, "gallery_mAP": 1.0}
    worse = face_gallery_metrics(feats(25), labels)
    assert worse["gallery_rank1"] == pytest.approx(0.5)
    assert worse["gallery_mAP"] == pytest.approx(0.75)


def test_gallery_metrics_refuses_mismatched_rows():
    with pytest.raises(ValueError, match="3 feature rows but 4 labels"):
        face_gallery_metrics(np.ones((3, 2), np.float32), np.array([0, 0, 1, 1]))


def people(rng, basis, n_people, per_person, noise=0.3):
    """Identities live in the first 6 rows of `basis`; lighting-like nuisance, 4x stronger, in the next 3."""
    labels = np.repeat(np.arange(n_people), per_person)
    identity = rng.normal(size=(n_people, 6))[labels] @ basis[:6]
    nuisance = 4 * rng.normal(size=(len(labels), 3)) @ basis[6:9]
    x = identity + nuisance + noise * rng.normal(size=(len(labels), basis.shape[1]))
    return x.astype(np.float32), labels


def test_fisherfaces_beats_pixels_when_a_nuisance_direction_dominates():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(64, 9)))[0].T
    train, train_labels = people(rng, basis, 30, 10)
    test, test_labels = people(rng, basis, 10, 10)
    pixels = face_gallery_metrics(fit_pixels(train)(test), test_labels)
    fisher = face_gallery_metrics(fit_fisherfaces(train, train_labels)(test), test_labels)
    # LDA learns to ignore the shared nuisance; raw pixels cannot
    assert fisher["gallery_mAP"] > pixels["gallery_mAP"] + 0.05
    assert np.allclose(np.linalg.norm(fit_pixels(train)(test), axis=1), 1.0, atol=1e-5)


def test_fisherfaces_needs_two_classes_and_more_images_than_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        fit_fisherfaces(np.ones((4, 8)), np.zeros(4))
