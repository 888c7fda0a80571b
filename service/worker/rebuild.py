"""The rebuild job: store → FAISS index chosen by size → tuned operating point → versioned snapshot.

One function, `run_rebuild`, runs it the same way in `ufo worker` and in the gateway's background
thread. Steps:
1. read the store's change-log offset, then every item (the offset is read first, so the build holds
   at least everything up to it; replay after it is idempotent);
2. choose the factory by size (`choose_factory`: Flat below `flat_below`, `ann_factory` above,
   `compressed_factory` — IVF-PQ with exact re-ranking — above `compressed_above`) and build it beside
   anything live (FAISS trains on a sample; GPU when faiss sees one), the FAISS part in a thread reniced to
   the bottom (`build_beside`: it holds no GIL, so the searches beside it get the CPU first);
3. tune the operating point (nprobe / efSearch / re-ranking depth) to `recall_target` recall@10 with
   `service.index.tune.tune_search_params` on held-out queries against exact search;
4. save the snapshot atomically and add the job's fields (recall, durations) to its sidecar.
Announcing it is the queue's job (see `queue_redis` / `queue_local`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from service.config import IndexSettings
from service.index import OperatingPoint, VectorIndex, exact_knn, resolve_factory, tune_search_params
from service.index.build import build_main, configure_gpu
from service.index.errors import ModelVersionError
from service.index.exact import set_faiss_threads
from service.index.snapshot import save_snapshot
from service.index.vectors import normalize_rows
from service.store import open_store
from service.store.base import GalleryStore
from service.store.records import ItemPage, MixedDimensions

if TYPE_CHECKING:
    import faiss
from service.worker.fairness import run_niced
from service.worker.records import Job, SnapshotInfo
from service.worker.snapshots import SnapshotStore, annotate_sidecar

log = logging.getLogger(__name__)

RECALL_K = 10
BUILD_NICE = 19  # the FAISS part of a build, see `build_beside` (a `ufo worker` at nice 10 reaches the cap: 19)


class NothingToBuild(ValueError):
    """The gallery is empty and nothing says which dimension / model version an index would have."""


@dataclass(frozen=True, slots=True)
class Gallery:
    """Every stored item of a task, read at (at least) change-log `offset`."""

    ids: list[str]
    xb: np.ndarray
    metadata: list[dict[str, Any]]
    model_version: str
    offset: int


def pq_subquantizers(dim: int) -> int:
    """PQ sub-quantizers for `dim`: 4 dimensions each when that divides evenly, else one per dimension."""
    return dim // 4 if dim % 4 == 0 and dim >= 4 else dim


def fill_factory(factory: str, n: int, dim: int) -> str:
    """Resolve the placeholders of a factory string: {nlist} for n vectors, {pq} for dim."""
    return resolve_factory(factory, n).replace("{pq}", str(pq_subquantizers(dim)))


def choose_factory(n: int, dim: int, opts: IndexSettings) -> str:
    """Flat below `flat_below` items, `ann_factory` above, `compressed_factory` above `compressed_above`."""
    if n < opts.flat_below:
        return "Flat"
    if n >= opts.compressed_above:
        return fill_factory(opts.compressed_factory, n, dim)
    return fill_factory(opts.ann_factory, n, dim)


async def read_gallery(store: GalleryStore, model_version: str | None, *, dim: int | None = None,
                       batch: int = 10_000) -> Gallery:
    """Every item (vectors L2-normalised) with the offset read first. All items must share one model version
    (`model_version` when given): vectors of two models are never mixed in one index.
    Reads the store's bulk pages (`iter_pages`: one matrix per page, decoded in the store's thread) and copies
    each straight into one preallocated matrix: per-record Python objects held the GIL for ~0.4 s per 100k
    items beside the gateway's searches, and a whole-gallery concatenate would hold it for a 1 GB memcpy."""
    offset = await store.last_offset()
    expected = await store.count()
    ids: list[str] = []
    metadata: list[dict[str, Any]] = []
    xb: np.ndarray | None = None
    try:
        async for page in store.iter_pages(batch):
            model_version = _check_versions(page, model_version)
            xb = _place(xb, page.vectors, len(ids), expected)
            ids.extend(page.ids)
            metadata.extend(page.metadata)
    except MixedDimensions as exc:
        raise ModelVersionError(f"{exc}: records of two models; re-embed the gallery for one version first") from exc
    if xb is None and dim is None:
        raise NothingToBuild("the gallery is empty and its dimension is unknown: nothing to build yet")
    if model_version is None:
        raise NothingToBuild("the gallery is empty and no model version was given: nothing to build yet")
    xb = np.zeros((0, dim), np.float32) if xb is None else xb[: len(ids)]
    return Gallery(ids, xb, metadata, model_version, offset)


