"""SQLite-only properties: WAL + synchronous mode, durability across a crash, the URL factory."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from service.store import Item, SQLiteStore, open_store, same_item, sqlite_path

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[3]

# Writes items one batch at a time, prints each acknowledged offset, then dies without closing
# (os._exit: no clean shutdown, no checkpoint) in the middle of nothing in particular.
CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, os, sys
    import numpy as np
    from service.store import Item, SQLiteStore

    async def main(path):
        store = await SQLiteStore.open(path)
        for n in range(20):
            items = [Item(f"i{n}-{j}", np.full(4, n + j / 10, np.float32), {"n": n}, "v1") for j in range(3)]
            offset = await store.upsert(items)
            if n % 5 == 4:
                await store.delete(f"i{n}-0")
            print(offset, flush=True)
        os._exit(0)

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_wal_mode_and_synchronous_full(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "face.sqlite3")
    await store.upsert([Item("a", np.ones(4, np.float32))])
    await store.close()
    conn = sqlite3.connect(tmp_path / "face.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert store.synchronous == "FULL"
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "x.sqlite3", synchronous="OFF")  # type: ignore[arg-type]


async def test_everything_acknowledged_survives_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "person.sqlite3"
    run = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    acknowledged = [int(line) for line in run.stdout.split()]
    assert len(acknowledged) == 20

    store = await SQLiteStore.open(path)
    try:
        assert await store.last_offset() >= acknowledged[-1]
        assert await store.count() == 20 * 3 - 4
        item = await store.get("i19-2")
        assert item is not None and same_item(item, Item("i19-2", np.full(4, 19.2, np.float32), {"n": 19}, "v1"),
                                              timestamps=False)
        assert await store.get("i4-0") is None
    finally:
        await store.close()


async def test_reopen_keeps_records_and_the_log(tmp_path: Path) -> None:
    path = tmp_path / "vehicle.sqlite3"
    async with await SQLiteStore.open(path) as store:
        await store.upsert([Item("a", np.arange(4, dtype=np.float32), {"k": [1, "x"]}, "v2", "sha256:ab")])
        before = await store.get("a")
    async with await SQLiteStore.open(path) as store:
        after = await store.get("a")
        assert same_item(before, after)
        assert [c.op for c in await store.changes_since(0)] == ["upsert"]


async def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "p.sqlite3")
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.count()


async def test_open_store_from_url(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}", "product")
    try:
        assert isinstance(store, SQLiteStore) and store.path == sqlite_path(tmp_path, "product")
    finally:
        await store.close()
    with pytest.raises(ValueError, match="unsupported store URL"):
        await open_store("postgres://x", "face")
    with pytest.raises(ValueError, match="task name"):
        await open_store(f"sqlite:///{tmp_path}", "../etc")


def test_record_codec_round_trip() -> None:
    from service.store.records import decode_record, encode_record

    item = Item("a", np.array([0.5, -1.25], np.float32), {"x": json.loads('{"y": [1, 2]}')}, "v1", None, 1.0, 2.0)
    back = decode_record("a", encode_record(item), 1.0)
    assert same_item(item, back)
