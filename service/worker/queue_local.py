"""The embedded default: the same rebuild jobs, run by the gateway itself (no Redis).

`LocalJobQueue` has the producer-side interface of `RedisJobQueue` (`request_rebuild`, `job_status`,
`latest_snapshot`, `subscribe`, `close`), so the gateway's follower does not know which one it has.
Jobs run one at a time through the same `execute_job` as `ufo worker`, from one background thread, either
in a child process (`isolation="process"`, the gateway's default: the job's Python work, reading the store,
assembling labels, writing the snapshot, holds another interpreter's GIL, never the one the searches need;
the child runs reniced, with one FAISS thread) or in that thread itself (`"thread"`: no process start, on an
event loop and a store connection of the thread's own with a short GIL switch interval; see
service.worker.fairness). Dedupe per task: a
request while the task's job is queued or running joins it. The latest snapshot is `latest.json` on
disk, so a restarted gateway finds it; job states live in memory (the last build is read back from
`latest.json`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import queue
import threading
import time
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from dataclasses import replace
from typing import Literal

from service.config import IndexSettings
from service.worker.fairness import lower_priority, responsive_gil
from service.worker.rebuild import NothingToBuild, execute_job
from service.worker.records import Job, JobStatus, SnapshotInfo
from service.worker.retention import trim_log
from service.worker.snapshots import SnapshotStore

log = logging.getLogger(__name__)

_STOP = object()
Isolation = Literal["thread", "process"]


class JobFailed(RuntimeError):
    """A job that failed in the child process, as its type name and message (exceptions with their own
    constructor arguments do not survive pickling back to the parent)."""


def run_in_child(job: Job, store_url: str, snapshots: SnapshotStore, opts: IndexSettings, threads: int,
                 nice: int) -> SnapshotInfo:
    """The job, in the child process (its own interpreter, GIL and store connection), reniced."""
    lower_priority(nice)  # threads started from here (FAISS's, the loop's executor) inherit it
    try:
        return asyncio.run(execute_job(job, store_url, snapshots, opts, threads=threads))
    except NothingToBuild as exc:
        raise NothingToBuild(str(exc)) from None
    except Exception as exc:
        raise JobFailed(f"{type(exc).__name__}: {exc}") from None


class LocalSubscription:
    """Announcements of one task's snapshots, delivered onto the subscriber's event loop."""

    def __init__(self, owner: LocalJobQueue, task: str):
        self.task = task
        self._owner = owner
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[SnapshotInfo] = asyncio.Queue()

    def push(self, info: SnapshotInfo) -> None:
        """Called from the job thread."""
        with contextlib.suppress(RuntimeError):  # the subscriber's loop is closed: nobody listens
            self._loop.call_soon_threadsafe(self._queue.put_nowait, info)

    async def next(self, timeout: float) -> SnapshotInfo | None:
        """The next announcement within `timeout` seconds, or None."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def close(self) -> None:
        self._owner.unsubscribe(self)


