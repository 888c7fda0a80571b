"""The four retrieval tasks and the paper's per-task settings: one source of truth."""

from __future__ import annotations

from dataclasses import dataclass

TASKS: tuple[str, ...] = ("face", "person", "vehicle", "product")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    cosface_scale: float
    cosface_margin: float
    use_triplet: bool  # soft-margin batch-hard triplet on pre-BN features
    metric: str  # the headline metric the search maximises and the report leads with


TASK_SPECS: dict[str, TaskSpec] = {
    "face": TaskSpec("face", 50.0, 0.30, False, "verification_accuracy"),
    "person": TaskSpec("person", 30.0, 0.20, True, "mAP"),
    "vehicle": TaskSpec("vehicle", 20.0, 0.20, True, "mAP"),
    "product": TaskSpec("product", 30.0, 0.20, True, "recall@1"),
}


def parse_tasks(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Parse 'face,person' (or a list) into known task names, keeping the canonical order."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        raise ValueError(f"unknown task(s) {unknown or names!r}; expected a subset of {', '.join(TASKS)}")
    return tuple(t for t in TASKS if t in names)
