"""Training configuration: typed fields, one preset per model preset."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ufo.tasks import TASKS


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "demo"  # architecture preset (ufo.model.presets)
    tasks: tuple[str, ...] = TASKS
    steps: int = 600
    batch_per_task: int = 32  # images of each task in every heterogeneous batch
    instances_per_id: int = 4  # K of the P x K identity sampler
    lr: float = 0.2  # SGD, the paper's value
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.1  # linear warm-up, then cosine decay to 0
    grad_clip: float = 5.0
    drop_path: float = 0.2  # rate at the last block, rising linearly with depth
    # supernet sampling per step (sandwich rule); ("max",) trains a plain network
    sandwich: tuple[str, ...] = ("max", "min", "random")
    lr_mult: dict[str, float] = field(default_factory=dict)  # per-task multipliers for task-specific params
    val_fraction: float = 0.2  # training identities held out for validation (the search scores on them)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    grad_checkpointing: bool = False
    augment: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        for key in ("tasks", "sandwich"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # Sized to finish in a few minutes on 2 CPU cores (measured in docs/results.md).
    # lr 0.03 without clipping: in 150-300-step trials lr 0.1 learned less, and clipping at 5 scaled the
    # CosFace-amplified gradients (norm ~100) down to almost nothing.
    "demo": TrainConfig(preset="demo", steps=500, batch_per_task=32, lr=0.03, grad_clip=0.0, drop_path=0.1,
                        sandwich=("max", "random"), checkpoint_every=100),
    "tiny": TrainConfig(preset="tiny", steps=20000, batch_per_task=64),
    "small": TrainConfig(preset="small", steps=40000, batch_per_task=64),
    "base": TrainConfig(preset="base", steps=60000, batch_per_task=64),
    "large": TrainConfig(preset="large", steps=120000, batch_per_task=64, grad_checkpointing=True),
}


def get_train_config(preset: str) -> TrainConfig:
    if preset not in TRAIN_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    return TRAIN_PRESETS[preset]
