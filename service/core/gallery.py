"""What the routes do, below HTTP: embed images, enroll, search, verify, delete — on one task.

Routes parse bodies into the plain values here (`ItemInput`, `SearchInput`) and answer; these functions hold
the rules, and refuse with `service.core.errors`: limits, embedding checks with messages that say
what was wrong, read-your-writes enrollment (the store write and the index write happen under the task's
write lock, and both are done before the response), `no_match` from the model's calibrated threshold.
"""

from __future__ import annotations

import json
import math
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core.errors import Conflict, Invalid, NotFound, Unavailable
from service.core.kept_images import keep_image
from service.core.state import Runtime, TaskRuntime, model_version_of
from service.index.errors import ModelVersionError
from service.index.search import Hit
from service.inference import ModelInfo
from service.store import Item, ModelVersionFenced
from service.worker.records import JobStatus

MAX_ID_LENGTH = 512
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # metadata integers: what every index engine can store and filter on


@dataclass(frozen=True, slots=True)
class ItemInput:
    """One item to enroll: an image or an embedding, and its metadata."""

    id: str
    image: bytes | None
    embedding: list[float] | None
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SearchInput:
    """One query: an image or an embedding, how many hits, an equality filter on metadata, a score floor."""

    image: bytes | None
    embedding: list[float] | None
    k: int
    filter: dict[str, Any] | None
    min_score: float | None


def check_text(text: str, where: str) -> None:
    """Text that is valid Unicode (JSON lets a client send lone surrogates, which nothing can store)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"{where} holds text that is not valid Unicode (a lone surrogate?)") from None


def check_id(item_id: str) -> str:
    """A usable item id: 1–512 printable characters."""
    if not item_id or len(item_id) > MAX_ID_LENGTH:
        raise Invalid(f"item ids are 1..{MAX_ID_LENGTH} characters, got {len(item_id)}")
    check_text(item_id, "id")
    if any(unicodedata.category(c) == "Cc" for c in item_id):  # the API's ID_PATTERN says the same
        raise Invalid(f"item id {item_id!r} holds control characters")
    return item_id


def wide_integer(value: Any) -> int | None:
    """The first integer in a JSON value that does not fit in 64 bits (signed), or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None if INT64_MIN <= value <= INT64_MAX else value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((found for child in children if (found := wide_integer(child)) is not None), None)


def check_metadata(metadata: dict[str, Any], max_bytes: int, where: str = "metadata") -> dict[str, Any]:
    """A JSON object of at most `max_bytes` encoded, finite numbers, 64-bit integers, valid Unicode."""
    try:
        text = json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        raise Invalid(f"{where}: numbers must be finite (no NaN or Infinity)") from None
    check_text(text, where)
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise Invalid(f"{where} is {size} bytes of JSON; the limit is {max_bytes}")
    if (wide := wide_integer(metadata)) is not None:  # JSON allows it; Milvus (and orjson) hold 64 bits
        raise Invalid(f"{where} holds the integer {wide}, which does not fit in 64 bits ({INT64_MIN}.."
                      f"{INT64_MAX}): send it as a string", slug="invalid-metadata")
    return metadata


def check_embedding(values: Sequence[float], dim: int, where: str) -> np.ndarray:
    """float32 [dim], finite, non-zero, L2-normalised — or `Invalid` naming what is wrong."""
    vector = np.asarray(values, dtype=np.float64)
    slug = "invalid-embedding"  # valid by the API schema, which cannot know the task's dimension
    if vector.ndim != 1 or len(vector) != dim:
        raise Invalid(f"{where} has {len(vector)} dimensions; this task's model produces {dim}", slug=slug)
    if not np.isfinite(vector).all():
        position = int(np.flatnonzero(~np.isfinite(vector))[0])
        raise Invalid(f"{where} holds NaN or Infinity at position {position}", slug=slug)
    norm = float(np.linalg.norm(vector))
    if norm == 0.0 or not math.isfinite(norm):
        raise Invalid(f"{where} has norm {norm}: it cannot be normalised", slug=slug)
    return (vector / norm).astype(np.float32)


async def embed(runtime: Runtime, task: TaskRuntime, images: Sequence[bytes],
                info: ModelInfo | None = None) -> np.ndarray:
    """Decode (off the event loop) and embed images → [n, dim] L2-normalised, with the model `info` (default:
    the one serving now; a request keeps the one it started with across a model cut-over)."""
    info = info or task.info
    runtime.metrics.embed_images.labels(task.task).observe(len(images))
    return await runtime.backend.embed_images(task.task, list(images), max_pixels=runtime.settings.limits.max_pixels,
                                              executor=runtime.executor, version=info.version)


async def vectors_for(runtime: Runtime, task: TaskRuntime, items: Sequence[ItemInput], info: ModelInfo) -> np.ndarray:
    """One vector per item: given embeddings checked, images embedded in one backend call."""
    dim = info.embedding_dim
    out = np.zeros((len(items), dim), dtype=np.float32)
    with_image = [i for i, item in enumerate(items) if item.image is not None]
    for i, item in enumerate(items):
        if item.embedding is not None:
            out[i] = check_embedding(item.embedding, dim, f"item {item.id!r}: embedding")
    if with_image:
        out[with_image] = await embed(runtime, task, [items[i].image for i in with_image], info)  # type: ignore[misc]
    return out


