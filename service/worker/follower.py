"""The gateway side of background rebuilds: `IndexFollower` owns one task's live index.

- Writes reach the index only from the store's change log (`sync_to`, called by the write path right
  after the store acknowledged, and by the background loop for other replicas' writes): two replicas
  that adopt the same snapshot apply the same log in the same order and answer identically.
- Snapshots: on an announcement (pub/sub, or the `latest` pointer polled every `poll_interval_s`), the
  follower loads the new snapshot in a thread while the current index keeps answering, replays the log
  from the snapshot's offset into it, and swaps it in with one assignment (`VectorIndex.finish_rebuild`:
  the same `VectorIndex` object, so the app's searcher keeps working); writes that raced with the load
  are journaled and replayed. Tombstones hold throughout: deletes are log entries like any other.
- Triggers: delta size, tombstone ratio, schedule (every poll), `request_rebuild` (the admin route); the
  queue deduplicates per task. Canary: `observe_query` feeds live queries to a `RecallCanary`.
- Model upgrades: `serving` (model version, index, searcher) is one value, replaced by one assignment
  (`cut_over`, `service.worker.upgrade`): a query embedded with its model is searched in its index.
- Engines: a FAISS index is rebuilt by jobs and adopted from snapshots; a Milvus collection indexes and
  compacts itself: the follower applies the log to it, makes it again when it outgrows its index or on
  request (`milvus_rebuild`), and promotes (alias) at a cut-over. Each round it reads the task's alias: another model
  version's collection goes to `on_new_model` like a FAISS snapshot of a new model; its own version's is
  switched to (another replica's rebuild).

The gateway and the tests build it the same way: `IndexFollower.open(...)` (`live_index.open_live_index`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.config import IndexSettings
from service.index import SnapshotError, VectorIndex
from service.index.errors import IndexUnavailable, ModelVersionError
from service.index.snapshot import load_snapshot
from service.store.base import ChangeLogTrimmed, GalleryStore
from service.worker.canary import RecallCanary
from service.worker.changes import ApplyStats, Reembedder, follow_log
from service.worker.fairness import freeze_gc, responsive_gil
from service.worker.live_index import alias_moved, open_live_index, rebuild_or_refill, reopen_aliased
from service.worker.milvus_rebuild import adopt_same_version, recreate, recreate_reason
from service.worker.queue import JobQueue, Subscription
from service.worker.records import JobStatus, SnapshotInfo
from service.worker.serving import Serving
from service.worker.snapshots import SnapshotStore
from service.worker.triggers import rebuild_reason
from service.worker.upgrade_status import UpgradeStatus

if TYPE_CHECKING:
    from service.index import CoalescingSearcher, RebuildReport
    from service.index.engine import EngineCatalog, IndexEngine
    from service.inference import ModelInfo

log = logging.getLogger(__name__)

NEW_MODEL_RETRY_S = 5.0  # a replica that cannot adopt another replica's new model yet tries again this often


def snapshot_path(info: SnapshotInfo, snapshots: SnapshotStore | None) -> Path:
    """Where `info`'s data file is on this host: under our own mount of the shared snapshot folder when we
    know it (pods may mount it at different paths), else the writer's path."""
    return snapshots.data_path(info.task, info.version) if snapshots is not None else Path(info.path)


