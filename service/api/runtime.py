"""What the app holds while it runs: the inference backend and, per task, its store, index and searcher.

Built in the app's lifespan (`start_runtime`), never at import; routes reach it through `deps.py`. On start
each task's index is loaded from a snapshot in `data_dir` when one matches the served model version and the
store, then caught up from the store's change log; otherwise it is rebuilt from the store. Each task serves
the model version its gallery was embedded with (the store's fence) when the repository has it, and is
upgraded to a newer one in the background (`service.api.upgrades`); a gallery of a version the repository
lacks leaves that task's index unavailable (503 with the reason, /readyz false): vectors of two models are
never mixed in one index.

`rebuild_task_index` builds a task's first index when no snapshot fits. Later rebuilds are background jobs
(`service.worker`): the runtime opens the job queue (`open_job_queue`: in-process thread, or Redis Streams
when the store is Redis) and one `IndexFollower` per task over its live index and store. The follower applies
writes from the store's change log, adopts each announced snapshot (loaded beside the live index, log
replayed, swapped atomically in the same `VectorIndex` object the searcher reads), fires the rebuild
triggers and runs the recall canary.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from service.api.auth import KeyRing, read_records
from service.api.errors import ApiError
from service.config import IndexSettings, Settings
from service.index import (
    CoalescingSearcher,
    RebuildReport,
    SnapshotError,
    VectorIndex,
    read_sidecar,
    rebuild_from_store,
)
from service.index.build import configure_gpu
from service.index.errors import ModelVersionError
from service.index.sync import sync_with_store
from service.inference import InferenceBackend, ModelInfo
from service.metrics import GatewayMetrics, IndexSample
from service.store import GalleryStore, open_store

if TYPE_CHECKING:
    from service.worker.follower import IndexFollower
    from service.worker.queue import JobQueue

log = logging.getLogger(__name__)


def model_version_of(info: ModelInfo) -> str:
    """The version string items and indexes are bound to: '<model_name>/<version>'."""
    return f"{info.model_name}/{info.version}"


@dataclass
class TaskRuntime:
    """One served task. `index`/`searcher` are None while `problem` says why the index cannot serve."""

    task: str
    info: ModelInfo
    store: GalleryStore
    index: VectorIndex | None = None
    searcher: CoalescingSearcher | None = None
    problem: str | None = None
    last_rebuild: RebuildReport | None = None
    rebuilding: bool = False
    follower: IndexFollower | None = None  # keeps `index` in step with the log and the rebuilt snapshots
    # Store write + index write happen under this lock, so both see the same order of writes to an id.
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def model_version(self) -> str:
        return model_version_of(self.info)

    def require_index(self) -> tuple[VectorIndex, CoalescingSearcher]:
        """The live index and searcher, or 503 saying why there is none."""
        if self.index is None or self.searcher is None:
            raise ApiError(503, f"task {self.task!r}: the index is unavailable: {self.problem or 'not loaded'}",
                           headers={"Retry-After": "30"})
        return self.index, self.searcher


@dataclass
class Runtime:
    """Everything the routes use."""

    settings: Settings
    backend: InferenceBackend
    metrics: GatewayMetrics
    keys: KeyRing
    executor: ThreadPoolExecutor
    tasks: dict[str, TaskRuntime] = field(default_factory=dict)
    queue: JobQueue | None = None  # the rebuild job queue (None until opened)

    def task(self, name: str) -> TaskRuntime:
        """The served task, or 404 naming the served ones."""
        found = self.tasks.get(name)
        if found is None:
            raise ApiError(404, f"unknown task {name!r}; this server serves {sorted(self.tasks)}",
                           slug="unknown-task")
        return found

    def index_samples(self) -> list[IndexSample]:
        """Index sizes for the metrics collector."""
        return [IndexSample(t.task, len(t.index), t.index.tombstones, t.index.delta_size,
                            t.follower.swaps if t.follower is not None else 0)
                for t in list(self.tasks.values()) if t.index is not None]


def snapshot_path(data_dir: Path, task: str) -> Path:
    return Path(data_dir) / "index" / f"{task}.snapshot"


def make_backend(settings: Settings, metrics: GatewayMetrics) -> InferenceBackend:
    """The configured inference backend (not started)."""
    if settings.backend == "triton":
        from service.inference.triton import TritonBackend  # pulls in grpc and aiohttp: only when asked

        t = settings.triton
        return TritonBackend(settings.repository, t.url, protocol=t.protocol, tasks=settings.tasks,
                             timeout_s=t.timeout_s, retries=t.retries, backoff_s=t.backoff_s,
                             load_models=t.load_models, resolve_interval_s=t.resolve_interval_s)
    from service.inference.embedded import EmbeddedBackend

    e = settings.embedded
    return EmbeddedBackend(settings.repository, settings.tasks, sessions_per_model=e.sessions_per_model,
                           threads_per_session=e.threads_per_session, max_batch=e.max_batch,
                           max_delay_ms=e.max_delay_ms, max_queue=e.max_queue,
                           on_batch=metrics.observe_batch, on_queue_depth=metrics.set_queue_depth)


async def rebuild_task_index(index: VectorIndex, store: GalleryStore, options: IndexSettings) -> RebuildReport:
    """Rebuild `index` from every stored item beside the live one, then swap (searches continue).
    Exact (Flat) below `flat_below` items, the configured ANN factory above."""
    count = await store.count()
    factory = "Flat" if count < options.flat_below else options.ann_factory
    return await rebuild_from_store(index, store, factory=factory)


async def load_snapshot_if_matching(path: Path, store: GalleryStore, info: ModelInfo) -> VectorIndex | None:
    """The snapshot at `path`, caught up with the store, when it fits the model and the store; else None."""
    try:
        sidecar = await asyncio.to_thread(read_sidecar, path)
    except SnapshotError:
        return None
    if sidecar.get("model_version") != model_version_of(info) or sidecar.get("dim") != info.embedding_dim:
        log.info("snapshot %s is for %s, serving %s: rebuilding", path, sidecar.get("model_version"),
                 model_version_of(info))
        return None
    if int(sidecar.get("offset", 0)) > await store.last_offset():
        log.warning("snapshot %s is newer than the store (a replaced store?): rebuilding", path)
        return None
    try:
        index = await asyncio.to_thread(VectorIndex.load, path, model_version=model_version_of(info))
        await sync_with_store(index, store)
    except (SnapshotError, ModelVersionError) as exc:
        log.warning("snapshot %s not used: %s", path, exc)
        return None
    if len(index) != await store.count():
        log.warning("snapshot %s disagrees with the store after catching up: rebuilding", path)
        return None
    return index


async def open_task_index(task: TaskRuntime, settings: Settings) -> None:
    """Give `task` a live index and searcher, from a snapshot or the store; or record why it has none."""
    path = snapshot_path(settings.data_dir, task.task)
    index = await load_snapshot_if_matching(path, task.store, task.info)
    if index is None:
        index = VectorIndex(task.info.embedding_dim, task.model_version)
        try:
            task.last_rebuild = await rebuild_task_index(index, task.store, settings.index)
        except ModelVersionError as exc:
            task.problem = (f"the gallery store holds items of another model version ({exc}); re-embed the "
                            "gallery (ufo worker) or re-enroll it for this model")
            log.error("task %s: %s", task.task, task.problem)
            return
    opts = settings.index
    task.index = index
    task.searcher = CoalescingSearcher(index, max_batch=opts.coalesce_max_batch,
                                       max_delay_s=opts.coalesce_max_delay_ms / 1000.0, omp_threads=1,
                                       name=f"search-{task.task}")
    log.info("task %s: index ready with %d items (%s)", task.task, len(index), index.factory)


async def start_follower(runtime: Runtime, task: TaskRuntime) -> None:
    """Follow `task`'s live index: change-log writes, announced snapshots, triggers, the recall canary."""
    from service.worker.follower import IndexFollower
    from service.worker.queue import snapshot_store

    if task.index is None or runtime.queue is None:
        return
    from service.api.upgrades import adopt_new_model, on_cut_over

    task.follower = IndexFollower(task.task, task.index, task.store, runtime.queue, runtime.settings.index,
                                  snapshots=snapshot_store(runtime.settings), on_recall=runtime.metrics.set_recall,
                                  on_swap=on_cut_over(runtime, task), on_new_model=adopt_new_model(runtime, task))
    await task.follower.start()


