"""Model upgrades: re-embed from kept images beside the old index, atomic cut-over, never a mix."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pytest

from service.config import IndexSettings
from service.index import VectorIndex
from service.store import Item, SQLiteStore
from service.worker.follower import IndexFollower
from service.worker.images import ImageCorrupted, ImageKeeper
from service.worker.queue_local import LocalJobQueue
from service.worker.snapshots import SnapshotStore
from service.worker.upgrade import UpgradeError, upgrade_model

pytestmark = pytest.mark.anyio

OLD, NEW = "m/1", "m/2"
DIMS = {OLD: 16, NEW: 24}
_PROJ = {v: np.random.default_rng(i).standard_normal((32, d)).astype(np.float32)
         for i, (v, d) in enumerate(DIMS.items())}


def embed_one(image: bytes, model_version: str) -> np.ndarray:
    """A deterministic stand-in for a model: the image's content → a unit vector of that model's dimension."""
    seed = int.from_bytes(hashlib.sha256(image).digest()[:8], "little")
    x = np.random.default_rng(seed).standard_normal(32).astype(np.float32) @ _PROJ[model_version]
    return x / np.linalg.norm(x)


class Model:
    """The inference backend's embed for both versions, counting calls; slow enough to interleave writes."""

    def __init__(self) -> None:
        self.images = 0

    async def __call__(self, images: list[bytes], model_version: str) -> np.ndarray:
        await asyncio.sleep(0.002)
        self.images += len(images)
        return np.stack([embed_one(image, model_version) for image in images])


def image_of(item_id: str) -> bytes:
    return f"pixels of {item_id}".encode() * 8


async def enroll(store: SQLiteStore, keeper: ImageKeeper, ids: list[str], version: str = OLD) -> int:
    items = [Item(i, embed_one(image_of(i), version), {"id": i}, version, keeper.put(image_of(i))) for i in ids]
    return await store.upsert(items)


def test_image_keeper_is_content_addressed(tmp_path: Path) -> None:
    keeper = ImageKeeper(tmp_path, "face")
    ref = keeper.put(b"abc")
    assert ref == hashlib.sha256(b"abc").hexdigest() and keeper.put(b"abc") == ref
    assert keeper.path(ref) == tmp_path / "face" / ref[:2] / ref and keeper.get(ref) == b"abc" and keeper.has(ref)
    assert keeper.get("0" * 64) is None
    keeper.path(ref).write_bytes(b"abd")
    with pytest.raises(ImageCorrupted):
        keeper.get(ref)
    with pytest.raises(ValueError):
        keeper.path("../../etc/passwd")


@pytest.fixture
async def setup(sqlite_store: SQLiteStore, tmp_path: Path):
    opts = IndexSettings(flat_below=10_000, canary_interval_s=0.0, poll_interval_s=0.1)
    snapshots = SnapshotStore(tmp_path / "snapshots")
    queue = LocalJobQueue(f"sqlite:///{tmp_path}/store", snapshots, opts)
    keeper = ImageKeeper(tmp_path / "images", "face")
    await enroll(sqlite_store, keeper, [f"i{k}" for k in range(300)])
    follower = await IndexFollower.open("face", sqlite_store, queue, opts, model_version=OLD, dim=DIMS[OLD])
    yield sqlite_store, follower, keeper, snapshots, opts
    await follower.close()
    await queue.close()