class IndexFollower:
    """One task's live index kept in step with the store and the announced snapshots (module docstring)."""

    def __init__(self, task: str, index: IndexEngine, store: GalleryStore, queue: JobQueue, opts: IndexSettings, *,
                 snapshot: SnapshotInfo | None = None, snapshots: SnapshotStore | None = None,
                 reembed: Reembedder | None = None, on_swap: Callable[[IndexEngine], None] | None = None,
                 on_new_model: Callable[[SnapshotInfo], Any] | None = None,
                 on_recall: Callable[[str, int, float], None] | None = None, freeze_gc: bool = True,
                 searcher: CoalescingSearcher | None = None, info: ModelInfo | None = None,
                 catalog: EngineCatalog | None = None, built: RebuildReport | None = None):
        self.task = task
        self.store = store
        self.queue = queue
        self.opts = opts
        self.snapshot = snapshot  # the snapshot the live main came from (None: built here)
        self.snapshots = snapshots  # this host's mount of the shared snapshot folder (None: trust info.path)
        self.reembed = reembed  # re-embeds records of another model version written during an upgrade
        self.on_swap = on_swap  # called with the new index after a model cut-over (re-point the searcher)
        self.on_new_model = on_new_model  # called once per snapshot of another model version
        self.canary = RecallCanary(k=opts.canary_k, per_round=opts.canary_queries,
                                   max_exact_items=opts.exact_scan_max_items,
                                   on_result=lambda r: on_recall and on_recall(task, opts.canary_k, r))
        self.swaps = 0
        self.last_error: str | None = None
        self.model_error: str | None = None  # why another replica's new model is not adopted yet (retried)
        self.engine_error: str | None = None  # why the index engine (Milvus) did not answer the last round
        self.upgrade: UpgradeStatus | None = None  # progress of a model upgrade (service.worker.upgrade)
        self.job: JobStatus | None = None  # Milvus: this process's last rebuild (FAISS jobs live in the queue)
        self.catalog = catalog  # the engine's catalog: a cut-over promotes the new index there (Milvus alias)
        self.built = built  # the build from the store at open, when there was one
        self.freeze_gc = freeze_gc  # gc.freeze() after start and swaps: no full-GC stalls mid-rebuild (fairness.py)
        self._serving = Serving(index.model_version, index, searcher, info)
        self._sync_lock = asyncio.Lock()  # log application: catch-ups and a swap's final step
        self.swap_lock = asyncio.Lock()  # one snapshot adoption or cut-over at a time
        self._requested_at = -math.inf
        self._rejected: set[str] = set()  # snapshot versions that failed to load
        self._notified: set[str] = set()  # new-model snapshots handed to `on_new_model` successfully
        self._notify_after = 0.0  # monotonic time before which a failed `on_new_model` is not retried
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    async def open(cls, task: str, store: GalleryStore, queue: JobQueue, opts: IndexSettings, *,
                   model_version: str, dim: int, local_snapshot: Path | None = None,
                   **options: Any) -> IndexFollower:
        """A follower over the task's live index opened and caught up by `open_live_index` (the newest
        usable snapshot, the engine's live collection, or a build from the store); a rebuild is requested
        when an exact FAISS index was built for a gallery large enough for an approximate one."""
        opened = await open_live_index(task, store, queue, model_version=model_version, dim=dim,
                                       catalog=options.get("catalog"), snapshots=options.get("snapshots"),
                                       local_snapshot=local_snapshot, reembed=options.get("reembed"))
        follower = cls(task, opened.index, store, queue, opts, snapshot=opened.snapshot, built=opened.built,
                       **options)
        if opened.built is not None and follower.rebuilds and len(opened.index) >= opts.flat_below:
            await follower.request_rebuild("startup")
        return follower

    # -- what the app reads ----------------------------------------------------------------------

    @property
    def serving(self) -> Serving:
        return self._serving

    @property
    def index(self) -> IndexEngine:
        return self._serving.index

    @property
    def rebuilds(self) -> bool:
        """Whether this engine's index is rebuilt by jobs and snapshotted (FAISS); Milvus indexes itself."""
        return isinstance(self.index, VectorIndex)

    @property
    def model_version(self) -> str:
        return self._serving.model_version

    @property
    def upgrading(self) -> bool:
        """True while a model upgrade runs (no rebuild triggers, no other model's snapshot announced)."""
        return self.upgrade is not None and self.upgrade.running

    def observe_query(self, xq: Any) -> None:
        """Offer searched query vectors to the recall canary (cheap; call it on the search path)."""
        self.canary.observe(xq)

    async def status(self) -> dict[str, Any]:
        """Everything GET /v1/tasks/{task}/index reports: index, snapshot, job, canary, upgrade."""
        index, snap = self.index, self.snapshot
        size = len(index) if self.rebuilds else await asyncio.to_thread(len, index)  # Milvus: a round trip
        try:
            job: dict[str, Any] | None = (self.job or await self.queue.job_status(self.task)).to_dict()
        except Exception as exc:  # the queue being down must not take the status route with it
            job = {"state": None, "error": f"job queue unreachable: {exc}"}
        return {
            "task": self.task, "model_version": self.model_version, "dim": index.dim, "type": index.factory,
            "search_params": index.search_params, "size": size, "main_size": index.main_size if self.rebuilds else size,
            "delta_size": index.delta_size, "tombstones": index.tombstones, "offset": index.offset,
            "built_at": index.built_at, "snapshot": None if snap is None else asdict(snap), "job": job,
            # the build's tuned recall: the snapshot's (FAISS) or the collection's (Milvus tunes its own ef)
            "recall": snap.recall if snap is not None else getattr(index, "tuned_recall", None),
            "canary_recall": self.canary.recall, "canary_k": self.canary.k, "canary_exact": self.canary.exact,
            "swaps": self.swaps, "last_error": self.last_error,
            "upgrade": None if self.upgrade is None else self.upgrade.to_dict(),
        }

    # -- writes and rebuild requests -------------------------------------------------------------

    async def sync_to(self, offset: int | None = None) -> ApplyStats:
        """Apply the change log up to at least `offset` (None: to its end). The write path calls this after
        the store acknowledged a write, so the write is searchable when the request returns."""
        if offset is not None and self.index.offset >= offset:
            return ApplyStats()
        async with self._sync_lock:
            index = self.index
            if offset is not None and index.offset >= offset:
                return ApplyStats()
            return await follow_log(index, self.store, reembed=self.reembed)

    async def request_rebuild(self, reason: str = "request") -> JobStatus:
        """Queue a rebuild of this task (joined when one is queued or running); Milvus: make its collection
        again, in this process (`service.worker.milvus_rebuild`)."""
        self._requested_at = time.monotonic()
        if self.rebuilds:
            return await self.queue.request_rebuild(self.task, reason, model_version=self.model_version)
        if self.job is None or self.job.state != "running":
            now = time.time()
            self.job = JobStatus(self.task, "running", f"{self.task}-{time.time_ns():x}", reason, now, now)
            self._tasks = [t for t in self._tasks if not t.done()]  # (finished rebuilds: not kept for ever)
            self._tasks.append(asyncio.create_task(self._recreate(self.job), name=f"recreate-{self.task}"))
        return self.job

    async def _recreate(self, job: JobStatus) -> None:
        try:
            self.job = await recreate(self, job)
        except Exception as exc:  # the live collection keeps serving; the next trigger or request tries again
            self.job = replace(job, state="failed", finished_at=time.time(), error=f"{type(exc).__name__}: {exc}")
            log.error("%s: making the collection again failed: %s", self.task, self.job.error)

    async def check_triggers(self, size: int | None = None) -> str | None:
        """Request a rebuild when a trigger fires (not again within `min_rebuild_gap_s`); returns the reason.
        `size`: a Milvus collection's row count, as the round's engine check read it (no second call)."""
        if time.monotonic() - self._requested_at < self.opts.min_rebuild_gap_s or self.upgrading:
            return None
        if not self.rebuilds:
            reason = None if size is None else recreate_reason(self.index, self.opts, size)
            if reason is not None:
                await self.request_rebuild(reason)
            return reason
        last = self.snapshot.built_at if self.snapshot is not None else self.index.built_at
        reason = rebuild_reason(self.index, self.opts, last, time.time())
        if reason is not None and len(self.index) > 0:
            await self.request_rebuild(reason)
        return reason

    # -- snapshots -------------------------------------------------------------------------------

    def wants(self, info: SnapshotInfo) -> bool:
        """True for a loadable snapshot of this task and model that is newer than the one serving."""
        return (self.rebuilds and info.task == self.task and info.version not in self._rejected
                and info.model_version == self.model_version and info.dim == self.index.dim
                and info.newer_than(self.snapshot))

    async def adopt(self, info: SnapshotInfo) -> bool:
        """Load `info` beside the live index, replay the log from its offset, swap. Returns True if swapped."""
        async with self.swap_lock:
            if not self.wants(info):
                return False
            t0 = time.perf_counter()
            live = self.index
            live.begin_rebuild()  # journal live writes from now: none can slip between load and swap
            try:
                path = snapshot_path(info, self.snapshots)
                with responsive_gil():  # the load parses labels in Python beside the search path
                    fresh = await asyncio.to_thread(load_snapshot, path, model_version=live.model_version)
                await follow_log(fresh, self.store, reembed=self.reembed)  # the bulk, while live serves
                async with self._sync_lock:  # the last few changes, then the one-assignment swap
                    await follow_log(fresh, self.store, reembed=self.reembed)
                    replayed = live.finish_rebuild(fresh)
            except SnapshotError as exc:
                live.abort_rebuild()
                self._rejected.add(info.version)
                log.error("%s: snapshot %s rejected: %s", self.task, info.version, exc)
                return False
            except BaseException:
                live.abort_rebuild()
                raise
            self.snapshot = info
            self.swaps += 1
        self._freeze()
        log.info("%s: swapped in snapshot %s (%d items, %s, recall@%d %s) at offset %d, %d replayed, in %.2f s",
                 self.task, info.version, len(live), info.factory, info.recall_k,
                 "n/a" if info.recall is None else f"{info.recall:.4f}", live.offset, replayed,
                 time.perf_counter() - t0)
        return True

    async def adopt_model(self, info: SnapshotInfo, *, reembed: Reembedder | None = None,
                          model_info: ModelInfo | None = None) -> None:
        """Serve another model version from its announced snapshot, or (Milvus) from the collection the alias
        names (another replica ran the upgrade): open it beside the live index, replay the log, cut over
        (Milvus: without moving the alias, already there). Call it from `on_new_model` once the inference
        backend embeds with `info.model_version`; `reembed` (for that version) re-embeds records the old
        model still writes meanwhile, else they are skipped."""
        async with self.swap_lock:
            if info.model_version == self.model_version:
                return  # same model: `adopt` (the poll loop) handles it
            if self.rebuilds or self.catalog is None:
                with responsive_gil():
                    index = await asyncio.to_thread(load_snapshot, snapshot_path(info, self.snapshots),
                                                    model_version=info.model_version)
            else:
                index = await asyncio.to_thread(reopen_aliased, self.catalog, self.task, info)
            await follow_log(index, self.store, reembed=reembed)
            await self.cut_over(index, snapshot=info if self.rebuilds else None, reembed=reembed, info=model_info,
                                promote=self.rebuilds)

    async def cut_over(self, index: IndexEngine, *, snapshot: SnapshotInfo | None = None,
                       reembed: Reembedder | None = None, skip: Callable[[int], bool] | None = None,
                       info: ModelInfo | None = None, promote: bool = True) -> None:
        """Serve `index` (another model version, described by `info`) from now on: catch it up, promote it
        in the engine's catalog (Milvus: the alias, for restarts and other replicas; not when adopting another
        replica's), then replace `serving` in one assignment. Caller holds `swap_lock` (`service.worker.upgrade`)."""
        async with self._sync_lock:
            await follow_log(index, self.store, reembed=reembed, skip=skip)
            if promote and self.catalog is not None and not self.rebuilds:
                await asyncio.to_thread(self.catalog.promote, self.task, index)
            self._serving = self._serving.but(index, info)
            self.reembed = reembed
            self.snapshot = snapshot
            self.swaps += 1
        if self.on_swap is not None:
            self.on_swap(index)
        self._freeze()
        log.info("%s: cut over to model %s (%d items)", self.task, index.model_version, len(index))

    @property
    def health_problem(self) -> str | None:
        """Why this task should not be sent traffic (/readyz), or None."""
        return self.engine_error or self.model_error

    async def poll(self, announced: SnapshotInfo | None = None) -> None:
        """One round of upkeep: check the engine, catch up the log, adopt a newer snapshot or (Milvus) the
        collection another replica promoted, check the triggers."""
        moved, size = None, None
        if not self.rebuilds:  # an index outside this process: is it answering? (/readyz reports it)
            try:
                size = await asyncio.to_thread(len, self.index)
                if self.catalog is not None:
                    moved = await asyncio.to_thread(alias_moved, self.catalog, self.task, self.index)
                self.engine_error = None
            except Exception as exc:
                self.engine_error = str(exc)
                raise
            if moved is None:
                self._notified.clear()  # serving what the alias names: a later move is news again
        try:
            await self.sync_to()
        except ChangeLogTrimmed as exc:
            log.warning("%s: %s; rebuilding from the store", self.task, exc)
            await rebuild_or_refill(self.index, self.store)
        latest = moved if not self.rebuilds else announced or await self.queue.latest_snapshot(self.task)
        if latest is not None and latest.model_version != self.model_version:
            await self._tell_new_model(latest)
        elif moved is not None and not self.swap_lock.locked():  # another process made the collection again
            await adopt_same_version(self, moved)
        elif latest is not None and self.wants(latest) and not self.swap_lock.locked():
            await self.adopt(latest)  # (not while an upgrade holds the lock: the log must keep flowing)
        await self.check_triggers(size)

    async def _tell_new_model(self, info: SnapshotInfo) -> None:
        """Hand a snapshot of another model version to `on_new_model` (which raises when it cannot adopt it
        yet: the version missing from this replica's repository, the backend down); retried every
        `NEW_MODEL_RETRY_S` until it succeeds, the reason kept in `model_error` meanwhile."""
        if (self.on_new_model is None or info.version in self._notified or self.upgrading
                or time.monotonic() < self._notify_after):
            return
        try:
            result = self.on_new_model(info)
            if asyncio.iscoroutine(result):
                await result
        except Exception as exc:
            self.model_error = (f"the gallery moved to model {info.model_version}; this replica serves "
                                f"{self.model_version} and cannot adopt it yet: {type(exc).__name__}: {exc}")
            self._notify_after = time.monotonic() + NEW_MODEL_RETRY_S
            log.warning("%s: %s (retrying in %.0f s)", self.task, self.model_error, NEW_MODEL_RETRY_S)
            return
        self._notified.add(info.version)
        self.model_error = None

    # -- background loops ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start following (announcements + polling) and the recall canary."""
        self._freeze()
        self._subscription = self.queue.subscribe(self.task)
        self._tasks.append(asyncio.create_task(self._follow(), name=f"follow-{self.task}"))
        if self.opts.canary_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._canary(), name=f"canary-{self.task}"))

    def _freeze(self) -> None:
        if self.freeze_gc:
            freeze_gc()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._subscription is not None:
            await self._subscription.close()

    async def _follow(self) -> None:
        assert self._subscription is not None
        while True:
            announced = None
            try:
                announced = await self._subscription.next(self.opts.poll_interval_s)
                await self.poll(announced)
                self.last_error = self.model_error
            except asyncio.CancelledError:
                raise
            except ModelVersionError as exc:
                self.last_error = str(exc)
                log.error("%s: %s", self.task, exc)
                await asyncio.sleep(self.opts.poll_interval_s)
            except Exception as exc:  # the store or queue down: keep serving, try again next round
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s: follower round failed: %s", self.task, self.last_error)
                await asyncio.sleep(self.opts.poll_interval_s)

    async def _canary(self) -> None:
        while True:
            await asyncio.sleep(self.opts.canary_interval_s)
            try:
                await asyncio.to_thread(self.canary.measure, self.index)
            except IndexUnavailable as exc:  # Milvus away: the follower's rounds report it (/readyz)
                log.warning("%s: recall canary round skipped: %s", self.task, exc)
            except Exception:
                log.exception("%s: recall canary round failed", self.task)
