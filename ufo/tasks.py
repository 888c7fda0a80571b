"""The task registry: what each retrieval task is, in one place.

A task declares its evaluation protocol, the reader of its dataset layout, its training augmentation and the
paper's loss settings. Splits, metrics, training, the report and the export derive everything from its entry;
the service learns its tasks from the model repository the export writes. A fifth task is one
`register_task(TaskSpec(...))` and, for a new layout, one reader in `ufo.data.task_readers`.

Protocols (a small closed set; each is implemented once in `ufo.data.splits` and `ufo.metrics.evaluate`):
- "verification": face folders with LFW-style pairs; verification accuracy, plus gallery search metrics.
- "reid": query / gallery with cameras (same-camera matches excluded); mAP and CMC.
- "recall": one labelled set that is its own gallery; Recall@K.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model_store.manifest import TASK_NAME_PATTERN
from ufo.data.augment import AugmentConfig
from ufo.data.readers_lists import MARKET_LAYOUT, MSMT17_LAYOUT, VERI_LAYOUT, VERI_LISTS_LAYOUT
from ufo.data.task_readers import TaskReader, read_face_task, read_sop_task, reid_reader

# the headline metric of each protocol: what the search maximises and the report leads with
PROTOCOL_METRICS: dict[str, str] = {"verification": "verification_accuracy", "reid": "mAP", "recall": "recall@1"}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    protocol: str  # a key of PROTOCOL_METRICS
    read_splits: TaskReader  # task folder -> (train samples, the dataset's own test EvalSet)
    augment: AugmentConfig  # training augmentation
    cosface_scale: float
    cosface_margin: float
    use_triplet: bool  # soft-margin batch-hard triplet on pre-BN features

    def __post_init__(self) -> None:
        if not re.match(TASK_NAME_PATTERN, self.name):  # the manifest's rule: also a URL path segment
            raise ValueError(f"task name {self.name!r} must match {TASK_NAME_PATTERN}")
        if self.protocol not in PROTOCOL_METRICS:
            raise ValueError(f"task {self.name!r}: protocol must be one of {', '.join(PROTOCOL_METRICS)}, "
                             f"got {self.protocol!r}")

    @property
    def metric(self) -> str:
        return PROTOCOL_METRICS[self.protocol]


# Re-id augmentation: flip + pad-and-crop + erasing, the strong-baseline recipe; faces: aligned crops, so only
# small shifts and mild erasing; products: random-resized crop as in metric-learning practice.
_REID_AUGMENT = AugmentConfig(translate=0.08, brightness=0.2, contrast=0.15, erase_p=0.5)

# The paper's four tasks, with its CosFace scale / margin per task.
TASK_SPECS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("face", "verification", read_face_task,
             AugmentConfig(crop_scale=(0.85, 1.0), translate=0.05, brightness=0.2, contrast=0.2, erase_p=0.3),
             50.0, 0.30, False),
    TaskSpec("person", "reid", reid_reader("person", MARKET_LAYOUT, MSMT17_LAYOUT), _REID_AUGMENT, 30.0, 0.20, True),
    TaskSpec("vehicle", "reid", reid_reader("vehicle", VERI_LISTS_LAYOUT, VERI_LAYOUT), _REID_AUGMENT,
             20.0, 0.20, True),
    TaskSpec("product", "recall", read_sop_task,
             AugmentConfig(crop_scale=(0.6, 1.0), crop_ratio=(0.8, 1.25), translate=0.05, brightness=0.2,
                           contrast=0.2, erase_p=0.25),
             30.0, 0.20, True),
)}
TASKS: tuple[str, ...] = tuple(TASK_SPECS)  # the paper's tasks: the default for training and the demo


def register_task(spec: TaskSpec) -> None:
    """Add a task (or replace one of the same name) for this process."""
    TASK_SPECS[spec.name] = spec


def get_task(name: str) -> TaskSpec:
    try:
        return TASK_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASK_SPECS)}") from None


def parse_tasks(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Parse 'face,person' (or a list) into registered task names, keeping the registry's order."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [t for t in names if t not in TASK_SPECS]
    if unknown or not names:
        raise ValueError(f"unknown task(s) {unknown or names!r}; expected a subset of {', '.join(TASK_SPECS)}")
    return tuple(t for t in TASK_SPECS if t in names)
