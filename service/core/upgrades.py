"""Model upgrades through the gateway: re-embed a task's gallery with another version of its model and cut
over (the steps are `service.worker.upgrade.upgrade_model`; this module wires them to the app).

- `POST /v1/tasks/{task}/model/upgrade` (admin) starts one in the background (`start_upgrade`); at start,
  a gateway whose gallery is of an older version than the repository's newest upgrades by itself
  (`auto_upgrade`, single-gateway mode only: replicas sharing a Redis store would race, so there the admin
  route starts it on one replica).
- Until the cut-over, queries and writes use the old model and the old index; the cut-over replaces the
  follower's `serving` (model, index, searcher) in one assignment, then `on_cut_over` moves the backend's
  default version and the metrics. A request that embedded with the old model and reaches the new index is
  refused by the index's model-version check and retried once by `gallery` with the new model: never a mix.
- Other replicas hear of the new model's snapshot (`IndexFollower.on_new_model`), load that version in
  their backend and adopt the snapshot (`adopt_new_model`); with Milvus their follower sees the task's alias
  name the new version's collection, and they adopt that collection the same way.
- The parity gate (`parity_gate`, `model_store.serving_parity`): a version goes live only after the backend
  that serves it embeds the manifest's parity images within `parity.serving_min_cosine` of the reference:
  at start (the gateway refuses to start), before an upgrade (`Invalid`, the old version keeps serving) and before
  a replica adopts another's upgrade (the follower retries and reports it).
- Re-embedding needs the enrolled images (`keep_images`, on by default). Items without one make the
  upgrade refuse to start (`Conflict` naming them) unless `drop_missing`, which deletes them at the cut-over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_store.serving_parity import ParityGateError, require_serving_parity
from service.core.errors import Conflict, CoreError, Invalid, NotFound, Unavailable
from service.core.kept_images import image_keeper
from service.core.state import Runtime, TaskRuntime, model_version_of
from service.inference import BackendUnavailable, ModelInfo, RepositoryError
from service.inference.repository import list_version_dirs
from service.store import GalleryStore, Item
from service.worker.changes import Embed, Reembedder
from service.worker.images import ImageKeeper
from service.worker.queue import snapshot_store
from service.worker.records import SnapshotInfo
from service.worker.upgrade import UpgradeError, upgrade_model
from service.worker.upgrade_status import UpgradeStatus

log = logging.getLogger(__name__)

RETIRE_AFTER_S = 30.0  # the old version stays loaded this long after a cut-over: requests in flight finish
_background: set[asyncio.Task[Any]] = set()  # strong references to the running upgrades and retirements


def version_number(model_version: str) -> int:
    """'ufo_face/2' → 2."""
    return int(model_version.rsplit("/", 1)[-1])


def repository_versions(runtime: Runtime, task: TaskRuntime) -> list[int]:
    """The version numbers of the task's model folder in the repository, highest first (no file is read)."""
    folder = Path(runtime.settings.repository) / task.info.model_name
    return [int(p.name) for p in list_version_dirs(folder)] if folder.is_dir() else []


def embed_with_version(runtime: Runtime, task: str) -> Embed:
    """The backend's embed for `task`, by model version string (what the upgrade steps call)."""

    async def embed(images: Sequence[bytes], model_version: str) -> np.ndarray:
        return await runtime.backend.embed_images(task, list(images), max_pixels=runtime.settings.limits.max_pixels,
                                                  executor=runtime.executor, version=version_number(model_version))

    return embed


async def stored_model_version(store: GalleryStore) -> str | None:
    """The gallery's model version: its fence, else (a store written before fences) its first record's;
    None when empty."""
    fence = await store.model_version()
    if fence is not None:
        return fence
    async for item in store.iter_items(1):
        return item.model_version
    return None


async def missing_images(store: GalleryStore, keeper: ImageKeeper, page: int = 1000) -> tuple[int, list[str]]:
    """(items, ids of items whose source image is not kept); the files checked a page per thread hop."""
    total, missing, items = 0, [], []

    def check(batch: list[Item]) -> list[str]:
        return [item.id for item in batch if item.image_ref is None or not keeper.has(item.image_ref)]

    async for item in store.iter_items(page):
        total += 1
        items.append(item)
        if len(items) == page:
            missing += await asyncio.to_thread(check, items)
            items = []
    missing += await asyncio.to_thread(check, items)
    return total, missing


def on_cut_over(runtime: Runtime, task: TaskRuntime) -> Callable[[Any], None]:
    """The follower's `on_swap` hook, right after its `serving` was replaced: the backend's default version
    and the metrics follow, and the old version is unloaded once requests in flight are done."""
    served = [task.info]

    def switch(_index: Any) -> None:
        old, new = served[0], task.info
        served[0] = new
        runtime.backend.serve_version(task.task, new.version)
        runtime.metrics.set_model(task.task, new.model_name, new.version, new.embedding_dim)
        log.info("task %s: now serving %s (was %s)", task.task, model_version_of(new), model_version_of(old))
        if old.version != new.version:
            spawn(retire(runtime, task.task, old.version))

    return switch


