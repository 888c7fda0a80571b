"""Architecture specs (the supernet's maximum and its search space) and subnet configs.

`ArchSpec` says what the supernet holds; `SubnetConfig` names one subnet inside it. A config is a frozen,
hashable value (the search memoises on it) with `to_dict` / `from_dict` for JSON.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

SHARED, OWN = 0, 1  # per-block FFN path of a task: the shared FFN or the task's own


class ConfigError(ValueError):
    """A config outside the search space; the message names the field, the value and what is allowed."""


LEGACY_PREPROCESSING_KEYS = frozenset({"mean", "std", "interpolation"})


@dataclass(frozen=True)
class ArchSpec:
    img_size: tuple[int, int]  # (H, W)
    patch_size: int
    embed_dim: int  # maximum width
    depth: int  # maximum number of blocks
    num_heads: int  # maximum heads per block
    head_dim: int  # fixed: heads are sliced whole
    mlp_ratio: float  # maximum MLP ratio
    stem: str = "patch"  # "patch": one strided conv; "conv": a small conv stack (small-data presets)
    stem_channels: tuple[int, ...] = ()  # conv stem widths, each conv 3x3 stride 2
    # conv stem BatchNorms: "shared" by every task, or one set per "task" (in a heterogeneous batch a shared BN
    # normalises grey faces, catalogue items and street scenes with one mixed statistic); the served subnet
    # holds its task's, so the exported network is the same either way
    stem_norm: str = "shared"
    # search space
    embed_dim_choices: tuple[int, ...] = ()
    depth_choices: tuple[int, ...] = ()
    num_heads_choices: tuple[int, ...] = ()
    mlp_ratio_choices: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        h, w = self.img_size
        if h % self.patch_size or w % self.patch_size:
            raise ConfigError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.stem_norm not in ("shared", "task"):
            raise ConfigError(f"stem_norm must be 'shared' or 'task', got {self.stem_norm!r}")
        if self.stem == "conv" and 2 ** len(self.stem_channels) != self.patch_size:
            raise ConfigError(f"conv stem of {len(self.stem_channels)} stride-2 convs != patch {self.patch_size}")
        for name, choices, top in (
            ("embed_dim", self.embed_dim_choices, self.embed_dim),
            ("depth", self.depth_choices, self.depth),
            ("num_heads", self.num_heads_choices, self.num_heads),
            ("mlp_ratio", self.mlp_ratio_choices, self.mlp_ratio),
        ):
            if choices and max(choices) != top:
                raise ConfigError(f"largest {name} choice {max(choices)} must equal the maximum {top}")

    @property
    def num_patches(self) -> int:
        return (self.img_size[0] // self.patch_size) * (self.img_size[1] // self.patch_size)

    @property
    def mlp_hidden_max(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def choices(self, name: str) -> tuple:
        found = getattr(self, f"{name}_choices")
        return found or (getattr(self, name),)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        # checkpoints written before preprocessing moved to the manifest carry it here: not the network's
        data = {k: v for k, v in data.items() if k not in LEGACY_PREPROCESSING_KEYS}
        tuples = {k: tuple(v) for k, v in data.items() if isinstance(v, list)}
        return cls(**{**data, **tuples})


@dataclass(frozen=True)
class SubnetConfig:
    embed_dim: int
    depth: int
    num_heads: tuple[int, ...]  # per block, len == depth
    mlp_ratio: tuple[float, ...]  # per block, len == depth
    # per task, a fixed FFN path per block (SHARED/OWN); a task left out follows its router
    paths: tuple[tuple[str, tuple[int, ...]], ...] = field(default=())

    def path_for(self, task: str) -> tuple[int, ...] | None:
        return dict(self.paths).get(task)

    def with_paths(self, paths: dict[str, tuple[int, ...]]) -> SubnetConfig:
        merged = {**dict(self.paths), **{t: tuple(int(c) for c in p) for t, p in paths.items()}}
        return SubnetConfig(self.embed_dim, self.depth, self.num_heads, self.mlp_ratio,
                            tuple(sorted(merged.items())))

    def mlp_hidden(self, block: int) -> int:
        return int(self.embed_dim * self.mlp_ratio[block])

    def to_dict(self) -> dict[str, Any]:
        return {
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": list(self.num_heads),
            "mlp_ratio": list(self.mlp_ratio),
            "paths": {t: list(p) for t, p in self.paths},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubnetConfig:
        try:
            return cls(
                embed_dim=int(data["embed_dim"]),
                depth=int(data["depth"]),
                num_heads=tuple(int(h) for h in data["num_heads"]),
                mlp_ratio=tuple(float(r) for r in data["mlp_ratio"]),
                paths=tuple(sorted((t, tuple(int(c) for c in p)) for t, p in data.get("paths", {}).items())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed subnet config {data!r}: {exc}") from exc


def _nearest(value: float, allowed: tuple) -> float:
    return min(allowed, key=lambda a: abs(a - value))


def validate_config(arch: ArchSpec, cfg: SubnetConfig, tasks: tuple[str, ...] = ()) -> None:
    """Raise ConfigError naming the first field outside the search space and the nearest allowed value."""
    if cfg.embed_dim not in arch.choices("embed_dim"):
        raise ConfigError(f"embed_dim {cfg.embed_dim} not in {arch.choices('embed_dim')}; "
                          f"nearest: {_nearest(cfg.embed_dim, arch.choices('embed_dim'))}")
    if cfg.depth not in arch.choices("depth"):
        raise ConfigError(f"depth {cfg.depth} not in {arch.choices('depth')}; "
                          f"nearest: {_nearest(cfg.depth, arch.choices('depth'))}")
    for name in ("num_heads", "mlp_ratio"):
        values = getattr(cfg, name)
        if len(values) != cfg.depth:
            raise ConfigError(f"{name} has {len(values)} entries but depth is {cfg.depth}")
        for i, v in enumerate(values):
            if v not in arch.choices(name):
                raise ConfigError(f"{name}[{i}] = {v} not in {arch.choices(name)}; "
                                  f"nearest: {_nearest(v, arch.choices(name))}")
    for task, path in cfg.paths:
        if tasks and task not in tasks:
            raise ConfigError(f"path given for task {task!r}, but the supernet has tasks {list(tasks)}")
        if len(path) != cfg.depth or any(c not in (SHARED, OWN) for c in path):
            raise ConfigError(f"path for {task!r} must be {cfg.depth} entries of 0 (shared) / 1 (own): {path}")


def largest_config(arch: ArchSpec) -> SubnetConfig:
    d = max(arch.choices("depth"))
    return SubnetConfig(max(arch.choices("embed_dim")), d, (max(arch.choices("num_heads")),) * d,
                        (max(arch.choices("mlp_ratio")),) * d)


def smallest_config(arch: ArchSpec) -> SubnetConfig:
    d = min(arch.choices("depth"))
    return SubnetConfig(min(arch.choices("embed_dim")), d, (min(arch.choices("num_heads")),) * d,
                        (min(arch.choices("mlp_ratio")),) * d)


def sample_config(arch: ArchSpec, rng: random.Random, tasks: tuple[str, ...] = ()) -> SubnetConfig:
    """A uniformly random config; with `tasks`, also a random fixed path per task (for the search)."""
    depth = rng.choice(arch.choices("depth"))
    cfg = SubnetConfig(
        embed_dim=rng.choice(arch.choices("embed_dim")),
        depth=depth,
        num_heads=tuple(rng.choice(arch.choices("num_heads")) for _ in range(depth)),
        mlp_ratio=tuple(rng.choice(arch.choices("mlp_ratio")) for _ in range(depth)),
    )
    if tasks:
        cfg = cfg.with_paths({t: tuple(rng.choice((SHARED, OWN)) for _ in range(depth)) for t in tasks})
    return cfg
