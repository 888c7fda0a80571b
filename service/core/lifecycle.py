"""Start and stop what the app holds while it runs (`service.core.state`): the inference backend, the
job queue, the index engine's catalog and, per task, its store and `IndexFollower`.

Built in the app's lifespan (`start_runtime`), never at import; routes reach it through `service.api.deps`. Each task
serves the model version its gallery was embedded with (the store's fence) when the repository has it, and
is upgraded to a newer one in the background (`service.core.upgrades`). Its index is opened and caught up by
`IndexFollower.open`, the same path the tests run: FAISS from the newest usable snapshot (the gateway's own,
written at shutdown, or the latest announced by a rebuild job) or built from the store; Milvus
(`UFO_INDEX__ENGINE=milvus`) from the collection the task's alias names, the gateway keeping no index state
of its own. A gallery of a version the repository lacks leaves that task's index unavailable (`Unavailable`,
with the reason, /readyz false): vectors of two models are never mixed in one index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from service.config import Settings
from service.core.state import Runtime, TaskRuntime, model_version_of
from service.core.upgrades import (
    adopt_new_model,
    gate_at_start,
    maybe_auto_upgrade,
    on_cut_over,
    serve_stored_version,
)
from service.index import CoalescingSearcher
from service.index.build import configure_gpu
from service.index.engine import open_catalog
from service.index.errors import IndexUnavailable, ModelVersionError
from service.index.snapshot import save_snapshot
from service.inference import InferenceBackend, ModelInfo
from service.metrics import GatewayMetrics
from service.store import GalleryStore, open_store
from service.worker.follower import IndexFollower
from service.worker.queue import open_job_queue, snapshot_store

__all__ = ["Runtime", "TaskRuntime", "model_version_of", "start_runtime", "stop_runtime"]
log = logging.getLogger(__name__)


def snapshot_path(data_dir: Path, task: str) -> Path:
    """The gateway's own FAISS snapshot of a task, written at shutdown."""
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


async def open_task(runtime: Runtime, name: str, store: GalleryStore, info: ModelInfo) -> TaskRuntime:
    """The task with its follower over its live index, opened and caught up; or with the reason it has none."""
    settings, opts = runtime.settings, runtime.settings.index
    assert runtime.queue is not None
    task = TaskRuntime(name, store, info)
    searcher = CoalescingSearcher(max_batch=opts.coalesce_max_batch, max_delay_s=opts.coalesce_max_delay_ms / 1000.0,
                                  omp_threads=1, name=f"search-{name}")
    try:
        task.follower = await IndexFollower.open(
            name, store, runtime.queue, opts, model_version=model_version_of(info), dim=info.embedding_dim,
            local_snapshot=snapshot_path(settings.data_dir, name), snapshots=snapshot_store(settings),
            catalog=runtime.catalog, searcher=searcher, info=info, on_recall=runtime.metrics.set_recall,
            on_swap=on_cut_over(runtime, task), on_new_model=adopt_new_model(runtime, task))
    except ModelVersionError as exc:
        await searcher.close()
        task.problem = (f"the gallery store holds items of another model version ({exc}); re-embed the "
                        "gallery (ufo worker) or re-enroll it for this model")
        log.error("task %s: %s", name, task.problem)
        return task
    await task.follower.start()
    index = task.follower.index
    log.info("task %s: index ready with %d items (%s)", name, len(index), index.factory)
    return task


async def save_task_snapshot(task: TaskRuntime, settings: Settings) -> None:
    """Snapshot the task's FAISS index into data_dir (atomic; a failure is logged, never fatal). Milvus
    indexes persist in Milvus (their offset is checkpointed when the catalog closes)."""
    if task.follower is None or not task.follower.rebuilds:
        return
    try:
        await asyncio.to_thread(save_snapshot, task.follower.index, snapshot_path(settings.data_dir, task.task))
    except OSError as exc:
        log.warning("task %s: could not save the index snapshot: %s", task.task, exc)


def open_engine_catalog(settings: Settings):  # noqa: ANN201 - EngineCatalog | None
    """The Milvus catalog when the engine setting names it; None for FAISS (indexes in this process)."""
    if settings.index.engine == "faiss":
        return None
    opts = settings.index
    return open_catalog(opts.engine, milvus=settings.milvus, flat_below=opts.flat_below,
                        recall_target=opts.recall_target, exact_scan_max_items=opts.exact_scan_max_items)


@contextlib.asynccontextmanager
async def opening_turn(settings: Settings) -> AsyncIterator[None]:
    """With Milvus, the processes sharing a data folder (`ufo serve --workers N`) open a task one at a time
    (an flock on data_dir/milvus-open.lock): at a first start the first creates, fills and promotes the
    task's collection, the others find the alias and reopen it, rather than each creating (and dropping)
    the same collection. FAISS: no turn (one process per data folder)."""
    if settings.index.engine != "milvus":
        yield
        return
    import fcntl

    path = Path(settings.data_dir) / "milvus-open.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def start_runtime(settings: Settings, metrics: GatewayMetrics) -> Runtime:
    """Start the backend, open each task's store and index. Raises on a bad repository or store URL."""
    configure_gpu(settings.index.gpu)  # FAISS GPU memory options, before any index goes onto a GPU
    backend = make_backend(settings, metrics)
    await backend.start()
    executor = ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) + 2), thread_name_prefix="decode")
    runtime = Runtime(settings, backend, metrics, executor)
    try:
        runtime.catalog = await asyncio.to_thread(open_engine_catalog, settings)
        runtime.queue = await open_job_queue(settings)
        for name in sorted(backend.models()):
            started = time.perf_counter()
            store = await open_store(settings.store_url, name)
            # the parity gate: a version that drifts on this backend never serves (an older one that passes does)
            info = await gate_at_start(runtime, name, await serve_stored_version(runtime, name, store))
            async with opening_turn(settings):
                task = runtime.tasks[name] = await open_task(runtime, name, store, info)
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
    """Stop followers and the job queue, then searchers; snapshot the indexes, close stores, the catalog and
    the backend."""
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
    if runtime.catalog is not None:
        try:  # offsets not checkpointed (Milvus down) are caught up from the store's log at the next start
            await asyncio.to_thread(runtime.catalog.close)
        except IndexUnavailable as exc:
            log.warning("could not checkpoint the index offsets: %s", exc)
    await runtime.backend.close()
    runtime.executor.shutdown(wait=False, cancel_futures=True)
