"""The UFO supernet: an elastic ViT with a shared FFN and one FFN per task in every block, and a two-way
router per (task, block) trained with a hard straight-through Gumbel-softmax.

Elastic ops slice max-size weights: width = first k channels (LayerNorms too), heads = the first k whole
heads of Q, K and V separately (head dim fixed), MLP = first k hidden channels, depth = a prefix of blocks.
The active config is passed down explicitly on every forward; the supernet is for training and search,
and only the extracted static subnet (ufo.model.static) is served.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ufo.model.config import (
    SHARED,
    ArchSpec,
    SubnetConfig,
    largest_config,
    sample_config,
    smallest_config,
    validate_config,
)
from ufo.model.layers import (
    attention,
    bnneck,
    build_stem_body,
    drop_path,
    drop_path_rates,
    make_bnneck,
    stem_projection_shape,
)

ROUTER_TAU = 5.0  # Gumbel temperature from the paper's reference code

Segments = Sequence[tuple[str, int]]  # (task, number of samples), in batch order


def _linear(x: torch.Tensor, layer: nn.Linear, out_dim: int, in_dim: int) -> torch.Tensor:
    return F.linear(x, layer.weight[:out_dim, :in_dim], layer.bias[:out_dim])


def _layer_norm(x: torch.Tensor, norm: nn.LayerNorm, dim: int) -> torch.Tensor:
    return F.layer_norm(x, (dim,), norm.weight[:dim], norm.bias[:dim], norm.eps)


class ElasticMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, dim: int, hidden: int) -> torch.Tensor:
        return _linear(F.gelu(_linear(x, self.fc1, hidden, dim)), self.fc2, dim, hidden)


class ElasticBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x)); x + ffn_path(norm2(x)) where the FFN path is chosen per task."""

    def __init__(self, arch: ArchSpec, tasks: tuple[str, ...], drop_path_rate: float) -> None:
        super().__init__()
        d, width = arch.embed_dim, arch.num_heads * arch.head_dim
        self.head_dim = arch.head_dim
        self.drop_path_rate = drop_path_rate
        self.norm1 = nn.LayerNorm(d)
        self.q, self.k, self.v = nn.Linear(d, width), nn.Linear(d, width), nn.Linear(d, width)
        self.proj = nn.Linear(width, d)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.ModuleDict({name: ElasticMlp(d, arch.mlp_hidden_max) for name in ("shared", *tasks)})

    def forward(self, x: torch.Tensor, dim: int, heads: int, hidden: int, segments: Segments,
                gates: list[torch.Tensor | int]) -> torch.Tensor:
        width = heads * self.head_dim
        h = _layer_norm(x, self.norm1, dim)
        q, k, v = (_linear(h, layer, width, dim) for layer in (self.q, self.k, self.v))
        x = x + drop_path(_linear(attention(q, k, v, heads), self.proj, dim, width), self.drop_path_rate,
                          self.training)
        h = _layer_norm(x, self.norm2, dim)
        parts, start = [], 0
        for (task, n), gate in zip(segments, gates, strict=True):
            parts.append(self._route(h[start:start + n], task, gate, dim, hidden))
            start += n
        return x + drop_path(torch.cat(parts), self.drop_path_rate, self.training)

    def _route(self, h: torch.Tensor, task: str, gate: torch.Tensor | int, dim: int, hidden: int) -> torch.Tensor:
        if isinstance(gate, int):  # a fixed or argmax path: run only the chosen FFN
            return self.ffn["shared" if gate == SHARED else task](h, dim, hidden)
        # Straight-through: the hard gate is 1 in the forward pass and carries the soft gradient back to both
        # logits through the softmax. Only the chosen FFN runs (as GDAS does), which halves the FFN cost of
        # training; the unchosen path's term, 0 * f(x) in value, would only add f(x) to the other logit's grad.
        chosen = int(gate.detach().argmax())
        return gate[chosen] * self.ffn["shared" if chosen == SHARED else task](h, dim, hidden)


