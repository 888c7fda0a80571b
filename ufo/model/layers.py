"""Building blocks shared by the elastic supernet and the static subnet, so both compute the same maths."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Multi-head attention on projected [B, N, heads*head_dim] q/k/v. Written out (not the fused kernel) so
    the ONNX export is plain ops and the supernet and static subnet agree to float rounding."""
    b, n, width = q.shape
    head_dim = width // num_heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, n, num_heads, head_dim).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    attn = (q @ k.transpose(-2, -1)) * head_dim**-0.5
    out = attn.softmax(dim=-1) @ v
    return out.transpose(1, 2).reshape(b, n, width)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch per sample."""
    if rate <= 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Drop-path rate rising linearly with depth, 0 at the first block and `rate` at the last."""
    return [rate * i / max(depth - 1, 1) for i in range(depth)]


def build_stem_body(stem: str, channels: tuple[int, ...], norm: bool = True) -> nn.Module:
    """The fixed part of the stem before the (elastic) projection to the embedding width.
    "patch": nothing; "conv": 3x3 stride-2 conv + BN + ReLU per entry of `channels`. norm=False leaves an
    Identity in each BN's place (the supernet's per-task stem norms live elsewhere), so the convs keep the
    indices, and state-dict keys, of the normed stem."""
    if stem == "patch":
        return nn.Identity()
    if stem != "conv":
        raise ValueError(f"unknown stem {stem!r}; expected 'patch' or 'conv'")
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in channels:
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(c_out) if norm else nn.Identity(), nn.ReLU()]
        c_in = c_out
    return nn.Sequential(*layers)


def stem_projection_shape(stem: str, channels: tuple[int, ...], patch_size: int) -> tuple[int, int]:
    """(in_channels, kernel=stride) of the projection conv that ends the stem."""
    return (3, patch_size) if stem == "patch" else (channels[-1], 1)


def bnneck(x: torch.Tensor, bn: nn.BatchNorm1d, dim: int | None = None) -> torch.Tensor:
    """BNNeck on the first `dim` channels (all when None), sharing the full layer's running statistics."""
    d = dim or bn.num_features
    momentum = bn.momentum
    if bn.training:  # as nn.BatchNorm does: momentum None means a cumulative average (BN recalibration)
        bn.num_batches_tracked.add_(1)
        if momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    return F.batch_norm(
        x, bn.running_mean[:d], bn.running_var[:d], bn.weight[:d], bn.bias[:d],
        bn.training, momentum or 0.0, bn.eps,
    )


def make_bnneck(dim: int) -> nn.BatchNorm1d:
    """BatchNorm1d whose bias is frozen at zero (BNNeck, Luo et al.)."""
    bn = nn.BatchNorm1d(dim)
    bn.bias.requires_grad_(False)
    return bn