def check_upgradable(runtime: Runtime, task: TaskRuntime, items: Sequence[ItemInput]) -> None:
    """While a model upgrade runs, only items it can re-embed (an image, kept) may be written: `Conflict` otherwise."""
    upgrade = task.live().upgrade
    if upgrade is None or not upgrade.running:
        return
    target = upgrade.model_version
    if not runtime.settings.keep_images or any(item.image is None for item in items):
        raise Conflict(f"task {task.task!r} is being upgraded to {target}: until the cut-over, items can be "
                       "enrolled only as images the gateway keeps (the upgrade re-embeds them); retry later, or "
                       "send images", slug="upgrade-running", retry_after_s=30)


async def enroll(runtime: Runtime, task: TaskRuntime, items: Sequence[ItemInput]) -> tuple[list[str], str]:
    """Upsert items into the store and the index; searchable when this returns. Returns the ids and the model
    version that embedded them."""
    task.live()
    limits = runtime.settings.limits
    for item in items:
        check_id(item.id)
        check_metadata(item.metadata, limits.max_metadata_bytes, f"item {item.id!r}: metadata")
    check_upgradable(runtime, task, items)
    refs = [await keep_image(runtime.settings, task.task, item.image) if item.image is not None else None
            for item in items]
    for _ in range(2):  # a second round only when a model cut-over happened while embedding
        serving = task.serving()
        info = task.info
        xb = await vectors_for(runtime, task, items, info)
        async with task.write_lock:
            if task.serving() is not serving:
                continue
            records = [Item(item.id, xb[i], dict(item.metadata), task.model_version, refs[i])
                       for i, item in enumerate(items)]
            try:
                offset = await task.store.upsert(records)
            except ModelVersionFenced as exc:
                raise Unavailable(f"task {task.task!r}: the gallery moved to model {exc.fence} (upgraded through "
                                  f"another replica); this gateway still serves {task.model_version} and adopts "
                                  "the new model shortly: retry", retry_after_s=5) from None
            await task.live().sync_to(offset)  # from the change log, as every replica applies it
            return [item.id for item in items], task.model_version
    raise Unavailable(f"task {task.task!r}: the model changed twice during the request; retry", retry_after_s=1)


async def delete(task: TaskRuntime, item_id: str) -> None:
    """Delete from the store and the index (`NotFound` when absent); gone from results when this returns."""
    follower = task.live()
    async with task.write_lock:
        if not await task.store.delete(item_id):
            raise NotFound(f"task {task.task!r} has no item {item_id!r}", slug="unknown-item")
        await follower.sync_to(await task.store.last_offset())


async def get_item(task: TaskRuntime, item_id: str) -> Item:
    """The stored record, or `NotFound`."""
    item = await task.store.get(item_id)
    if item is None:
        raise NotFound(f"task {task.task!r} has no item {item_id!r}", slug="unknown-item")
    return item


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """Top-k hits, whether none reaches the calibrated threshold, and the model that answered."""

    hits: list[Hit]
    no_match: bool
    info: ModelInfo


async def search(runtime: Runtime, task: TaskRuntime, query: SearchInput) -> SearchOutcome:
    """Top-k hits for an image or an embedding, searched in the index of the model that embedded it."""
    task.live()
    if query.filter is not None:
        check_metadata(query.filter, runtime.settings.limits.max_metadata_bytes, "filter")
    for attempt in range(2):  # a second round only when a model cut-over happened while embedding
        serving = task.serving()  # the model and the index that answer this round, as one value
        info = task.info
        if query.embedding is not None:
            xq = check_embedding(query.embedding, info.embedding_dim, "embedding")[None, :]
        else:
            xq = await embed(runtime, task, [query.image], info)  # type: ignore[list-item]
        started = time.perf_counter()
        try:
            assert serving.searcher is not None
            result = await serving.searcher.search(xq, query.k, filter=query.filter, min_score=query.min_score,
                                                   model_version=model_version_of(info), index=task.serving().index)
        except ModelVersionError:
            if attempt or task.serving() is serving or query.embedding is not None:
                raise  # (a client's embedding is of the old model: the error tells it the model changed)
            continue
        break
    runtime.metrics.search_seconds.labels(task.task).observe(time.perf_counter() - started)
    task.live().observe_query(xq)  # a sample of live queries feeds the recall canary
    hits = result.hits[0]
    threshold = info.verification_threshold
    no_match = not hits if threshold is None else all(hit.score < threshold for hit in hits)
    return SearchOutcome(hits, no_match, info)


async def verify(runtime: Runtime, task: TaskRuntime, image_a: bytes,
                 image_b: bytes) -> tuple[float, bool, float, str]:
    """(cosine similarity, same identity, threshold, model version) at the model's calibrated threshold."""
    info = task.info
    threshold = info.verification_threshold
    if threshold is None:
        raise Conflict(f"model {model_version_of(info)} has no calibrated verification threshold in its "
                       "manifest; verify needs one", slug="no-threshold")
    xa, xb = await embed(runtime, task, [image_a, image_b], info)
    score = float(np.clip(np.dot(xa, xb), -1.0, 1.0))
    return score, score >= threshold, threshold, model_version_of(info)


async def rebuild(task: TaskRuntime) -> JobStatus:
    """Queue a background rebuild of the task's index (admin); joins the queued or running one. Searches keep
    being answered from the live index; the follower swaps the rebuilt snapshot in when it is announced
    (Milvus: the collection made again for today's size, and the alias moved to it)."""
    return await task.live().request_rebuild("request")
