"""Analytic parameter and FLOP counts of a subnet config, for the search's budgets.

FLOPs are 2 x multiply-accumulates of convolutions, linear layers and the two attention matmuls, per image;
norms, softmax and GELU are not counted (the same convention as torch.utils.flop_counter, which the tests
compare against).
"""

from __future__ import annotations

from dataclasses import dataclass

from ufo.model.config import ArchSpec, SubnetConfig


@dataclass(frozen=True)
class Cost:
    params: int
    flops: int


def _stem(arch: ArchSpec, dim: int) -> Cost:
    params = flops = 0
    h, w = arch.img_size
    c_in = 3
    for c_out in arch.stem_channels if arch.stem == "conv" else ():
        h, w = (h + 1) // 2, (w + 1) // 2
        params += c_in * c_out * 9 + 2 * c_out  # conv (no bias) + BatchNorm
        flops += 2 * h * w * c_out * c_in * 9
        c_in = c_out
    kernel = arch.patch_size if arch.stem == "patch" else 1
    params += c_in * kernel * kernel * dim + dim
    flops += 2 * arch.num_patches * dim * c_in * kernel * kernel
    return Cost(params, flops)


def _block(tokens: int, dim: int, width: int, hidden: int) -> Cost:
    params = 2 * dim + 3 * (dim * width + width) + width * dim + dim + 2 * dim
    params += dim * hidden + hidden + hidden * dim + dim
    flops = 2 * tokens * (3 * dim * width + width * dim)  # q, k, v, proj
    flops += 2 * 2 * tokens * tokens * width  # q @ k^T and attn @ v
    flops += 2 * tokens * 2 * dim * hidden  # fc1, fc2
    return Cost(params, flops)


def subnet_cost(arch: ArchSpec, cfg: SubnetConfig) -> Cost:
    """Params and per-image FLOPs of the static subnet (one FFN per block, its task's BNNeck)."""
    tokens = 1 + arch.num_patches
    d = cfg.embed_dim
    stem = _stem(arch, d)
    params = stem.params + d + tokens * d  # + cls token + position embedding
    flops = stem.flops
    for i in range(cfg.depth):
        block = _block(tokens, d, cfg.num_heads[i] * arch.head_dim, cfg.mlp_hidden(i))
        params += block.params
        flops += block.flops
    params += 2 * d + 2 * d  # final LayerNorm + BNNeck
    return Cost(params, flops)
