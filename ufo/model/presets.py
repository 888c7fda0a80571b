"""Registered architecture presets, from the 2-core `demo` to the paper's ViT-L/16 at 384x384."""

from __future__ import annotations

from ufo.model.config import ArchSpec

ARCH_PRESETS: dict[str, ArchSpec] = {
    # Small enough to train on 2 CPU cores in minutes. A conv stem: measured before this project, a plain patch
    # embedding losing to raw pixels on ORL faces at this scale, the conv stem closing the gap.
    "demo": ArchSpec(
        img_size=(64, 48), patch_size=8, embed_dim=128, depth=6, num_heads=4, head_dim=32, mlp_ratio=4.0,
        stem="conv", stem_channels=(24, 48, 96),
        embed_dim_choices=(96, 112, 128), depth_choices=(4, 5, 6), num_heads_choices=(2, 3, 4),
        mlp_ratio_choices=(2.0, 3.0, 4.0),
    ),
    "tiny": ArchSpec(
        img_size=(224, 224), patch_size=16, embed_dim=192, depth=12, num_heads=3, head_dim=64, mlp_ratio=4.0,
        embed_dim_choices=(160, 176, 192), depth_choices=(10, 11, 12), num_heads_choices=(2, 3),
        mlp_ratio_choices=(3.0, 3.5, 4.0),
    ),
    "small": ArchSpec(
        img_size=(256, 128), patch_size=16, embed_dim=384, depth=12, num_heads=6, head_dim=64, mlp_ratio=4.0,
        embed_dim_choices=(320, 352, 384), depth_choices=(10, 11, 12), num_heads_choices=(5, 6),
        mlp_ratio_choices=(3.0, 3.5, 4.0),
    ),
    "base": ArchSpec(
        img_size=(256, 128), patch_size=16, embed_dim=768, depth=12, num_heads=12, head_dim=64, mlp_ratio=4.0,
        embed_dim_choices=(640, 704, 768), depth_choices=(10, 11, 12), num_heads_choices=(10, 11, 12),
        mlp_ratio_choices=(3.0, 3.5, 4.0),
    ),
    # The paper's supernet: ViT-L/16, 1024 wide, 24 deep, 16 heads, MLP 4, 384x384 input.
    "large": ArchSpec(
        img_size=(384, 384), patch_size=16, embed_dim=1024, depth=24, num_heads=16, head_dim=64, mlp_ratio=4.0,
        embed_dim_choices=(768, 896, 1024), depth_choices=(20, 22, 24), num_heads_choices=(12, 14, 16),
        mlp_ratio_choices=(3.0, 3.5, 4.0),
    ),
}


def get_arch(name: str) -> ArchSpec:
    if name not in ARCH_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(ARCH_PRESETS)}")
    return ARCH_PRESETS[name]
