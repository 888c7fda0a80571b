"""What the app holds while it runs: the inference backend and, per task, its store and index follower.

What a task serves right now (model version, index, searcher) has one owner: its follower's `serving`,
replaced in one assignment at a model cut-over (`service.worker.serving.Serving`). `TaskRuntime` reads it,
never copies it. A task whose index cannot serve (its gallery is of a model version the repository lacks)
has no follower and says why in `problem` (`Unavailable` on every index operation, /readyz false).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from service.config import Settings
from service.core.errors import NotFound, Unavailable
from service.inference import InferenceBackend, ModelInfo
from service.metrics import GatewayMetrics, IndexSample
from service.store import GalleryStore

if TYPE_CHECKING:
    from service.index import CoalescingSearcher, RebuildReport
    from service.index.engine import EngineCatalog, IndexEngine
    from service.worker.follower import IndexFollower
    from service.worker.queue import JobQueue
    from service.worker.serving import Serving


def model_version_of(info: ModelInfo) -> str:
    """The version string items and indexes are bound to: '<model_name>/<version>'."""
    return f"{info.model_name}/{info.version}"


@dataclass
class TaskRuntime:
    """One served task: its store, and its follower (None only while `problem` says why it cannot serve)."""

    task: str
    store: GalleryStore
    opened_with: ModelInfo  # the model it started with: what `info` reports while no follower serves
    follower: IndexFollower | None = None
    problem: str | None = None
    rebuilding: bool = False
    # Store write + index write happen under this lock, so both see the same order of writes to an id.
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def info(self) -> ModelInfo:
        """The model serving now (the follower's `serving`)."""
        if self.follower is not None and self.follower.serving.info is not None:
            return self.follower.serving.info
        return self.opened_with

    @property
    def model_version(self) -> str:
        return model_version_of(self.info)

    @property
    def index(self) -> IndexEngine | None:
        return self.follower.index if self.follower is not None else None

    @property
    def searcher(self) -> CoalescingSearcher | None:
        return self.follower.serving.searcher if self.follower is not None else None

    @property
    def last_rebuild(self) -> RebuildReport | None:
        return self.follower.built if self.follower is not None else None

    def live(self) -> IndexFollower:
        """The follower serving this task, or `Unavailable` saying why there is none."""
        if self.follower is None:
            raise Unavailable(f"task {self.task!r}: the index is unavailable: {self.problem or 'not loaded'}",
                              retry_after_s=30)
        return self.follower

    def serving(self) -> Serving:
        """What serves now (model version, index, searcher) as one value, or `Unavailable`."""
        return self.live().serving


@dataclass
class Runtime:
    """Everything the core's operations use (the HTTP layer keeps its own: keys, the rate limiter)."""

    settings: Settings
    backend: InferenceBackend
    metrics: GatewayMetrics
    executor: ThreadPoolExecutor
    tasks: dict[str, TaskRuntime] = field(default_factory=dict)
    queue: JobQueue | None = None  # the rebuild job queue (None until opened)
    catalog: EngineCatalog | None = None  # the Milvus catalog (None: FAISS in this process's memory)

    def task(self, name: str) -> TaskRuntime:
        """The served task, or `NotFound` naming the served ones."""
        found = self.tasks.get(name)
        if found is None:
            raise NotFound(f"unknown task {name!r}; this server serves {sorted(self.tasks)}", slug="unknown-task")
        return found

    def index_samples(self) -> list[IndexSample]:
        """Index sizes for the metrics collector."""
        return [IndexSample(t.task, len(f.index), f.index.tombstones, f.index.delta_size, f.swaps)
                for t in list(self.tasks.values()) if (f := t.follower) is not None]