async def test_upgrade_cuts_over_atomically_while_serving(setup) -> None:  # noqa: ANN001
    store, follower, keeper, snapshots, opts = setup
    model, write_lock, stop = Model(), asyncio.Lock(), asyncio.Event()
    swapped: list[int] = []
    follower.on_swap = lambda index: swapped.append(index.dim)
    mixes, checked = [], [0]

    async def searcher() -> None:  # the app's query path: one `serving` pair per query
        while not stop.is_set():
            serving = follower.serving
            item_id = f"i{checked[0] % 300}"
            xq = (await model([image_of(item_id)], serving.model_version))
            try:
                hit = serving.index.search(xq, 1, model_version=serving.model_version).hits[0][0]
                assert hit.id == item_id
            except Exception as exc:  # a mix would raise ModelVersionError or miss the item
                mixes.append(exc)
            checked[0] += 1

    async def writer() -> None:  # enrollments with the old model keep coming during the re-embed
        for k in range(20):
            async with write_lock:
                offset = await enroll(store, keeper, [f"w{k}"], follower.model_version)
            await follower.sync_to(offset)
            await asyncio.sleep(0.005)

    # another replica over the same store, still on the old model: told of the new one, it adopts it
    replica = IndexFollower("face", VectorIndex.build(  # its own copy of the old index
        [f"i{k}" for k in range(300)], np.stack([embed_one(image_of(f"i{k}"), OLD) for k in range(300)]),
        [{"id": f"i{k}"} for k in range(300)], model_version=OLD, offset=300), store, follower.queue, opts)
    replica.on_new_model = lambda info: replica.adopt_model(info)
    await replica.start()

    tasks = [asyncio.create_task(searcher()), asyncio.create_task(writer())]
    report = await upgrade_model(follower, NEW, model, keeper, snapshots, opts, write_lock=write_lock)
    await tasks[1]
    stop.set()
    await tasks[0]

    assert mixes == [] and checked[0] > 10
    assert follower.model_version == NEW and follower.index.dim == DIMS[NEW] and swapped == [DIMS[NEW]]
    assert report.count <= len(follower.index) == await store.count() == 320 and report.dropped == []
    assert model.images < 320 + 20 + 300  # the cache: the rewrite did not embed the gallery a second time
    async for item in store.iter_items():  # the store now holds one model version, the new one's vectors
        assert item.model_version == NEW
        np.testing.assert_allclose(item.vector, embed_one(image_of(item.id), NEW), rtol=1e-5, atol=1e-6)
    for item_id in ("i0", "i299", "w19"):
        xq = embed_one(image_of(item_id), NEW)
        assert follower.index.search(xq, 1, model_version=NEW).hits[0][0].id == item_id
    assert follower.upgrade.state == "done" and follower.snapshot.model_version == NEW
    latest = await follower.queue.latest_snapshot("face")
    assert latest.model_version == NEW and latest.count <= 320  # taken right after the cut-over; the log has the rest
    xq = np.stack([embed_one(image_of(f"i{k}"), NEW) for k in range(10)])
    for _ in range(200):  # the old-model replica heard of the new model and cut over too
        if replica.model_version == NEW:
            break
        await asyncio.sleep(0.05)
    await replica.sync_to()
    assert replica.model_version == NEW and replica.snapshot.version == latest.version and len(replica.index) == 320
    assert replica.index.search(xq, 5).I.tolist() == follower.index.search(xq, 5).I.tolist()
    await replica.close()
    # a restarted gateway serving the new model starts from that snapshot
    restarted = await IndexFollower.open("face", store, follower.queue, opts, model_version=NEW, dim=DIMS[NEW])
    assert restarted.snapshot.version == latest.version and len(restarted.index) == 320
    assert restarted.index.search(xq, 5).I.tolist() == follower.index.search(xq, 5).I.tolist()


async def test_upgrade_refuses_items_without_kept_images(setup) -> None:  # noqa: ANN001
    store, follower, keeper, snapshots, opts = setup
    await store.upsert([Item("no-image", embed_one(b"x", OLD), {}, OLD, None)])
    await follower.sync_to()
    with pytest.raises(UpgradeError, match="no kept source image"):
        await upgrade_model(follower, NEW, Model(), keeper, snapshots, opts)
    assert follower.model_version == OLD and len(follower.index) == 301 and follower.upgrade.state == "failed"
    report = await upgrade_model(follower, NEW, Model(), keeper, snapshots, opts, drop_missing=True)
    assert report.dropped == ["no-image"] and await store.get("no-image") is None
    assert len(follower.index) == await store.count() == 300 and "no-image" not in follower.index
