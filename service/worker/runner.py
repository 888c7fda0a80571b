"""`ufo worker`: the consumer loop of the Redis job queue, one job at a time.

Per job: mark it running, renew the claim in the background while `execute_job` reads, builds, tunes and
writes the snapshot, then ack it and announce the snapshot in one script. Failure handling:
- Redis or the store unreachable (a restart): the job is left pending, not acked; after `claim_idle_s`
  this or another worker claims it again;
- anything else (a gallery of two model versions, a bad factory string): the job is marked failed with the
  error, so `GET /v1/tasks/{task}/index` shows why; a job delivered more than `max_attempts` times (its
  workers keep dying) is marked failed without running;
- the claim lost to another worker (we were too slow to renew): the build is abandoned.
Killed with -9 mid-build, the worker leaves a temp file at most (snapshots are written temp + rename);
the live indexes keep serving and the job is claimed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from service.config import Settings
from service.worker.heartbeat import Heartbeat
from service.worker.queue import queue_url, snapshot_store
from service.worker.queue_redis import TRANSIENT, Claimed, RedisJobQueue
from service.worker.rebuild import NothingToBuild, execute_job
from service.worker.records import SnapshotInfo
from service.worker.retention import trim_log
from service.worker.snapshots import SnapshotStore

log = logging.getLogger(__name__)

T = TypeVar("T")


class ClaimLost(RuntimeError):
    """Another worker took the job over while this one was building it."""


def default_consumer() -> str:
    """A consumer name unique per process: host-pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


async def _renew(queue: RedisJobQueue, claimed: Claimed, consumer: str, every_s: float,
                 heartbeat: Heartbeat | None = None) -> None:
    """Renew the claim until cancelled (beating the liveness heartbeat); raise ClaimLost when another worker
    owns the job."""
    while True:
        await asyncio.sleep(every_s)
        if heartbeat is not None:
            heartbeat.beat()
        try:
            if not await queue.heartbeat(claimed, consumer):
                raise ClaimLost(f"job {claimed.job.id} was claimed by another worker")
        except TRANSIENT as exc:  # Redis restarting: keep building, renew when it is back
            log.warning("could not renew the claim of job %s: %s", claimed.job.id, exc)


async def _retry(what: str, call: Callable[[], Awaitable[T]], *, attempts: int = 20) -> T | None:
    """`call()`, retried across a Redis restart; None when it never got through (the job then stays pending
    and is built again: at-least-once)."""
    for attempt in range(attempts):
        try:
            return await call()
        except TRANSIENT as exc:
            log.warning("could not %s (%s); retrying", what, exc)
            await asyncio.sleep(min(0.2 * 2**attempt, 3.0))
    return None


async def _finish(queue: RedisJobQueue, claimed: Claimed, *, info: SnapshotInfo | None = None,
                  error: str = "") -> None:
    await _retry(f"record job {claimed.job.id}", lambda: queue.finish(claimed, info=info, error=error))


async def _build(queue: RedisJobQueue, claimed: Claimed, consumer: str, settings: Settings,
                 snapshots: SnapshotStore, drill_pause_s: float, heartbeat: Heartbeat | None = None) -> SnapshotInfo:
    """Run the job with its claim renewed alongside; the first of the two to fail ends both."""
    async def job() -> SnapshotInfo:
        if drill_pause_s:  # fault drills: hold the claimed job long enough to kill this process mid-build
            await asyncio.sleep(drill_pause_s)
        return await execute_job(claimed.job, settings.store_url, snapshots, settings.index)

    build = asyncio.create_task(job())
    renew = asyncio.create_task(_renew(queue, claimed, consumer, settings.worker.heartbeat_s, heartbeat))
    try:
        done, _ = await asyncio.wait({build, renew}, return_when=asyncio.FIRST_COMPLETED)
        if renew in done:
            build.cancel()
            renew.result()  # raises ClaimLost
        return build.result()
    finally:
        for task in (build, renew):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(build, renew, return_exceptions=True)