async def save_task_snapshot(task: TaskRuntime, settings: Settings) -> None:
    """Snapshot the task's index into data_dir (atomic; a failure is logged, never fatal)."""
    if task.index is None:
        return
    try:
        await asyncio.to_thread(task.index.save, snapshot_path(settings.data_dir, task.task))
    except OSError as exc:
        log.warning("task %s: could not save the index snapshot: %s", task.task, exc)


async def start_runtime(settings: Settings, metrics: GatewayMetrics) -> Runtime:
    """Start the backend, open each task's store and index. Raises on a bad repository or store URL."""
    configure_gpu(settings.index.gpu)  # FAISS GPU memory options, before any index goes onto a GPU
    keys = KeyRing(read_records(settings.api_keys, settings.api_keys_file),
                   enforced=settings.auth_required or bool(settings.api_keys or settings.api_keys_file))
    backend = make_backend(settings, metrics)
    await backend.start()
    executor = ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) + 2), thread_name_prefix="decode")
    runtime = Runtime(settings, backend, metrics, keys, executor)
    try:
        from service.api.upgrades import gate_at_start, maybe_auto_upgrade, serve_stored_version
        from service.worker.queue import open_job_queue

        runtime.queue = await open_job_queue(settings)
        for name in sorted(backend.models()):
            started = time.perf_counter()
            store = await open_store(settings.store_url, name)
            # the parity gate: a version that drifts on this backend never serves (an older one that passes does)
            info = await gate_at_start(runtime, name, await serve_stored_version(runtime, name, store))
            task = TaskRuntime(name, info, store)
            runtime.tasks[name] = task
            await open_task_index(task, settings)
            await start_follower(runtime, task)
            metrics.set_model(name, task.info.model_name, task.info.version, task.info.embedding_dim)
            log.info("task %s ready in %.2f s", name, time.perf_counter() - started)
        for task in runtime.tasks.values():
            await maybe_auto_upgrade(runtime, task)
    except BaseException:
        await stop_runtime(runtime, save=False)
        raise
    metrics.watch_indexes(runtime.index_samples)
    return runtime


async def stop_runtime(runtime: Runtime, *, save: bool = True) -> None:
    """Stop followers and the job queue, then searchers; snapshot the indexes, close stores and the backend."""
    for task in runtime.tasks.values():
        if task.follower is not None:
            await task.follower.close()
    if runtime.queue is not None:
        await runtime.queue.close()  # lets a running in-process job finish, drops queued ones
    for task in runtime.tasks.values():
        if task.searcher is not None:
            await task.searcher.close()
        if save:
            await save_task_snapshot(task, runtime.settings)
        await task.store.close()
    await runtime.backend.close()
    runtime.executor.shutdown(wait=False, cancel_futures=True)
