"""Training configuration: typed fields, one preset per model preset."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ufo.tasks import TASK_SPECS, TASKS, TaskSpec, get_task

LOSS_BALANCE_RULES = ("none", "cosface_scale", "cosface_scale_squared")  # ufo.train.trainer.task_loss_weights
DATA_LOADERS = ("cache", "stream")  # the TaskStream kinds (ufo.data.loader.make_task_stream)


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
    # "mean": the sandwich's losses averaged (each subnet gets lr / n); "sum": added, as OFA and BigNAS accumulate
    # them, so the largest subnet takes the same step a single network at this lr would
    sandwich_reduce: str = "mean"
    lr_mult: dict[str, float] = field(default_factory=dict)  # per-task multipliers for task-specific params
    loss_balance: str = "none"  # how task losses are weighted in the sum (LOSS_BALANCE_RULES)
    distill: float = 0.0  # in-place distillation weight: sampled subnets learn the largest one's class scores
    # per-task changes to the paper's loss settings (ufo.tasks.TaskSpec fields cosface_scale, cosface_margin,
    # use_triplet), e.g. {"face": {"use_triplet": true}}; see task_spec()
    loss_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    val_fraction: float = 0.2  # training identities held out for validation (the search scores on them)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    grad_checkpointing: bool = False
    amp: bool = True  # fp16 autocast + GradScaler on CUDA (ignored on CPU); false: fp32 (bench/gpu.sh compares)
    augment: bool = True
    init_from: str | None = None  # a timm / DeiT ViT checkpoint (.pth / .safetensors) to start from (pretrained.py)
    # "cache": decode each training split into memory once (small sets); "stream": read every batch from the
    # files in DataLoader worker processes (sets that do not fit in memory, e.g. MSMT17, CASIA-WebFace)
    data_loader: str = "cache"
    loader_workers: int = 2  # decoding processes per task with data_loader="stream" (0: in the training process)

    def __post_init__(self) -> None:
        if self.loss_balance not in LOSS_BALANCE_RULES:
            raise ValueError(f"loss_balance must be one of {', '.join(LOSS_BALANCE_RULES)}, got {self.loss_balance!r}")
        for task, changes in self.loss_overrides.items():
            allowed = {"cosface_scale", "cosface_margin", "use_triplet"}
            if task not in TASK_SPECS or not isinstance(changes, dict) or set(changes) - allowed:
                raise ValueError(f"loss_overrides[{task!r}] = {changes!r}: expected a task of {', '.join(TASK_SPECS)} "
                                 f"mapped to some of {', '.join(sorted(allowed))}")
        if self.sandwich_reduce not in ("mean", "sum"):
            raise ValueError(f"sandwich_reduce must be 'mean' or 'sum', got {self.sandwich_reduce!r}")
        if not self.distill >= 0:
            raise ValueError(f"distill must be >= 0, got {self.distill!r}")
        if self.data_loader not in DATA_LOADERS:
            raise ValueError(f"data_loader must be one of {', '.join(DATA_LOADERS)}, got {self.data_loader!r}")
        if type(self.loader_workers) is not int or self.loader_workers < 0:
            raise ValueError(f"loader_workers must be an integer >= 0, got {self.loader_workers!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        for key in ("tasks", "sandwich"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def task_spec(self, task: str) -> TaskSpec:
        """The task's registry entry (`ufo.tasks`), its loss settings changed by `loss_overrides`."""
        return replace(get_task(task), **self.loss_overrides.get(task, {}))

    @classmethod
    def parse_overrides(cls, pairs: list[str] | None) -> dict[str, Any]:
        """`--set key=value` pairs -> {field: value}; values are JSON (`0.5`, `true`, `["max","random"]`) or a bare
        string. Unknown fields and malformed pairs raise ValueError naming them."""
        fields = set(cls.__dataclass_fields__)
        out: dict[str, Any] = {}
        for pair in pairs or []:
            key, sep, text = pair.partition("=")
            if not sep or key not in fields:
                raise ValueError(f"--set {pair!r}: expected key=value with key one of {', '.join(sorted(fields))}")
            try:
                out[key] = json.loads(text)
            except json.JSONDecodeError:
                out[key] = text
            if key in ("tasks", "sandwich") and isinstance(out[key], list):
                out[key] = tuple(out[key])
        return out

    def with_overrides(self, **overrides: Any) -> TrainConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # Sized to finish in a few minutes on 2 CPU cores (measured in docs/results.md).
    # lr 0.03 without clipping: in 150-300-step trials lr 0.1 learned less, and clipping at 5 scaled the
    # CosFace-amplified gradients (norm ~100) down to almost nothing.
    # Loss balance 1/s^2 and in-place distillation: face's CosFace (s=50) otherwise swamps the shared backbone and
    # halves vehicle's mAP (docs/model_quality.md); chosen on validation identities over 1/s and none.
    "demo": TrainConfig(preset="demo", steps=500, batch_per_task=32, lr=0.03, grad_clip=0.0, drop_path=0.1,
                        sandwich=("max", "random"), checkpoint_every=100, loss_balance="cosface_scale_squared",
                        distill=1.0),
    "tiny": TrainConfig(preset="tiny", steps=20000, batch_per_task=64),
    "small": TrainConfig(preset="small", steps=40000, batch_per_task=64),
    "base": TrainConfig(preset="base", steps=60000, batch_per_task=64),
    "large": TrainConfig(preset="large", steps=120000, batch_per_task=64, grad_checkpointing=True),
}


def get_train_config(preset: str) -> TrainConfig:
    if preset not in TRAIN_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    return TRAIN_PRESETS[preset]
