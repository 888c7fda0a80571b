"""The losses on hand-made inputs whose values are worked out in the comments."""

import math

import pytest
import torch

from ufo.train.losses import batch_hard_triplet_loss, cosface_loss, pairwise_distances, soft_target_loss


def test_cosface_hand_worked():
    # cos = [1, 0]; target logit 2*(1-0.5) = 1, other 2*0 = 0 -> CE = log(1 + e^-1)
    loss = cosface_loss(torch.tensor([[3.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 5.0]]),
                        torch.tensor([0]), scale=2.0, margin=0.5)
    assert math.isclose(loss.item(), math.log(1 + math.exp(-1)), rel_tol=1e-6)


def test_cosface_margin_makes_the_loss_larger():
    feats, weight, labels = torch.randn(8, 4), torch.randn(3, 4), torch.randint(0, 3, (8,))
    assert cosface_loss(feats, weight, labels, 30, 0.2) > cosface_loss(feats, weight, labels, 30, 0.0)


def test_batch_hard_triplet_hand_worked():
    # points 0, 1 (id 0) and 3, 5 (id 1) on a line
    # anchor 0: pos 1, neg 3 -> softplus(-2); anchor 1: pos 1, neg 2 -> softplus(-1)
    # anchor 3: pos 2, neg 2 -> softplus(0);  anchor 5: pos 2, neg 4 -> softplus(-2)
    feats = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    loss = batch_hard_triplet_loss(feats, torch.tensor([0, 0, 1, 1]))
    sp = lambda v: math.log(1 + math.exp(v))
    assert math.isclose(loss.item(), (sp(-2) + sp(-1) + sp(0) + sp(-2)) / 4, rel_tol=1e-5)


def test_triplet_skips_anchors_without_positives_and_has_gradients():
    feats = torch.tensor([[0.0], [1.0], [3.0]], requires_grad=True)
    # id 1 has a single image: only anchors 0 and 1 count
    # anchor 0: pos 1, neg 3 -> softplus(-2); anchor 1: pos 1, neg 2 -> softplus(-1)
    loss = batch_hard_triplet_loss(feats, torch.tensor([0, 0, 1]))
    sp = lambda v: math.log(1 + math.exp(v))
    assert math.isclose(loss.item(), (sp(-2) + sp(-1)) / 2, rel_tol=1e-5)
    loss.backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    # no valid triplet at all: zero, still differentiable
    none = batch_hard_triplet_loss(feats, torch.tensor([0, 1, 2]))
    assert none.item() == 0.0 and none.requires_grad


def test_pairwise_distance_gradient_is_finite_for_duplicates():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0]], requires_grad=True)
    pairwise_distances(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_soft_target_loss_is_zero_for_a_perfect_student_and_grows_with_disagreement():
    teacher = torch.tensor([[3.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    assert soft_target_loss(teacher.clone(), teacher) == pytest.approx(0.0, abs=1e-6)
    near, far = teacher + 0.1 * torch.tensor([[0.0, 1.0, 0.0]] * 2), teacher.flip(1)
    assert 0 < soft_target_loss(near, teacher) < soft_target_loss(far, teacher)
    student = far.clone().requires_grad_()
    soft_target_loss(student, teacher.requires_grad_()).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None  # the teacher is not trained by it
