"""What the worker passes around: a rebuild `Job`, its `JobStatus`, and the `SnapshotInfo` it announces.

All three are frozen dataclasses with a JSON form (`to_json`/`from_json`), so the Redis queue, the
in-process queue, the latest-snapshot file and the gateway all read the same fields.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

JobState = Literal["queued", "running", "done", "failed"]
REASONS = ("delta", "tombstones", "schedule", "request", "startup", "size")  # size: Milvus, FLAT outgrown


def new_job_id() -> str:
    """A short unique, roughly time-ordered job id."""
    return f"{int(time.time() * 1000):x}-{uuid.uuid4().hex[:8]}"


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a dataclass from a dict, ignoring unknown keys (newer writers may add fields)."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class Job:
    """A request to rebuild one task's index. `model_version` None: the version of the stored items."""

    task: str
    reason: str
    id: str = field(default_factory=new_job_id)
    model_version: str | None = None
    requested_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Job:
        return _from_dict(cls, json.loads(text))


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A built snapshot: where it lies (`path`, the data file; its sidecar is `path + '.json'`) and what
    it holds. `offset` is the store change-log offset it includes; `recall` the recall@`recall_k` its
    operating point measured on held-out queries; `build_seconds` the whole job (read, build, tune, write)."""

    task: str
    version: str
    path: str
    model_version: str
    dim: int
    count: int
    offset: int
    factory: str
    search_params: str
    recall: float | None
    recall_k: int
    checksum: str
    built_at: float
    build_seconds: float
    faiss_seconds: float
    job_id: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> SnapshotInfo:
        return _from_dict(cls, json.loads(text))

    def newer_than(self, other: SnapshotInfo | None) -> bool:
        """True when this snapshot should replace `other` (more of the log, or a later build of it)."""
        return other is None or (self.offset, self.built_at) > (other.offset, other.built_at)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """The job state of one task, for `GET /v1/tasks/{task}/index`: the current or last job, and the
    last successful build (time, duration, version)."""

    task: str
    state: JobState | None = None  # None: no job ever
    job_id: str = ""
    reason: str = ""
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    worker: str = ""
    error: str = ""
    last_build_at: float | None = None
    last_build_seconds: float | None = None
    last_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_fields(cls, task: str, raw: dict[str, str]) -> JobStatus:
        """From a flat string mapping (a Redis hash): empty strings mean unset."""
        def number(key: str) -> float | None:
            value = raw.get(key, "")
            return float(value) if value else None

        state = raw.get("state") or None
        return cls(task=task, state=state, job_id=raw.get("job_id", ""),  # type: ignore[arg-type]
                   reason=raw.get("reason", ""), queued_at=number("queued_at"), started_at=number("started_at"),
                   finished_at=number("finished_at"), attempts=int(raw.get("attempts") or 0),
                   worker=raw.get("worker", ""), error=raw.get("error", ""), last_build_at=number("last_build_at"),
                   last_build_seconds=number("last_build_seconds"), last_version=raw.get("last_version", ""))

    def to_fields(self) -> dict[str, str]:
        """The flat string mapping `from_fields` reads."""
        return {k: "" if v is None else str(v) for k, v in asdict(self).items() if k != "task"}
