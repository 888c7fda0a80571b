"""The job-queue interface the gateway sees, and which implementation a configuration gets.

Two implementations with the same producer side: `RedisJobQueue` (distributed: `ufo worker` processes
consume it) and `LocalJobQueue` (embedded default: an in-process thread runs the same job).
"""

from __future__ import annotations

from typing import Protocol

from service.config import Settings
from service.worker.records import JobStatus, SnapshotInfo
from service.worker.snapshots import SnapshotStore

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class Subscription(Protocol):
    """Snapshot announcements of one task."""

    async def next(self, timeout: float) -> SnapshotInfo | None:
        """The next announcement within `timeout` seconds, or None."""
        ...

    async def close(self) -> None:
        ...


class JobQueue(Protocol):
    """What a gateway asks of the rebuild jobs."""

    async def request_rebuild(self, task: str, reason: str, *, model_version: str | None = None) -> JobStatus:
        """Queue a rebuild (deduplicated per task) and return the task's job status."""
        ...

    async def job_status(self, task: str) -> JobStatus:
        """The task's current or last job (queued/running/done/failed) and its last build."""
        ...

    async def latest_snapshot(self, task: str) -> SnapshotInfo | None:
        """The newest announced snapshot, for late joiners."""
        ...

    def subscribe(self, task: str) -> Subscription:
        """Announcements of the task's new snapshots."""
        ...

    async def announce(self, info: SnapshotInfo) -> bool:
        """Make a snapshot the task's latest (unless a newer one is) and tell the followers."""
        ...

    async def close(self) -> None:
        ...


def queue_url(settings: Settings) -> str | None:
    """The Redis URL of the job queue: `worker.queue_url`, else the store's URL when it is Redis, else None
    (in-process jobs)."""
    if settings.worker.queue_url:
        return settings.worker.queue_url
    return settings.store_url if settings.store_url.startswith(REDIS_SCHEMES) else None


def snapshot_store(settings: Settings) -> SnapshotStore:
    """Where snapshots are written and found: data_dir/snapshots (shared storage in distributed mode)."""
    return SnapshotStore(settings.data_dir / "snapshots")


async def open_job_queue(settings: Settings) -> JobQueue:
    """The configured queue: Redis when `queue_url(settings)` is set, else in-process."""
    url = queue_url(settings)
    if url is not None:
        from service.worker.queue_redis import RedisJobQueue

        return await RedisJobQueue.open(url, settings.worker)
    from service.worker.queue_local import LocalJobQueue

    return LocalJobQueue(settings.store_url, snapshot_store(settings), settings.index,
                         isolation=settings.worker.local_jobs)
