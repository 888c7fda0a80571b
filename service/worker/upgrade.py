"""Model upgrades: re-embed the gallery from its kept images into a new index beside the old one, then cut
over atomically. Until the cut-over, queries use the old model and the old index together; after it, the
new model and the new index; never a mix (`IndexFollower.serving` is one pair, replaced by one assignment).

Runs where the embedder is: in the gateway, as a background task (`upgrade_model`), with the inference
backend's embed for the new version passed in. Steps:
1. read the store's offset, then every item; embed its kept image with the new model (a cache by image
   sha256 — embeddings are a function of the image content — so no image is embedded twice);
2. build and tune the new index exactly like a rebuild job (`service.worker.rebuild.build_tuned`);
3. catch it up on the writes made meanwhile (old-model records re-embedded from their images);
4. under the caller's write lock (writes pause, searches continue): the last changes; rewrite the store's
   records as new-model records (so a restart or a rebuild job finds one model version); cut over;
5. FAISS: snapshot the new index and announce it: other replicas hear of a new model version
   (`on_new_model`) and adopt the snapshot once they can embed with it. Milvus: the new version's
   collection was filled beside the live one and the cut-over moved the task's alias to it in one call;
   other replicas' followers see the alias move and adopt that collection (`IndexFollower.adopt_model`).
Items without a kept image cannot be re-embedded: the upgrade refuses to start (`UpgradeError` names
them) unless `drop_missing`, which deletes them at the cut-over (their clients must re-enroll).
In distributed mode the write lock pauses this gateway only; other replicas are stopped by the store's
model-version fence, moved to the new model before the rewrite: their old-model writes are refused (503,
retry) until they adopt the new model's snapshot, and those made before the move are rewritten.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from service.config import IndexSettings
from service.index import OperatingPoint, VectorIndex
from service.index.snapshot import save_snapshot
from service.index.vectors import normalize_rows
from service.store.records import Item
from service.worker.changes import Embed, Reembedder, follow_log
from service.worker.follower import IndexFollower
from service.worker.images import ImageKeeper
from service.worker.rebuild import RECALL_K, Gallery, build_beside, choose_factory
from service.worker.records import SnapshotInfo, new_job_id
from service.worker.snapshots import SnapshotStore, annotate_sidecar
from service.worker.upgrade_status import UpgradeStatus

if TYPE_CHECKING:
    from service.index.engine import IndexEngine
    from service.inference import ModelInfo

log = logging.getLogger(__name__)


class UpgradeError(RuntimeError):
    """The gallery cannot be re-embedded (images not kept) or the upgrade is already running."""


class CachedEmbed:
    """An `Embed` that remembers vectors by image sha256 (one model version per instance)."""

    def __init__(self, embed: Embed):
        self._embed = embed
        self.cache: dict[bytes, np.ndarray] = {}
        self.embedded = 0

    async def __call__(self, images: list[bytes], model_version: str) -> np.ndarray:
        keys = [hashlib.sha256(data).digest() for data in images]
        todo: dict[bytes, bytes] = {}
        for key, data in zip(keys, images, strict=True):
            if key not in self.cache:
                todo.setdefault(key, data)
        if todo:
            xb = np.asarray(await self._embed(list(todo.values()), model_version), dtype=np.float32)
            self.cache.update(zip(todo, xb, strict=True))
            self.embedded += len(todo)
        return np.stack([self.cache[key] for key in keys])


@dataclass(frozen=True, slots=True)
class UpgradeReport:
    """What an upgrade did: items now served by `model_version`, images embedded, items dropped."""

    model_version: str
    count: int
    embedded: int
    dropped: list[str]
    offset: int
    seconds: float


async def reembed_gallery(follower: IndexFollower, reembed: Reembedder, *, batch: int = 16,
                          drop_missing: bool = False, dim: int | None = None) -> tuple[Gallery, list[str]]:
    """Every stored item as a vector of the new model, read at (at least) the returned offset. Small batches,
    one at a time: one model session re-embeds while the others answer queries (the batch size measured:
    docs/benchmarks.md, "Model upgrades")."""
    store = follower.store
    offset = await store.last_offset()
    ids: list[str] = []
    metadata: list[dict[str, Any]] = []
    vectors: list[np.ndarray] = []
    missing: list[str] = []
    page: list[Item] = []

    async def flush() -> None:
        for item, new in zip(page, await reembed.convert(page), strict=True):
            if new is None:
                missing.append(item.id)
            else:
                ids.append(new.id)
                metadata.append(new.metadata)
                vectors.append(new.vector)
        page.clear()
        if follower.upgrade is not None:
            follower.upgrade = follower.upgrade.but(embedded=len(ids), missing=len(missing))

    async for item in store.iter_items(1000):
        page.append(item)
        if len(page) == batch:
            await flush()
    await flush()
    if missing and not drop_missing:
        raise UpgradeError(f"{len(missing)} item(s) have no kept source image (e.g. {missing[:5]}): re-enroll them, "
                           "or upgrade with drop_missing=True to remove them from the gallery")
    if not vectors and dim is None:
        raise UpgradeError("the gallery is empty: pass the new model's dim (or just serve a new empty index)")
    xb = normalize_rows(np.stack(vectors).astype(np.float32)) if vectors else np.zeros((0, dim), np.float32)
    return Gallery(ids, xb, metadata, reembed.model_version, offset), missing


async def rewrite_store(follower: IndexFollower, reembed: Reembedder, dropped: list[str], *,
                        drop_missing: bool = False, batch: int = 500) -> list[tuple[int, int]]:
    """Rewrite every stored record as a record of the new model (vectors from the cache) and delete the
    dropped ones; returns the offset ranges these writes took, which the new index skips (it has them).
    Everything is converted before the first write: an item that cannot be (its image is gone) stops the
    upgrade with the store untouched, unless `drop_missing` (then it is deleted too)."""
    store = follower.store
    gone = set(dropped)
    pending = [item async for item in store.iter_items(1000)
               if item.model_version != reembed.model_version and item.id not in gone]
    converted: list[Item] = []
    for start in range(0, len(pending), batch):
        page = pending[start : start + batch]
        for item, new in zip(page, await reembed.convert(page), strict=True):
            if new is not None:
                converted.append(new)
            elif drop_missing:
                gone.add(item.id)
            else:
                raise UpgradeError(f"item {item.id!r} has no kept source image any more (written during the "
                                   "upgrade?): re-enroll it, or upgrade with drop_missing=True")
    ranges: list[tuple[int, int]] = []
    for start in range(0, len(converted), batch):
        page = converted[start : start + batch]
        last = await store.upsert(page)
        ranges.append((last - len(page) + 1, last))
    for item_id in sorted(gone):
        await store.delete(item_id)  # a real change: the new index applies it
    dropped[:] = sorted(gone)
    return ranges


async def fenced_rewrite(follower: IndexFollower, reembed: Reembedder, missing: list[str],
                         drop_missing: bool) -> list[tuple[int, int]]:
    """Move the store's model-version fence to the new model, then rewrite the records. From the move on, no
    replica still on the old model can write (its writes are refused until it adopts the new model), so
    the rewrite, which reads the records after the move, converts every old record there will ever be.
    On failure the fence goes back: nothing was written yet (`rewrite_store` converts before writing)."""
    store = follower.store
    old = await store.model_version()
    await store.set_model_version(reembed.model_version)
    try:
        return await rewrite_store(follower, reembed, missing, drop_missing=drop_missing)
    except BaseException:
        await store.set_model_version(old or follower.model_version)
        raise


def in_ranges(ranges: list[tuple[int, int]]) -> Any:
    """A predicate: is an offset inside one of the sorted, disjoint ranges?"""
    starts = [a for a, _ in ranges]

    def inside(offset: int) -> bool:
        i = bisect.bisect_right(starts, offset) - 1
        return i >= 0 and ranges[i][0] <= offset <= ranges[i][1]

    return inside


async def upgrade_model(follower: IndexFollower, model_version: str, embed: Embed, images: ImageKeeper,
                        snapshots: SnapshotStore, opts: IndexSettings, *, write_lock: asyncio.Lock | None = None,
                        drop_missing: bool = False, dim: int | None = None, info: ModelInfo | None = None
                        ) -> UpgradeReport:
    """Re-embed `follower`'s gallery with `model_version` and cut over (see the module docstring).
    `write_lock`: the lock the app's write path holds around store writes (pauses them for the cut-over);
    `dim`: the new model's dimension, needed only when the gallery is empty; `info`: the backend's
    description of the new version, served with the new index."""
    if follower.upgrading:
        raise UpgradeError(f"{follower.task}: an upgrade to {follower.upgrade.model_version} is running")
    if model_version == follower.model_version:
        raise UpgradeError(f"{follower.task} already serves {model_version}")
    t0 = time.perf_counter()
    follower.upgrade = UpgradeStatus("running", model_version, follower.model_version, started_at=time.time())
    cached = CachedEmbed(embed)
    reembed = Reembedder(images, cached, model_version)
    try:
        async with follower.swap_lock:  # no snapshot of the old model is adopted meanwhile
            gallery, missing = await reembed_gallery(follower, reembed, drop_missing=drop_missing, dim=dim)
            index, point = await build_new_index(follower, gallery, opts)
            await follow_log(index, follower.store, reembed=reembed)  # writes made while it was built
            async with write_lock or asyncio.Lock():
                await follow_log(index, follower.store, reembed=reembed)
                ranges = await fenced_rewrite(follower, reembed, missing, drop_missing)
                await follower.cut_over(index, reembed=reembed, skip=in_ranges(ranges), info=info)
        cached.cache.clear()  # served now; later old-model records are few
        if isinstance(index, VectorIndex):  # other FAISS replicas adopt the snapshot; Milvus ones share the alias
            snapshot = await save_upgrade_snapshot(follower, index, snapshots, point.recall if point else None,
                                                   time.perf_counter() - t0)
            follower.snapshot = snapshot
            await follower.queue.announce(snapshot)
    except BaseException as exc:
        follower.upgrade = follower.upgrade.but(state="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    report = UpgradeReport(model_version, len(index), cached.embedded, missing, index.offset,
                           time.perf_counter() - t0)
    follower.upgrade = follower.upgrade.but(state="done", finished_at=time.time(), seconds=report.seconds,
                                            embedded=cached.embedded, dropped=len(missing))
    log.info("%s: upgraded to %s: %d items, %d images embedded, %d dropped, %.1f s", follower.task, model_version,
             report.count, report.embedded, len(missing), report.seconds)
    return report


async def build_new_index(follower: IndexFollower, gallery: Gallery, opts: IndexSettings
                          ) -> tuple[IndexEngine, OperatingPoint | None]:
    """The new version's index beside the live one: FAISS built and tuned like a rebuild job; with Milvus a
    new collection in the follower's catalog, filled and tuned (promoted at the cut-over)."""
    if follower.rebuilds or follower.catalog is None:
        factory = choose_factory(len(gallery.ids), gallery.xb.shape[1], opts)
        index, point, _ = await build_beside(gallery, factory, opts, threads=1)  # FAISS part reniced
        return index, point
    catalog, task = follower.catalog, follower.task
    index = await asyncio.to_thread(catalog.create, task, gallery.model_version, gallery.xb.shape[1],
                                    n_expected=len(gallery.ids))  # type: ignore[call-arg]
    for start in range(0, len(gallery.ids), 1000):
        end = start + 1000
        await asyncio.to_thread(index.upsert, gallery.ids[start:end], gallery.xb[start:end],
                                gallery.metadata[start:end], model_version=gallery.model_version)
    index.offset = gallery.offset
    return index, await asyncio.to_thread(catalog.tune, index)  # type: ignore[attr-defined]


async def save_upgrade_snapshot(follower: IndexFollower, index: Any, snapshots: SnapshotStore,
                                recall: float | None, seconds: float) -> SnapshotInfo:
    """Snapshot the new model's index as a version of its own, like a rebuild job would."""
    job_id = f"upgrade-{new_job_id()}"
    version = snapshots.new_version(index.offset, job_id)
    path = snapshots.data_path(follower.task, version)
    sidecar = await asyncio.to_thread(save_snapshot, index, path)
    await asyncio.to_thread(annotate_sidecar, path, {"task": follower.task, "version": version, "job_id": job_id,
                                                     "reason": "model-upgrade", "recall": recall, "recall_k": RECALL_K,
                                                     "build_seconds": seconds})
    return SnapshotInfo(task=follower.task, version=version, path=str(path), model_version=index.model_version,
                        dim=index.dim, count=sidecar["count"], offset=sidecar["offset"], factory=index.factory,
                        search_params=index.search_params, recall=recall, recall_k=RECALL_K,
                        checksum=sidecar["checksum"]["value"], built_at=index.built_at or time.time(),
                        build_seconds=seconds, faiss_seconds=0.0, job_id=job_id)