class UFOSupernet(nn.Module):
    def __init__(self, arch: ArchSpec, num_classes: dict[str, int], drop_path_rate: float = 0.2,
                 grad_checkpointing: bool = False) -> None:
        super().__init__()
        self.arch = arch
        self.tasks = tuple(num_classes)
        self.num_classes = dict(num_classes)
        self.grad_checkpointing = grad_checkpointing
        d = arch.embed_dim
        task_norms = arch.stem == "conv" and arch.stem_norm == "task"
        self.stem_body = build_stem_body(arch.stem, arch.stem_channels, norm=not task_norms)
        self.stem_norms = nn.ModuleDict({t: nn.ModuleList(nn.BatchNorm2d(c) for c in arch.stem_channels)
                                         for t in self.tasks}) if task_norms else None
        c_in, kernel = stem_projection_shape(arch.stem, arch.stem_channels, arch.patch_size)
        self.patch_proj = nn.Conv2d(c_in, d, kernel, stride=kernel)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + arch.num_patches, d))
        rates = drop_path_rates(drop_path_rate, arch.depth)
        self.blocks = nn.ModuleList(ElasticBlock(arch, self.tasks, r) for r in rates)
        self.norm = nn.LayerNorm(d)
        # router logits per (task, block, {shared, own}), initialised to 0 as in the paper
        self.router_logits = nn.Parameter(torch.zeros(len(self.tasks), arch.depth, 2))
        self.necks = nn.ModuleDict({t: make_bnneck(d) for t in self.tasks})
        # CosFace class weights (training only; never exported)
        self.classifiers = nn.ParameterDict({t: nn.Parameter(torch.empty(c, d)) for t, c in num_classes.items()})
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for w in self.classifiers.values():
            nn.init.normal_(w, std=self.arch.embed_dim**-0.5)  # unit-norm rows: normalize() passes grads 1:1

    # ---- configs -------------------------------------------------------------------------------
    def largest_config(self) -> SubnetConfig:
        return largest_config(self.arch)

    def smallest_config(self) -> SubnetConfig:
        return smallest_config(self.arch)

    def sample_config(self, rng: random.Random, with_paths: bool = False) -> SubnetConfig:
        return sample_config(self.arch, rng, self.tasks if with_paths else ())

    def validate(self, cfg: SubnetConfig) -> None:
        validate_config(self.arch, cfg, self.tasks)

    def router_paths(self) -> dict[str, tuple[int, ...]]:
        """The inference path per task: each router's argmax (ties go to the shared FFN)."""
        choice = self.router_logits.detach().argmax(dim=-1)
        return {t: tuple(int(c) for c in choice[i]) for i, t in enumerate(self.tasks)}

    def resolved_path(self, task: str, cfg: SubnetConfig) -> tuple[int, ...]:
        return cfg.path_for(task) or self.router_paths()[task][: cfg.depth]

    # ---- forward -------------------------------------------------------------------------------
    def _gates(self, task: str, cfg: SubnetConfig) -> list[torch.Tensor | int]:
        fixed = cfg.path_for(task)
        if fixed is not None:
            return list(fixed)
        if not self.training:
            return list(self.resolved_path(task, cfg))
        logits = self.router_logits[self.tasks.index(task), : cfg.depth]
        return list(F.gumbel_softmax(logits, tau=ROUTER_TAU, hard=True, dim=-1).unbind(0))

    def stem_batchnorms(self, task: str) -> list[nn.BatchNorm2d]:
        """The stem BatchNorms `task`'s images go through, in order."""
        if self.stem_norms is not None:
            return list(self.stem_norms[task])
        return [m for m in self.stem_body.modules() if isinstance(m, nn.BatchNorm2d)]

    def run_stem(self, x: torch.Tensor, segments: Segments) -> torch.Tensor:
        if self.stem_norms is None:
            return self.stem_body(x)
        parts, start = [], 0
        for task, n in segments:  # each task's slice through its own norms
            h, norms = x[start:start + n], iter(self.stem_norms[task])
            for layer in self.stem_body:
                h = next(norms)(h) if isinstance(layer, nn.Identity) else layer(h)
            parts.append(h)
            start += n
        return torch.cat(parts)

    def forward_tokens(self, x: torch.Tensor, dim: int, segments: Segments) -> torch.Tensor:
        x = F.conv2d(self.run_stem(x, segments), self.patch_proj.weight[:dim], self.patch_proj.bias[:dim],
                     stride=self.patch_proj.stride)
        x = x.flatten(2).transpose(1, 2)
        cls = self.cls_token[:, :, :dim].expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embed[:, :, :dim]

    def forward_features(self, x: torch.Tensor, segments: Segments, cfg: SubnetConfig) -> torch.Tensor:
        """CLS token after the final LayerNorm, [B, cfg.embed_dim]."""
        if sum(n for _, n in segments) != x.shape[0]:
            raise ValueError(f"segments {list(segments)} do not add up to the batch of {x.shape[0]}")
        gates = {task: self._gates(task, cfg) for task, _ in segments}
        x = self.forward_tokens(x, cfg.embed_dim, segments)
        for i in range(cfg.depth):
            args = (cfg.embed_dim, cfg.num_heads[i], cfg.mlp_hidden(i), segments, [gates[t][i] for t, _ in segments])
            if self.grad_checkpointing and self.training:
                x = checkpoint(self.blocks[i], x, *args, use_reentrant=False)
            else:
                x = self.blocks[i](x, *args)
        return _layer_norm(x[:, 0], self.norm, cfg.embed_dim)

    def forward(self, x: torch.Tensor, segments: Segments, cfg: SubnetConfig | None = None
                ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per task: (pre-BN feature for the triplet loss, post-BN feature for CosFace / the embedding)."""
        cfg = cfg or self.largest_config()
        feats = self.forward_features(x, segments, cfg)
        out, start = {}, 0
        for task, n in segments:
            pre = feats[start:start + n]
            out[task] = (pre, bnneck(pre, self.necks[task], cfg.embed_dim))
            start += n
        return out

    def embed(self, x: torch.Tensor, task: str, cfg: SubnetConfig | None = None) -> torch.Tensor:
        """L2-normalised post-BN embedding of one task's images."""
        _, post = self.forward(x, [(task, x.shape[0])], cfg)[task]
        return F.normalize(post, dim=-1)
