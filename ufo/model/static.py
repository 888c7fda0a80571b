"""A plain static ViT: the served form of a trimmed subnet, and the reference the supernet is tested against.

No slicing, no routers, no unused FFNs: each block has exactly the heads, channels and one FFN chosen.
`extract_subnet` copies the supernet's sliced weights in; its embedding equals the supernet's at that config.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ufo.model.config import SHARED, ArchSpec, SubnetConfig
from ufo.model.layers import attention, bnneck, build_stem_body, make_bnneck, stem_projection_shape


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        width = num_heads * head_dim
        self.q, self.k, self.v = nn.Linear(dim, width), nn.Linear(dim, width), nn.Linear(dim, width)
        self.proj = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(attention(self.q(x), self.k(x), self.v(x), self.num_heads))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class StaticViT(nn.Module):
    """forward(pixels [B,3,H,W]) -> L2-normalised embedding [B, embed_dim]."""

    def __init__(self, arch: ArchSpec, cfg: SubnetConfig) -> None:
        super().__init__()
        self.arch, self.cfg = arch, cfg
        d = cfg.embed_dim
        self.stem_body = build_stem_body(arch.stem, arch.stem_channels)
        c_in, kernel = stem_projection_shape(arch.stem, arch.stem_channels, arch.patch_size)
        self.patch_proj = nn.Conv2d(c_in, d, kernel, stride=kernel)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + arch.num_patches, d))
        self.blocks = nn.Sequential(*(
            Block(d, cfg.num_heads[i], arch.head_dim, cfg.mlp_hidden(i)) for i in range(cfg.depth)
        ))
        self.norm = nn.LayerNorm(d)
        self.neck = make_bnneck(d)

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_proj(self.stem_body(pixels)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm(self.blocks(x)[:, 0])

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """pre_logits: the pre-BN feature; otherwise the L2-normalised post-BNNeck embedding."""
        return feats if pre_logits else F.normalize(bnneck(feats, self.neck), dim=-1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(pixels))


def _copy_linear(dst: nn.Linear, src: nn.Linear) -> None:
    out_dim, in_dim = dst.weight.shape
    dst.weight.copy_(src.weight[:out_dim, :in_dim])
    dst.bias.copy_(src.bias[:out_dim])


def _copy_norm(dst: nn.LayerNorm | nn.BatchNorm1d, src: nn.LayerNorm | nn.BatchNorm1d) -> None:
    d = dst.weight.shape[0]
    dst.weight.copy_(src.weight[:d])
    dst.bias.copy_(src.bias[:d])
    if isinstance(dst, nn.BatchNorm1d):
        dst.running_mean.copy_(src.running_mean[:d])
        dst.running_var.copy_(src.running_var[:d])
        dst.num_batches_tracked.copy_(src.num_batches_tracked)


@torch.no_grad()
def extract_subnet(supernet: nn.Module, cfg: SubnetConfig, task: str) -> StaticViT:
    """Build the static ViT for `task` at `cfg` holding copies of the supernet's sliced weights.
    The FFN of each block follows cfg's fixed path for the task, or the task's router argmax."""
    supernet.validate(cfg)
    if task not in supernet.tasks:
        raise ValueError(f"task {task!r} was not trained in this supernet (it has {', '.join(supernet.tasks)})")
    path = supernet.resolved_path(task, cfg)
    sub = StaticViT(supernet.arch, cfg.with_paths({task: path}))
    d = cfg.embed_dim
    sub.stem_body.load_state_dict(supernet.stem_body.state_dict(), strict=supernet.stem_norms is None)
    static_norms = [m for m in sub.stem_body.modules() if isinstance(m, nn.BatchNorm2d)]
    for dst, src in zip(static_norms, supernet.stem_batchnorms(task), strict=True):
        dst.load_state_dict(src.state_dict())
    sub.patch_proj.weight.copy_(supernet.patch_proj.weight[:d])
    sub.patch_proj.bias.copy_(supernet.patch_proj.bias[:d])
    sub.cls_token.copy_(supernet.cls_token[:, :, :d])
    sub.pos_embed.copy_(supernet.pos_embed[:, :, :d])
    for i, block in enumerate(sub.blocks):
        src = supernet.blocks[i]
        _copy_norm(block.norm1, src.norm1)
        _copy_norm(block.norm2, src.norm2)
        for name in ("q", "k", "v", "proj"):
            _copy_linear(getattr(block.attn, name), getattr(src, name))
        ffn = src.ffn["shared" if path[i] == SHARED else task]
        _copy_linear(block.mlp.fc1, ffn.fc1)
        _copy_linear(block.mlp.fc2, ffn.fc2)
    _copy_norm(sub.norm, supernet.norm)
    _copy_norm(sub.neck, supernet.necks[task])
    return sub.eval()
