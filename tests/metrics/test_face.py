"""Face verification: k-fold accuracy, calibrated threshold and TAR@FAR on hand-worked scores."""

import numpy as np
import pytest

from ufo.metrics.face import tar_at_far, verification_accuracy

# Six pairs, in this order (P = same person, N = different people):
#   idx    0     1     2     3     4     5
#   score  0.9   0.6   0.2   0.8   0.4   0.3
#   same   P     N     N     P     P     N
SCORES = np.array([0.9, 0.6, 0.2, 0.8, 0.4, 0.3], dtype=np.float32)
SAME = np.array([True, False, False, True, True, False])


def test_hand_worked_two_folds():
    # Candidate thresholds (accept when score >= t): the lowest score, midpoints, just above the top.
    # All pairs, sorted: .2N .3N .4P .6N .8P .9P
    #   t=.2 -> 3/6, .25 -> 4/6, .35 -> 5/6, .5 -> 4/6, .7 -> 5/6, .85 -> 4/6, >.9 -> 3/6
    #   best 5/6 at .35 and .7 -> the lowest, 0.35, is the calibrated threshold.
    # Fold A = idx 0-2 {.9P .6N .2N}, fold B = idx 3-5 {.8P .4P .3N} (contiguous).
    #   Train on B: .3 -> 2/3, .35 -> 3/3, .6 -> 2/3, >.8 -> 1/3 => t=.35; on A: .9P ok, .6N wrongly
    #   accepted, .2N ok -> 2/3.
    #   Train on A: .2 -> 1/3, .4 -> 2/3, .75 -> 3/3, >.9 -> 2/3 => t=.75; on B: .8P ok, .4P wrongly
    #   rejected, .3N ok -> 2/3.
    # accuracy = mean(2/3, 2/3) = 2/3, std = 0.
    r = verification_accuracy(SCORES, SAME, n_folds=2)
    assert r["accuracy"] == pytest.approx(2 / 3)
    assert r["std"] == pytest.approx(0.0)
    assert r["threshold"] == pytest.approx(0.35)


def test_three_folds_have_a_spread():
    # Folds {0,1} {2,3} {4,5}.
    #   Test {.9P .6N}: train {.2N .8P .4P .3N} -> best .35 (4/4) -> .9 ok, .6 wrong -> 1/2.
    #   Test {.2N .8P}: train {.9P .6N .4P .3N} -> .35 gives 3/4, .5 gives 2/4, .75 gives 3/4 ->
    #     lowest best .35 -> .2 rejected ok, .8 accepted ok -> 1.
    #   Test {.4P .3N}: train {.9P .6N .2N .8P} -> .7 (4/4) -> .4 wrong, .3 ok -> 1/2.
    # mean = 2/3, population std = sqrt(((1/2-2/3)^2 * 2 + (1/3)^2) / 3) = sqrt(1/18).
    r = verification_accuracy(SCORES, SAME, n_folds=3)
    assert r["accuracy"] == pytest.approx(2 / 3)
    assert r["std"] == pytest.approx(np.sqrt(1 / 18))


def test_separable_scores_give_full_accuracy_and_a_gap_threshold():
    # Impostors .1 .2 .3, genuine .7 .8 .9 interleaved: leave-one-out always finds the gap.
    scores = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7])
    same = np.array([0, 1, 0, 1, 0, 1], dtype=bool)
    r = verification_accuracy(scores, same, n_folds=6)
    assert r["accuracy"] == 1.0
    assert r["threshold"] == pytest.approx(0.5)  # midpoint of the gap (.3 + .7) / 2


def test_seed_shuffles_deterministically():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=200)
    same = scores + rng.normal(size=200) > 0
    a = verification_accuracy(scores, same, seed=3)
    assert a == verification_accuracy(scores, same, seed=3)
    assert a["threshold"] == verification_accuracy(scores, same)["threshold"]  # all-pairs: order-free


# Ten impostors 0.0, 0.1, ..., 0.9 and three genuine pairs 0.95, 0.85, 0.5.
IMPOSTOR = np.round(np.arange(10) * 0.1, 1)
GENUINE = np.array([0.95, 0.85, 0.5])
TAR_SCORES = np.concatenate([IMPOSTOR, GENUINE])
TAR_SAME = np.concatenate([np.zeros(10, bool), np.ones(3, bool)])


@pytest.mark.parametrize(
    ("far", "tar", "threshold"),
    [
        # FAR .1: k = floor(.1 * 10) = 1 impostor may pass -> reject the 2nd highest, .8; the next
        # score above it is .85 -> t = .825. Genuine >= .825: .95, .85 -> TAR 2/3 (FAR 1/10: .9).
        (0.1, 2 / 3, 0.825),
        # FAR .25: k = 2 -> reject the 3rd highest, .7; next above is .8 -> t = .75 -> TAR 2/3.
        (0.25, 2 / 3, 0.75),
        # FAR .5: k = 5 -> reject .4; next above is .5 (genuine) -> t = .45 -> TAR 3/3.
        (0.5, 1.0, 0.45),
        # FAR 1e-3: .001 * 10 < 1, not resolvable: no impostor may pass -> t above the top impostor
        # .9, midway to .95 -> t = .925 -> TAR 1/3 (the TAR at FAR 0).
        (1e-3, 1 / 3, 0.925),
    ],
)
def test_tar_at_far_hand_worked(far, tar, threshold):
    got_tar, got_threshold = tar_at_far(TAR_SCORES, TAR_SAME, far)
    assert got_tar == pytest.approx(tar)
    assert got_threshold == pytest.approx(threshold)
    accepted_impostors = np.sum(got_threshold <= IMPOSTOR)
    assert accepted_impostors <= far * len(IMPOSTOR)  # the FAR holds


def test_tar_at_far_threshold_above_everything():
    # The top score is an impostor and no impostor may pass: t just above .9, nothing accepted.
    tar, threshold = tar_at_far([0.9, 0.5], [False, True], 1e-4)
    assert tar == 0.0
    assert 0.9 < threshold < 0.9 + 1e-12


def test_tar_at_far_is_exact_on_round_products():
    # 0.29 * 100 impostors is 28.999999999999996 in floating point: still 29 may pass.
    impostor = np.arange(100) / 100
    scores = np.concatenate([impostor, [2.0]])
    same = np.concatenate([np.zeros(100, bool), [True]])
    _, threshold = tar_at_far(scores, same, 0.29)
    assert np.sum(impostor >= threshold) == 29


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: verification_accuracy(SCORES, SAME[:5]), "same has 5 entries, expected 6"),
        (lambda: verification_accuracy(SCORES, SAME, n_folds=7), "n_folds must be"),
        (lambda: verification_accuracy(SCORES, SAME, n_folds=1), "n_folds must be"),
        (lambda: verification_accuracy([], []), "scores is empty"),
        (lambda: verification_accuracy([0.1, np.nan], [1, 0]), "scores holds 1 NaN"),
        (lambda: verification_accuracy([[0.1, 0.2]], [1, 0]), "scores must be 1-D"),
        (lambda: verification_accuracy(SCORES, np.arange(6)), "same must hold booleans"),
        (lambda: tar_at_far(SCORES, SAME, 1.0), r"far must be in \[0, 1\)"),
        (lambda: tar_at_far(SCORES, np.ones(6, bool), 1e-3), "0 impostor"),
    ],
)
def test_invalid_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()