def _check_versions(page: ItemPage, model_version: str | None) -> str:
    """The page's one model version, which must be `model_version` when that is given."""
    wanted = page.model_versions[0] if model_version is None else model_version
    if page.model_versions.count(wanted) != len(page):  # one C loop
        row = next(i for i, v in enumerate(page.model_versions) if v != wanted)
        raise ModelVersionError(f"stored item {page.ids[row]!r} has model version {page.model_versions[row]!r}, the "
                                f"rebuild is for {wanted!r}: re-embed the gallery for one version first")
    return wanted


def _place(xb: np.ndarray | None, rows: np.ndarray, start: int, expected: int) -> np.ndarray:
    """Copy and normalise `rows` into xb[start:] (allocated for `expected` rows, grown when the gallery grew
    while we read it); returns xb."""
    if xb is None:
        xb = np.empty((max(expected, start + len(rows)), rows.shape[1]), dtype=np.float32)
    if rows.shape[1] != xb.shape[1]:
        raise MixedDimensions(f"pages of {xb.shape[1]} and {rows.shape[1]} dimensions")
    if start + len(rows) > len(xb):
        xb = np.concatenate([xb, np.empty((max(len(xb) // 4, len(rows)), xb.shape[1]), np.float32)])
    out = xb[start : start + len(rows)]
    out[:] = rows
    normalize_rows(out)
    return xb


def held_out_queries(main: faiss.Index, xb: np.ndarray, n: int, seed: int = 7) -> np.ndarray:
    """Queries near the gallery but not in it, like a new image of an enrolled identity: the normalised
    midpoint of a sampled item and its nearest other item (found with the index itself, cheaply).
    xb: the normalised vectors, row = label."""
    rows = np.random.default_rng(seed).choice(len(xb), size=min(n, len(xb)), replace=False)
    _, nn = main.search(np.ascontiguousarray(xb[rows]), 2)
    other = np.where(nn[:, 0] == rows, nn[:, 1], nn[:, 0])
    other = np.where(other < 0, rows, other)
    xq = xb[rows] + xb[other]
    return np.ascontiguousarray(xq / np.linalg.norm(xq, axis=1, keepdims=True), dtype=np.float32)


def tune(main: faiss.Index | None, xb: np.ndarray, opts: IndexSettings) -> OperatingPoint | None:
    """Tune `main` (applied to it) to `recall_target` recall@10 on held-out queries vs exact search over `xb`
    (the normalised build vectors); None when there is no main or too few vectors to hold k neighbours."""
    if main is None or len(xb) <= RECALL_K:
        return None
    xq = held_out_queries(main, xb, opts.tune_queries)
    _, gt = exact_knn(xq, xb, RECALL_K)
    return tune_search_params(main, xq, gt, k=RECALL_K, target_recall=opts.recall_target)


def build_main_tuned(xb: np.ndarray, factory: str, opts: IndexSettings,
                     threads: int | None = None) -> tuple[faiss.Index | None, OperatingPoint | None, float]:
    """The FAISS part of a build (blocking, GIL-free but for the glue between FAISS calls): the main index over
    labels 0..n-1 and its tuned operating point. Returns (main, point, FAISS build seconds).
    `threads`: FAISS OpenMP threads for this thread (1 inside a gateway so searches keep a core)."""
    if threads:
        set_faiss_threads(threads)
    t0 = time.perf_counter()
    main = build_main(xb, factory) if len(xb) else None
    faiss_seconds = time.perf_counter() - t0
    return main, tune(main, xb, opts), faiss_seconds


def assemble(gallery: Gallery, main: faiss.Index | None, point: OperatingPoint | None, factory: str) -> VectorIndex:
    """The VectorIndex over a main built from `gallery` (the Python part: ids, metadata, id → label)."""
    return VectorIndex.from_main(gallery.xb.shape[1], gallery.ids, main, gallery.metadata,
                                 model_version=gallery.model_version, factory=factory,
                                 search_params="" if point is None else point.params, offset=gallery.offset)


def build_tuned(gallery: Gallery, factory: str, opts: IndexSettings, *,
                threads: int | None = None) -> tuple[VectorIndex, OperatingPoint | None, float]:
    """Build and tune in the calling thread (blocking). Returns (index, operating point, FAISS build seconds)."""
    main, point, faiss_seconds = build_main_tuned(gallery.xb, factory, opts, threads)
    return assemble(gallery, main, point, factory), point, faiss_seconds


async def build_beside(gallery: Gallery, factory: str, opts: IndexSettings, *, threads: int | None = None,
                       nice: int = BUILD_NICE) -> tuple[VectorIndex, OperatingPoint | None, float]:
    """`build_tuned` for a process that also serves searches: the FAISS part (seconds of CPU, no GIL) in a thread
    reniced by `nice`, so under CPU contention the scheduler runs the search threads first; the Python part
    (which holds the GIL, where a reniced thread would make searches wait for it) at normal priority."""
    main, point, faiss_seconds = await run_niced(nice, build_main_tuned, gallery.xb, factory, opts, threads)
    return await asyncio.to_thread(assemble, gallery, main, point, factory), point, faiss_seconds


async def run_rebuild(job: Job, store: GalleryStore, snapshots: SnapshotStore, opts: IndexSettings, *,
                      threads: int | None = None) -> SnapshotInfo:
    """Run one rebuild job end to end and return the snapshot it wrote (not yet announced)."""
    t0 = time.perf_counter()
    latest = snapshots.read_latest(job.task)
    dim = latest.dim if latest is not None else None
    gallery = await read_gallery(store, job.model_version or (latest.model_version if latest else None), dim=dim)
    t_read = time.perf_counter() - t0
    factory = choose_factory(len(gallery.ids), gallery.xb.shape[1], opts)
    index, point, faiss_seconds = await build_beside(gallery, factory, opts, threads=threads)
    version = snapshots.new_version(gallery.offset, job.id)
    path = snapshots.data_path(job.task, version)
    sidecar = await asyncio.to_thread(save_snapshot, index, path)
    build_seconds = time.perf_counter() - t0
    recall = None if point is None else point.recall
    extra = {"task": job.task, "version": version, "job_id": job.id, "reason": job.reason, "recall": recall,
             "recall_k": RECALL_K, "recall_queries": "held-out neighbour midpoints vs exact search",
             "build_seconds": build_seconds, "faiss_seconds": faiss_seconds, "read_seconds": t_read}
    await asyncio.to_thread(annotate_sidecar, path, extra)
    info = SnapshotInfo(task=job.task, version=version, path=str(path), model_version=gallery.model_version,
                        dim=int(gallery.xb.shape[1]), count=len(gallery.ids), offset=gallery.offset,
                        factory=index.factory, search_params=index.search_params, recall=recall,
                        recall_k=RECALL_K, checksum=sidecar["checksum"]["value"],
                        built_at=index.built_at or time.time(),
                        build_seconds=build_seconds, faiss_seconds=faiss_seconds, job_id=job.id)
    log.info("rebuilt %s (%s): %d items at offset %d as %s%s, recall@%d %s; read %.2f s, FAISS %.2f s, total %.2f s",
             job.task, job.reason, info.count, info.offset, info.factory,
             f" [{info.search_params}]" if info.search_params else "", RECALL_K,
             "n/a" if recall is None else f"{recall:.4f}", t_read, faiss_seconds, build_seconds)
    return info


async def execute_job(job: Job, store_url: str, snapshots: SnapshotStore, opts: IndexSettings, *,
                      threads: int | None = None) -> SnapshotInfo:
    """`run_rebuild` on a store connection of its own (the worker process and the gateway's job thread
    each open one; SQLite's WAL lets it read while the gateway writes)."""
    configure_gpu(opts.gpu)  # this process's FAISS GPU options (a job child process starts with defaults)
    store = await open_store(store_url, job.task)
    try:
        return await run_rebuild(job, store, snapshots, opts, threads=threads)
    finally:
        await store.close()
