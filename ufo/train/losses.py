"""The paper's losses: CosFace on normalised post-BN features, soft-margin batch-hard triplet on pre-BN."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_cosines(features: torch.Tensor, class_weight: torch.Tensor) -> torch.Tensor:
    """cos(theta_j) between each feature and each class weight, [B, C]."""
    return F.normalize(features, dim=-1) @ F.normalize(class_weight, dim=-1).t()


def cosface_loss(features: torch.Tensor, class_weight: torch.Tensor, labels: torch.Tensor,
                 scale: float, margin: float) -> torch.Tensor:
    """Large-margin cosine loss: cross-entropy over s * (cos(theta_j) - m * [j == y])."""
    cos = class_cosines(features, class_weight)
    logits = scale * (cos - margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype))
    return F.cross_entropy(logits, labels)


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """In-place distillation (OFA, BigNAS): cross-entropy of the student's class distribution against the
    teacher's (the largest subnet's, detached), minus the teacher's entropy so a perfect student scores 0."""
    teacher = F.softmax(teacher_logits.detach(), dim=-1)
    return (teacher * (F.log_softmax(teacher_logits.detach(), dim=-1) - F.log_softmax(student_logits, dim=-1))
            ).sum(dim=-1).mean()


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances, clamped before the sqrt so the gradient at 0 stays finite."""
    sq = x.pow(2).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_triplet_loss(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Soft-margin batch-hard triplet: mean of softplus(d(a, hardest positive) - d(a, hardest negative))
    over anchors that have at least one positive and one negative in the batch."""
    dist = pairwise_distances(features)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive, negative = same & ~eye, ~same
    valid = positive.any(dim=1) & negative.any(dim=1)
    if not valid.any():
        return features.sum() * 0.0  # keeps the graph; no triplet exists in this batch
    hardest_pos = dist.masked_fill(~positive, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(~negative, float("inf")).amin(dim=1)
    return F.softplus(hardest_pos[valid] - hardest_neg[valid]).mean()
