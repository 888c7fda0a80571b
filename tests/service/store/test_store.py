"""The store contract, run against every backend (SQLite file, real redis-server)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from service.store import Change, ChangeLogTrimmed, GalleryStore, Item, ModelVersionFenced, replay_changes, same_item
from service.store.records import MixedDimensions

pytestmark = pytest.mark.anyio

DIM = 8


def make_item(item_id: str, seed: int, *, version: str = "v1", **metadata: object) -> Item:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return Item(id=item_id, vector=vector, metadata=dict(metadata), model_version=version,
                image_ref=f"sha256:{seed:04d}")


async def snapshot_of(store: GalleryStore) -> dict[str, Item]:
    return {item.id: item async for item in store.iter_items(batch=7)}


def apply_change(state: dict[str, Item], change: Change) -> None:
    if change.op == "upsert":
        assert change.item is not None
        state[change.id] = change.item
    else:
        state.pop(change.id, None)


def assert_same_state(a: dict[str, Item], b: dict[str, Item]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert same_item(a[key], b[key]), key


async def test_upsert_get_count_delete(store: GalleryStore) -> None:
    assert isinstance(store, GalleryStore)  # the backend satisfies the protocol
    assert await store.count() == 0
    assert await store.get("a") is None
    offset = await store.upsert([make_item("a", 1, colour="red"), make_item("b", 2)])
    assert offset == 2 and await store.count() == 2
    got = await store.get("a")
    assert got is not None and same_item(got, make_item("a", 1, colour="red"), timestamps=False)
    assert got.vector.dtype == np.float32 and got.created_at == got.updated_at
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    assert await store.get("a") is None and await store.count() == 1


async def test_overwrite_keeps_created_at_and_replaces_the_record(store: GalleryStore) -> None:
    await store.upsert([make_item("a", 1, colour="red")])
    first = await store.get("a")
    await store.upsert([make_item("a", 9, colour="blue", version="v1")])
    second = await store.get("a")
    assert first is not None and second is not None
    assert second.created_at == first.created_at
    assert second.updated_at is not None and first.updated_at is not None
    assert second.updated_at >= first.updated_at
    assert same_item(second, make_item("a", 9, colour="blue"), timestamps=False)
    assert await store.count() == 1


async def test_offsets_increase_and_the_log_carries_each_write(store: GalleryStore) -> None:
    offsets = [await store.upsert([make_item(f"i{n}", n)]) for n in range(5)]
    assert await store.delete("i2")
    offsets.append(await store.last_offset())
    offsets.append(await store.upsert([make_item("i0", 100)]))
    assert offsets == sorted(set(offsets)) and offsets[0] >= 1
    changes = await store.changes_since(0, limit=100)
    assert [c.offset for c in changes] == offsets
    assert [c.op for c in changes] == ["upsert"] * 5 + ["delete", "upsert"]
    assert changes[5].item is None and changes[5].id == "i2"
    # the first write of i0 is logged as it was then, not as it is now
    assert changes[0].item is not None and same_item(changes[0].item, make_item("i0", 0), timestamps=False)
    # paging
    page = await store.changes_since(offsets[1], limit=2)
    assert [c.offset for c in page] == offsets[2:4]
    assert await store.changes_since(offsets[-1]) == []


async def test_replay_from_a_midpoint_reconstructs_the_state(store: GalleryStore) -> None:
    rng = random.Random(7)
    ids = [f"id{n}" for n in range(12)]
    mid_state: dict[str, Item] = {}
    mid_offset = 0
    for step in range(60):
        if rng.random() < 0.3:
            await store.delete(rng.choice(ids))
        else:
            batch = [make_item(rng.choice(ids), step * 10 + j, tag=str(step)) for j in range(rng.randint(1, 3))]
            await store.upsert(batch)
        if step == 30:
            mid_offset = await store.last_offset()
            mid_state = await snapshot_of(store)
    final = await snapshot_of(store)
    assert len(final) == await store.count()

    replayed = dict(mid_state)
    last = await replay_changes(store, mid_offset, lambda c: apply_change(replayed, c), batch=5)
    assert last == await store.last_offset()
    assert_same_state(replayed, final)

    from_scratch: dict[str, Item] = {}
    await replay_changes(store, 0, lambda c: apply_change(from_scratch, c), batch=4)
    assert_same_state(from_scratch, final)


async def test_replay_is_idempotent_over_a_state_that_already_has_later_writes(store: GalleryStore) -> None:
    await store.upsert([make_item("a", 1), make_item("b", 2)])
    offset = await store.last_offset()
    await store.upsert([make_item("a", 3)])
    await store.delete("b")
    await store.upsert([make_item("c", 4)])
    state = await snapshot_of(store)  # read after the offset: already includes the later writes
    await replay_changes(store, offset, lambda c: apply_change(state, c))
    assert_same_state(state, await snapshot_of(store))


async def test_trim_drops_old_changes_and_offsets_are_never_reused(store: GalleryStore) -> None:
    for n in range(6):
        await store.upsert([make_item(f"i{n}", n)])
    assert await store.trim_changes(4) == 3
    assert [c.offset for c in await store.changes_since(3)] == [4, 5, 6]
    with pytest.raises(ChangeLogTrimmed, match="after offset 2 are gone"):
        await store.changes_since(2)  # offset 3 was trimmed: a replay from 2 would silently skip it
    await store.delete("i5")
    await store.delete("i4")
    await store.trim_changes(100)
    await store.trim_changes(50)  # the mark never moves back
    assert await store.changes_since(8) == []  # trimming past the head marks only the head
    with pytest.raises(ChangeLogTrimmed):
        await store.changes_since(7)
    assert await store.last_offset() == 8
    assert await store.upsert([make_item("z", 1)]) == 9


async def test_iter_items_returns_every_record_once(store: GalleryStore) -> None:
    await store.upsert([make_item(f"k{n:03d}", n) for n in range(53)])
    await store.delete("k010")
    seen = [item.id async for item in store.iter_items(batch=10)]
    assert len(seen) == len(set(seen)) == 52 and "k010" not in seen


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Item("x", np.array([1.0, np.nan], np.float32)), "NaN"),
        (Item("x", np.ones((2, 2), np.float32)), "1-D"),
        (Item("", np.ones(2, np.float32)), "non-empty string"),
        (Item("x", np.ones(2, np.float32), metadata={"f": object()}), "JSON"),
        (Item("x", np.ones(2, np.float32), metadata={"f": float("inf")}), "JSON"),
    ],
)
async def test_invalid_items_are_refused_and_nothing_is_written(store: GalleryStore, bad: Item, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await store.upsert([make_item("ok", 1), bad])
    assert await store.count() == 0 and await store.last_offset() == 0


async def test_iter_pages_returns_every_record_once_as_matrices(store: GalleryStore) -> None:
    written = [make_item(f"p{n:03d}", n, colour=f"c{n % 3}") for n in range(45)] + [make_item("p999", 999)]
    await store.upsert(written)
    await store.delete("p010")
    expected = {item.id: item for item in written if item.id != "p010"}
    seen: list[str] = []
    async for page in store.iter_pages(batch=10):
        assert len(page) > 0 and page.vectors.shape == (len(page), DIM) and page.vectors.dtype == np.float32
        assert page.vectors.flags.writeable  # the rebuild normalises copies of it in place
        for row, item_id in enumerate(page.ids):
            item = expected[item_id]
            assert np.array_equal(page.vectors[row], item.vector)  # bit-exact, row i belongs to ids[i]
            assert page.metadata[row] == item.metadata and page.model_versions[row] == item.model_version
        seen += page.ids
    assert sorted(seen) == sorted(expected)  # each record once, the deleted one gone


async def test_iter_pages_on_an_empty_store_yields_nothing(store: GalleryStore) -> None:
    assert [page async for page in store.iter_pages()] == []


async def test_iter_pages_refuses_a_page_of_two_dimensions(store: GalleryStore) -> None:
    wide = Item("wide", np.ones(DIM * 2, np.float32), {}, "v2")
    await store.upsert([make_item("a", 1), make_item("b", 2)])
    await store.set_model_version("v2")  # a gallery damaged by hand: the fence moved without a rewrite
    await store.upsert([wide])
    with pytest.raises(MixedDimensions, match="different dimensions"):
        _ = [page async for page in store.iter_pages(batch=100)]


async def test_the_model_version_fence_refuses_records_of_another_model(store: GalleryStore) -> None:
    assert await store.model_version() is None
    first = await store.upsert([make_item("a", 1), make_item("b", 2)])  # the first write sets the fence
    assert await store.model_version() == "v1"
    with pytest.raises(ModelVersionFenced, match="holds records of model v1; refusing records of v2"):
        await store.upsert([make_item("c", 3, version="v2")])
    with pytest.raises(ValueError, match="several model versions"):
        await store.upsert([make_item("c", 3), make_item("d", 4, version="v2")])
    assert await store.last_offset() == first and await store.count() == 2 and await store.get("c") is None
    await store.set_model_version("v2")  # a model upgrade's cut-over moves it
    assert await store.model_version() == "v2"
    with pytest.raises(ModelVersionFenced):
        await store.upsert([make_item("a", 1)])  # the old model's records are refused from now on
    assert await store.upsert([make_item("a", 5, version="v2")]) == first + 1