async def retire(runtime: Runtime, task: str, version: int) -> None:
    await asyncio.sleep(RETIRE_AFTER_S)
    await runtime.backend.unload_version(task, version)


def spawn(coro: Any) -> asyncio.Task[Any]:
    job = asyncio.create_task(coro)
    _background.add(job)
    job.add_done_callback(_background.discard)
    return job


async def load_version(runtime: Runtime, task: TaskRuntime, version: int | None) -> ModelInfo:
    """The version loaded in the backend beside the served one; `NotFound` when the repository lacks it."""
    try:
        return await runtime.backend.load_version(task.task, version)
    except RepositoryError as exc:
        raise NotFound(f"task {task.task!r}: {exc}", slug="unknown-model-version") from None
    except BackendUnavailable as exc:
        raise Unavailable(f"task {task.task!r}: the backend cannot load the new version: {exc}",
                          retry_after_s=30) from None


async def parity_gate(runtime: Runtime, task: str, info: ModelInfo) -> None:
    """Raise `ParityGateError` when the backend's embeddings of `info`'s parity images drift from the reference."""
    version_dir = Path(runtime.settings.repository) / info.model_name / str(info.version)

    async def embed(pixels: np.ndarray) -> np.ndarray:
        return await runtime.backend.embed(task, pixels, version=info.version)

    outcome = await require_serving_parity(embed, version_dir)
    log.info("task %s: %s", task, outcome.message)


async def gate_at_start(runtime: Runtime, task: str, info: ModelInfo) -> ModelInfo:
    """The version a gateway starts with, gated: when it drifts on this backend, the newest older version that
    passes serves instead (logged as an error; ParityGateError when none does). A backend not up yet (Triton
    starting later) defers the check to the next upgrade, with a warning."""
    try:
        await parity_gate(runtime, task, info)
        return info
    except BackendUnavailable as exc:
        log.warning("task %s: serving parity of %s not checked at start, the backend is unavailable: %s",
                    task, model_version_of(info), exc)
        return info
    except ParityGateError as exc:
        refused = exc
        log.error("task %s: %s", task, exc)
    folder = Path(runtime.settings.repository) / info.model_name
    for older in [int(p.name) for p in list_version_dirs(folder) if int(p.name) < info.version]:
        try:
            candidate = await runtime.backend.load_version(task, older)
            await parity_gate(runtime, task, candidate)
        except (ParityGateError, RepositoryError, BackendUnavailable) as exc:
            log.error("task %s: %s/%d cannot serve either: %s", task, info.model_name, older, exc)
            continue
        runtime.backend.serve_version(task, older)
        await runtime.backend.unload_version(task, info.version)
        log.error("task %s: serving %s/%d instead of %s", task, info.model_name, older, model_version_of(info))
        return runtime.backend.model(task)
    raise ParityGateError(f"{refused}; no older version of {info.model_name} passes either")


async def gate_upgrade(runtime: Runtime, task: TaskRuntime, info: ModelInfo) -> None:
    """`Invalid` (the served version stays) when the new version fails the parity gate; `Unavailable` when it
    cannot be run."""
    try:
        await parity_gate(runtime, task.task, info)
    except ParityGateError as exc:
        runtime.metrics.upgrades.labels(task.task, "refused").inc()
        log.error("task %s: %s", task.task, exc)
        raise Invalid(f"task {task.task!r}: {exc}; still serving {task.model_version}",
                      slug="parity-failed") from None
    except BackendUnavailable as exc:
        raise Unavailable(f"task {task.task!r}: cannot check the new version's serving parity: {exc}",
                          retry_after_s=30) from None


async def check_images(runtime: Runtime, task: TaskRuntime, drop_missing: bool) -> None:
    """`Conflict` when items cannot be re-embedded (no kept image) and the caller did not allow dropping them."""
    total, missing = await missing_images(task.store, image_keeper(runtime.settings, task.task))
    if not missing or drop_missing:
        return
    why = ("this gateway does not keep enrolled images (UFO_KEEP_IMAGES=false)" if not runtime.settings.keep_images
           else "they were enrolled as embeddings, or before images were kept")
    raise Conflict(f"task {task.task!r}: {len(missing)} of {total} items have no kept source image "
                   f"(e.g. {missing[:5]}): {why}. A model upgrade re-embeds the gallery from kept images: re-enroll "
                   "those items after the upgrade, or start it with drop_missing=true to remove them at the cut-over",
                   slug="images-not-kept")