async def process(queue: RedisJobQueue, claimed: Claimed, consumer: str, settings: Settings,
                  snapshots: SnapshotStore, *, drill_pause_s: float = 0.0, heartbeat: Heartbeat | None = None) -> str:
    """Run one claimed job; returns its outcome: done, failed, skipped, retry or lost."""
    job = claimed.job
    if claimed.deliveries > settings.worker.max_attempts:
        await _finish(queue, claimed, error=f"gave up after {claimed.deliveries - 1} attempts (workers died)")
        return "failed"
    await queue.start(claimed, consumer)
    log.info("job %s: rebuild %s (%s), delivery %d", job.id, job.task, job.reason, claimed.deliveries)
    t0 = time.perf_counter()
    try:
        info = await _build(queue, claimed, consumer, settings, snapshots, drill_pause_s, heartbeat)
    except NothingToBuild as exc:
        await _finish(queue, claimed)
        log.info("job %s: %s", job.id, exc)
        return "skipped"
    except ClaimLost as exc:
        log.warning("job %s abandoned: %s", job.id, exc)
        return "lost"
    except TRANSIENT as exc:
        log.warning("job %s interrupted (%s): left pending, it will be claimed again", job.id, exc)
        return "retry"
    except Exception as exc:
        log.exception("job %s failed", job.id)
        await _finish(queue, claimed, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    if await _retry(f"announce snapshot {info.version}", lambda: queue.announce(info)):
        snapshots.write_latest(info)  # the file beside the key: a gateway without Redis access finds it too
        snapshots.prune(job.task, settings.index.keep_snapshots)
        try:
            await _retry(f"trim the change log of {job.task}",
                         lambda: trim_log(settings.store_url, info, settings.index.log_retain))
        except Exception:  # a failed trim only leaves the log longer: logged, never fails the job
            log.exception("could not trim the change log of %s", job.task)
    await _finish(queue, claimed, info=info)
    log.info("job %s done in %.2f s: snapshot %s", job.id, time.perf_counter() - t0, info.version)
    return "done"


async def run_worker(settings: Settings, *, consumer: str | None = None, max_jobs: int | None = None,
                     stop: asyncio.Event | None = None, drill_pause_s: float = 0.0) -> int:
    """Consume rebuild jobs until `stop` is set (or `max_jobs` ran); returns the number processed.
    Survives Redis restarts: it reconnects and claims again."""
    url = queue_url(settings)
    if url is None:
        raise ValueError("ufo worker needs Redis: set UFO_WORKER__QUEUE_URL or a redis:// UFO_STORE_URL "
                         "(the embedded default runs rebuilds inside the gateway instead)")
    consumer = consumer or default_consumer()
    stop = stop or asyncio.Event()
    snapshots = snapshot_store(settings)
    queue = RedisJobQueue.connect(url, settings.worker)
    heartbeat = Heartbeat(settings.worker.heartbeat_file)
    processed, backoff = 0, 0.2
    log.info("worker %s consuming %s (snapshots in %s)", consumer, queue.stream, snapshots.root)
    try:
        while not stop.is_set() and (max_jobs is None or processed < max_jobs):
            heartbeat.beat()  # every round: at least every block_s, or every retry while Redis is away
            try:
                claimed = await queue.claim(consumer)
                backoff = 0.2
            except TRANSIENT as exc:
                log.warning("job queue unreachable (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if claimed is None:
                continue
            try:
                await process(queue, claimed, consumer, settings, snapshots, drill_pause_s=drill_pause_s,
                              heartbeat=heartbeat)
            except TRANSIENT as exc:  # Redis went away between the claim and the ack: the job stays pending
                log.warning("job %s left pending (%s); it will be claimed again", claimed.job.id, exc)
            processed += 1
    finally:
        heartbeat.remove()
        await queue.close()
    return processed
