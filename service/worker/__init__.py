"""Background index rebuilds, snapshot followers, the recall canary and model upgrades.

Names are imported on first use (PEP 562), so `ufo --help` (which reads `service.worker.cli`'s flags)
loads neither FAISS nor Redis.

Gateway side: `open_job_queue(settings)` → `IndexFollower.open(...)` per task (see `follower`),
`upgrade_model(...)` for a new model version, `ImageKeeper` for kept images.
Worker side: `run_worker(settings)` (`ufo worker`), the job itself is `rebuild.run_rebuild`. With Milvus the
gateway's follower makes a collection again itself (`milvus_rebuild`): there is no job to queue.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ImageKeeper": "service.worker.images",
    "IndexFollower": "service.worker.follower",
    "Serving": "service.worker.serving",
    "rebuild_reason": "service.worker.triggers",
    "JobQueue": "service.worker.queue",
    "open_job_queue": "service.worker.queue",
    "queue_url": "service.worker.queue",
    "snapshot_store": "service.worker.queue",
    "LocalJobQueue": "service.worker.queue_local",
    "RedisJobQueue": "service.worker.queue_redis",
    "Job": "service.worker.records",
    "JobStatus": "service.worker.records",
    "SnapshotInfo": "service.worker.records",
    "RecallCanary": "service.worker.canary",
    "Reembedder": "service.worker.changes",
    "choose_factory": "service.worker.rebuild",
    "run_rebuild": "service.worker.rebuild",
    "run_worker": "service.worker.runner",
    "SnapshotStore": "service.worker.snapshots",
    "UpgradeError": "service.worker.upgrade",
    "UpgradeReport": "service.worker.upgrade",
    "upgrade_model": "service.worker.upgrade",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'service.worker' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