class LocalJobQueue:
    """In-process rebuild queue (see the module docstring)."""

    def __init__(self, store_url: str, snapshots: SnapshotStore, opts: IndexSettings, *, threads: int = 1,
                 nice: int | None = None, isolation: Isolation = "thread"):
        self.store_url = store_url
        self.snapshots = snapshots
        self.opts = opts
        self.threads = threads  # FAISS threads for the build: 1, so searches keep a core
        self.isolation = isolation
        # The job's niceness. In a thread 0 by default: a reniced thread that holds the GIL waits longer for a
        # CPU, and every search waits for it (priority inversion through the GIL; measured: p99 53 ms). A
        # child process shares no GIL with the searches: reniced to 19 by default.
        self.nice = nice if nice is not None else (19 if isolation == "process" else 0)
        self._pool: ProcessPoolExecutor | None = None
        self._jobs: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._status: dict[str, JobStatus] = {}
        self._subscribers: list[LocalSubscription] = []
        self._thread: threading.Thread | None = None

    # -- producer side (the follower's view) -----------------------------------------------------

    async def request_rebuild(self, task: str, reason: str, *, model_version: str | None = None) -> JobStatus:
        """Queue a rebuild of `task` unless one is queued or running (then that one is returned)."""
        with self._lock:
            current = self._status.get(task)
            if current is not None and current.state in ("queued", "running"):
                return current
            job = Job(task, reason, model_version=model_version)
            base = current or self._from_latest(task)
            self._status[task] = replace(base, state="queued", job_id=job.id, reason=reason,
                                         queued_at=job.requested_at, started_at=None, finished_at=None,
                                         attempts=0, worker="in-process", error="")
            self._ensure_thread()
        self._jobs.put(job)
        log.info("rebuild of %s (%s): queued in-process job %s", task, reason, job.id)
        return self._status[task]

    async def job_status(self, task: str) -> JobStatus:
        with self._lock:
            return self._status.get(task) or self._from_latest(task)

    async def latest_snapshot(self, task: str) -> SnapshotInfo | None:
        return await asyncio.to_thread(self.snapshots.read_latest, task)

    def subscribe(self, task: str) -> LocalSubscription:
        subscription = LocalSubscription(self, task)
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: LocalSubscription) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(subscription)

    async def close(self) -> None:
        """Let the running job finish, drop queued ones, stop the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(thread.join)

    # -- the job thread --------------------------------------------------------------------------

    def _from_latest(self, task: str) -> JobStatus:
        latest = self.snapshots.read_latest(task)
        if latest is None:
            return JobStatus(task)
        return JobStatus(task, state="done", job_id=latest.job_id, last_build_at=latest.built_at,
                         last_build_seconds=latest.build_seconds, last_version=latest.version)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rebuild-jobs", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        if self.isolation == "thread":
            lower_priority(self.nice)  # before the job's loop starts its executor threads: they inherit it
        while (job := self._jobs.get()) is not _STOP:
            assert isinstance(job, Job)
            self._update(job.task, state="running", started_at=time.time(), attempts=1)
            try:
                info = self._execute(job)
            except NothingToBuild as exc:
                self._update(job.task, state="done", finished_at=time.time(), error=f"skipped: {exc}")
            except Exception as exc:  # a failed job is recorded, never kills the thread
                log.exception("in-process rebuild of %s failed", job.task)
                error = str(exc) if isinstance(exc, JobFailed) else f"{type(exc).__name__}: {exc}"
                self._update(job.task, state="failed", finished_at=time.time(), error=error)
            else:
                if self._announce(info):
                    self._trim(info)
                self._update(job.task, state="done", finished_at=time.time(), last_build_at=info.built_at,
                             last_build_seconds=info.build_seconds, last_version=info.version)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _execute(self, job: Job) -> SnapshotInfo:
        if self.isolation == "thread":
            with responsive_gil():  # the job's Python work must not stall the gateway's searches
                return asyncio.run(execute_job(job, self.store_url, self.snapshots, self.opts, threads=self.threads))
        if self._pool is None:  # one child for the gateway's lifetime: its start (imports) is paid once
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            return self._pool.submit(run_in_child, job, self.store_url, self.snapshots, self.opts, self.threads,
                                     self.nice).result()
        except BrokenExecutor:  # the child died (killed, out of memory): a fresh one for the next job
            self._pool.shutdown(wait=False)
            self._pool = None
            raise

    def _trim(self, info: SnapshotInfo) -> None:
        try:
            asyncio.run(trim_log(self.store_url, info, self.opts.log_retain))
        except Exception:  # a failed trim only leaves the log longer: logged, never fails the job
            log.exception("could not trim the change log of %s", info.task)

    def _update(self, task: str, **changes: object) -> None:
        with self._lock:
            self._status[task] = replace(self._status.get(task) or JobStatus(task), **changes)  # type: ignore[arg-type]

    async def announce(self, info: SnapshotInfo) -> bool:
        """Make `info` the task's latest snapshot and tell the subscribers (unless a newer one is there)."""
        return await asyncio.to_thread(self._announce, info)

    def _announce(self, info: SnapshotInfo) -> bool:
        with self._lock:  # one announcer at a time: the compare and the write go together
            if not info.newer_than(self.snapshots.read_latest(info.task)):
                return False
            self.snapshots.write_latest(info)
            listeners = [s for s in self._subscribers if s.task == info.task]
        self.snapshots.prune(info.task, self.opts.keep_snapshots)
        for subscription in listeners:
            subscription.push(info)
        return True