async def start_upgrade(runtime: Runtime, task: TaskRuntime, version: int | None = None, *,
                        drop_missing: bool = False) -> UpgradeStatus:
    """Check, load the new version, and start the upgrade in the background; returns its status."""
    follower = task.live()
    if follower.upgrading:
        raise Conflict(f"task {task.task!r}: an upgrade to {follower.upgrade.model_version} is running",
                       slug="upgrade-running")
    info = await load_version(runtime, task, version)
    if info.version == task.info.version:
        raise Conflict(f"task {task.task!r} already serves {task.model_version}", slug="same-model-version")
    try:
        await gate_upgrade(runtime, task, info)
        await check_images(runtime, task, drop_missing)
        if follower.upgrading:  # another request started one while this one checked
            raise Conflict(f"task {task.task!r}: an upgrade is running", slug="upgrade-running")
    except CoreError:
        await release(runtime, task, info.version)
        raise
    # claims the task before the first await
    follower.upgrade = UpgradeStatus("running", model_version_of(info), task.model_version)
    spawn(run_upgrade(runtime, task, info, drop_missing))
    return follower.upgrade


async def release(runtime: Runtime, task: TaskRuntime, version: int) -> None:
    """Unload a version loaded for a refused upgrade, unless it serves or a running upgrade uses it."""
    upgrade = task.follower.upgrade if task.follower is not None and task.follower.upgrading else None
    if upgrade is None or version_number(upgrade.model_version) != version:
        await runtime.backend.unload_version(task.task, version)


async def run_upgrade(runtime: Runtime, task: TaskRuntime, info: ModelInfo, drop_missing: bool) -> None:
    """The background part; failures are recorded in the follower's upgrade status (and logged)."""
    follower = task.live()
    follower.upgrade = None  # `upgrade_model` sets its own status
    outcome = "done"
    try:
        await upgrade_model(follower, model_version_of(info), embed_with_version(runtime, task.task),
                            image_keeper(runtime.settings, task.task), snapshot_store(runtime.settings),
                            runtime.settings.index, write_lock=task.write_lock, drop_missing=drop_missing,
                            dim=info.embedding_dim, info=info)
    except UpgradeError as exc:
        outcome = "refused"
        log.error("task %s: upgrade to %s refused: %s", task.task, model_version_of(info), exc)
    except Exception:
        outcome = "failed"
        log.exception("task %s: upgrade to %s failed; still serving %s", task.task, model_version_of(info),
                      task.model_version)
    runtime.metrics.upgrades.labels(task.task, outcome).inc()
    if task.info.version != info.version:
        await release(runtime, task, info.version)


def adopt_new_model(runtime: Runtime, task: TaskRuntime) -> Callable[[SnapshotInfo], Any]:
    """The follower's `on_new_model` hook: another replica upgraded; load the version and adopt its snapshot
    (Milvus: the collection the alias names); an error propagates: the follower reports it in `model_error`
    and retries."""

    async def adopt(snapshot: SnapshotInfo) -> None:
        follower = task.live()
        name, _, version = snapshot.model_version.rpartition("/")
        if name != task.info.model_name or not version.isdigit():
            log.warning("task %s: ignoring a snapshot of model %s", task.task, snapshot.model_version)
            return
        info = await runtime.backend.load_version(task.task, int(version))  # raises: the follower retries later
        await parity_gate(runtime, task.task, info)  # a drifting version is never adopted (retried, reported)
        reembed = Reembedder(image_keeper(runtime.settings, task.task), embed_with_version(runtime, task.task),
                             snapshot.model_version)
        await follower.adopt_model(snapshot, reembed=reembed, model_info=info)
        runtime.metrics.upgrades.labels(task.task, "adopted").inc()

    return adopt


async def serve_stored_version(runtime: Runtime, name: str, store: GalleryStore) -> ModelInfo:
    """The model version to serve at start: the gallery's own when the repository still has it (a gallery is
    never served by another model than the one that embedded it), else the backend's choice."""
    info = runtime.backend.model(name)
    stored = await stored_model_version(store)
    if stored is None or stored == model_version_of(info):
        return info
    model, _, version = stored.rpartition("/")
    if model != info.model_name or not version.isdigit():
        return info
    try:
        await runtime.backend.load_version(name, int(version))
    except (RepositoryError, BackendUnavailable) as exc:
        log.warning("task %s: the gallery is of %s, which cannot be loaded (%s)", name, stored, exc)
        return info
    runtime.backend.serve_version(name, int(version))
    await runtime.backend.unload_version(name, info.version)
    log.info("task %s: serving %s, the gallery's version (the repository's newest is %s)", name, stored,
             model_version_of(info))
    return runtime.backend.model(name)


async def maybe_auto_upgrade(runtime: Runtime, task: TaskRuntime) -> None:
    """Start an upgrade to the repository's newest version when it is newer than the one serving."""
    if not runtime.settings.auto_upgrade or task.follower is None:  # (None: the index cannot serve)
        return
    if runtime.settings.store_url.startswith("redis"):
        log.info("task %s: auto_upgrade is off with a shared store (replicas would race): use the admin route",
                 task.task)
        return
    if max(repository_versions(runtime, task), default=0) <= task.info.version:
        return  # the common start: nothing newer (decided from folder names, no model file read twice)
    try:
        status = await start_upgrade(runtime, task, drop_missing=False)
        log.info("task %s: upgrading the gallery from %s to %s", task.task, task.model_version,
                 status.model_version)
    except CoreError as exc:
        log.warning("task %s: not upgrading to the repository's newest version: %s", task.task, exc.detail)
