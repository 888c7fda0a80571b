"""SQLite gallery store: one database file per task, WAL mode, change log in the same file.

Why these settings:
- WAL lets readers (searches' metadata look-ups, a rebuild's full scan) run while one writer
  commits, without blocking each other.
- `synchronous=FULL` (the default here): in WAL mode every COMMIT then fsyncs the WAL, so a write
  we acknowledged survives a power loss or an OS crash. NORMAL would survive only an application
  crash and may lose the last commits on power loss. Batch upserts amortise the fsync.
- The item row and its change-log row are written in one transaction, so the log can never
  disagree with the table.
- sqlite3 calls block; every call runs in `asyncio.to_thread`. One writer connection behind a
  lock (SQLite allows one writer anyway) and a small pool of reader connections.
- Errors are typed (`store_error`): disk full or the size cap (`max_pages`) → `StoreFull` (507), locked,
  read-only or I/O errors → `StoreUnavailable` (503). A failed write transaction is rolled back whole, so
  the file never holds half a write.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from service.store.base import (
    ModelVersionFenced,
    StoreError,
    batch_model_version,
    check_not_trimmed,
)
from service.store.records import (
    Change,
    Item,
    ItemPage,
    check_limit,
    check_offset,
    decode_metadata,
    decode_vector,
    encode_metadata,
    encode_vector,
    stack_vectors,
    validate_item,
)
from service.store.sqlite_errors import store_error

log = logging.getLogger(__name__)

Synchronous = Literal["NORMAL", "FULL"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    vector BLOB NOT NULL,
    metadata TEXT NOT NULL,
    model_version TEXT NOT NULL,
    image_ref TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- the offset; AUTOINCREMENT: never reused after a trim
    op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    id TEXT NOT NULL,
    vector BLOB,
    metadata TEXT,
    model_version TEXT,
    image_ref TEXT,
    created_at REAL,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""

_LAST_SEQ = "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0)"

_ITEM_COLUMNS = "id, vector, metadata, model_version, image_ref, created_at, updated_at"

_UPSERT_ITEM = f"""
INSERT INTO items ({_ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET vector = excluded.vector, metadata = excluded.metadata,
    model_version = excluded.model_version, image_ref = excluded.image_ref,
    updated_at = excluded.updated_at
RETURNING created_at
"""

_LOG_UPSERT = f"""
INSERT INTO changes (op, {_ITEM_COLUMNS}) VALUES ('upsert', ?, ?, ?, ?, ?, ?, ?) RETURNING seq
"""


def _row_to_item(row: Sequence[Any]) -> Item:
    """(id, vector, metadata, model_version, image_ref, created_at, updated_at) → Item."""
    item_id, blob, metadata, model_version, image_ref, created_at, updated_at = row
    return Item(
        id=item_id,
        vector=decode_vector(blob),
        metadata=decode_metadata(metadata),
        model_version=model_version,
        image_ref=image_ref,
        created_at=created_at,
        updated_at=updated_at,
    )


class SQLiteStore:
    """`GalleryStore` on one SQLite file. Open with `await SQLiteStore.open(path)`."""

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "FULL", busy_timeout_ms: int = 5000,
                 max_pages: int | None = None):
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        if max_pages is not None and max_pages < 1:
            raise ValueError(f"max_pages must be a positive page count, got {max_pages}")
        self.max_pages = max_pages  # a size cap (pages of the file): writes past it fail as a full disk would
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, **options: Any) -> SQLiteStore:
        """Create the file and schema if needed and return an open store."""
        store = cls(path, **options)
        try:
            await asyncio.to_thread(store._open_sync)
        except sqlite3.Error as exc:
            raise store_error(exc, store.path) from exc
        return store

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: to_thread hands calls to any pool thread; our locks and the
        # reader pool guarantee one thread uses a connection at a time.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        if self.max_pages is not None:
            conn.execute(f"PRAGMA max_page_count = {int(self.max_pages)}")
        return conn

    def _open_sync(self) -> None:
        t0 = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"{self.path}: could not switch to WAL mode (got {mode!r})")
        conn.executescript(_SCHEMA)
        self._writer = conn
        log.info("opened sqlite store %s (WAL, synchronous=%s) in %.1f ms",
                 self.path, self.synchronous, 1e3 * (time.perf_counter() - t0))

    def _require_open(self) -> None:
        if self._closed or self._writer is None:
            raise StoreError(f"{self.path}: store is closed or not opened (use SQLiteStore.open)")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """The writer connection inside BEGIN IMMEDIATE … COMMIT (rolled back on error)."""
        self._require_open()
        assert self._writer is not None
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    self._rollback(conn)
                    raise
            except sqlite3.Error as exc:
                raise store_error(exc, self.path) from exc

    def _rollback(self, conn: sqlite3.Connection) -> None:
        """Undo the open transaction, if SQLite has not already (it rolls back by itself on SQLITE_FULL)."""
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # the original error is the one to report
            log.warning("sqlite store %s: rollback failed: %s", self.path, exc)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A pooled reader connection (WAL: reads do not wait for the writer)."""
        self._require_open()
        try:
            try:
                conn = self._readers.get_nowait()
            except queue.Empty:
                conn = self._connect()
                with self._pool_lock:
                    self._all_readers.append(conn)
            try:
                yield conn
            finally:
                if conn.in_transaction:  # a read that failed inside BEGIN: never pool an open snapshot
                    self._rollback(conn)
                self._readers.put(conn)
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from exc

    async def ping(self) -> None:
        """Raise a StoreError unless the file answers a read (readiness)."""
        await asyncio.to_thread(self._scalar, "SELECT COUNT(*) FROM meta")

    async def close(self) -> None:
        """Close every connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        with self._write_lock, self._pool_lock:
            for conn in self._all_readers:
                conn.close()
            if self._writer is not None:
                self._writer.close()

    async def __aenter__(self) -> SQLiteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes --------------------------------------------------------------------------------

    async def upsert(self, items: Sequence[Item]) -> int:
        """Insert or overwrite; returns once committed, with the offset of the last change."""
        checked = [validate_item(item) for item in items]
        if not checked:
            return await self.last_offset()
        return await asyncio.to_thread(self._upsert_sync, checked)

    def _upsert_sync(self, items: list[Item]) -> int:
        t0 = time.perf_counter()
        now = time.time()
        offset = 0
        version = batch_model_version(items)
        with self._write() as conn:
            fence = conn.execute("SELECT value FROM meta WHERE key = 'model_version'").fetchone()
            if fence is None:
                conn.execute("INSERT INTO meta (key, value) VALUES ('model_version', ?)", (version,))
            elif fence[0] != version:
                raise ModelVersionFenced(str(fence[0]), version)
            for item in items:
                row = (item.id, encode_vector(item.vector), encode_metadata(item.metadata, item_id=item.id),
                       item.model_version, item.image_ref, now, now)
                (created_at,) = conn.execute(_UPSERT_ITEM, row).fetchone()
                (offset,) = conn.execute(_LOG_UPSERT, row[:5] + (created_at, now)).fetchone()
        log.debug("upserted %d items up to offset %d in %.1f ms", len(items), offset,
                  1e3 * (time.perf_counter() - t0))
        return int(offset)

    async def model_version(self) -> str | None:
        def read() -> str | None:
            with self._read() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'model_version'").fetchone()
            return None if row is None else str(row[0])

        return await asyncio.to_thread(read)

    async def set_model_version(self, version: str) -> None:
        def write() -> None:
            with self._write() as conn:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('model_version', ?)", (version,))

        await asyncio.to_thread(write)

    async def delete(self, item_id: str) -> bool:
        """Delete one record; logs a delete change only when it existed."""
        return await asyncio.to_thread(self._delete_sync, item_id)

    def _delete_sync(self, item_id: str) -> bool:
        with self._write() as conn:
            if conn.execute("DELETE FROM items WHERE id = ?", (item_id,)).rowcount == 0:
                return False
            conn.execute("INSERT INTO changes (op, id) VALUES ('delete', ?)", (item_id,))
            return True

    async def trim_changes(self, before: int) -> int:
        """Drop log entries with offset < `before`."""
        check_offset(before)
        return await asyncio.to_thread(self._trim_sync, before)

    def _trim_sync(self, before: int) -> int:
        with self._write() as conn:
            head = conn.execute(_LAST_SEQ).fetchone()[0] + 1
            conn.execute(  # the mark never passes the head: future offsets are not trimmed
                "INSERT INTO meta (key, value) VALUES ('trimmed_before', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)", (min(before, head),))
            return conn.execute("DELETE FROM changes WHERE seq < ?", (before,)).rowcount

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, item_id: str) -> Item | None:
        """The record, or None."""
        return await asyncio.to_thread(self._get_sync, item_id)

    def _get_sync(self, item_id: str) -> Item | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
        return None if row is None else _row_to_item(row)

    async def count(self) -> int:
        """Number of records."""
        return await asyncio.to_thread(self._scalar, "SELECT COUNT(*) FROM items")

    async def last_offset(self) -> int:
        """Newest offset ever issued (sqlite_sequence survives trims), 0 before the first."""
        return await asyncio.to_thread(self._scalar, _LAST_SEQ)

    def _scalar(self, sql: str) -> int:
        with self._read() as conn:
            return int(conn.execute(sql).fetchone()[0])

    async def iter_items(self, batch: int = 1000) -> AsyncIterator[Item]:
        """All records in id order, `batch` per query (keyset pagination: no long transaction)."""
        check_limit(batch)
        after = ""
        while True:
            rows = await asyncio.to_thread(self._page_sync, after, batch)
            for row in rows:
                yield _row_to_item(row)
            if len(rows) < batch:
                return
            after = rows[-1][0]

    async def iter_pages(self, batch: int = 10_000) -> AsyncIterator[ItemPage]:
        """All records in id order as `ItemPage`s (decoded in the worker thread: one join per page)."""
        check_limit(batch)
        after = ""
        while True:
            page = await asyncio.to_thread(self._bulk_page_sync, after, batch)
            if page:
                yield page
            if len(page) < batch:
                return
            after = page.ids[-1]

    def _bulk_page_sync(self, after: str, batch: int) -> ItemPage:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, vector, metadata, model_version FROM items WHERE id > ? ORDER BY id LIMIT ?", (after, batch)
            ).fetchall()
        if not rows:
            return ItemPage([], stack_vectors([], []), [], [])
        ids, blobs, metadata, versions = map(list, zip(*rows, strict=True))  # columns in C, not 4 loops
        return ItemPage(ids, stack_vectors(ids, blobs), [decode_metadata(m) for m in metadata], versions)

    def _page_sync(self, after: str, batch: int) -> list[tuple[Any, ...]]:
        with self._read() as conn:
            return conn.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE id > ? ORDER BY id LIMIT ?", (after, batch)
            ).fetchall()

    async def changes_since(self, offset: int, limit: int = 1000) -> list[Change]:
        """Changes with offset > `offset`, oldest first."""
        check_offset(offset)
        check_limit(limit)
        return await asyncio.to_thread(self._changes_sync, offset, limit)

    def _changes_sync(self, offset: int, limit: int) -> list[Change]:
        with self._read() as conn:
            conn.execute("BEGIN")  # one read snapshot for the trim mark and the rows
            try:
                trimmed = conn.execute("SELECT value FROM meta WHERE key = 'trimmed_before'").fetchone()
                rows = conn.execute(
                    f"SELECT seq, op, {_ITEM_COLUMNS} FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                    (offset, limit),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
        check_not_trimmed(offset, 0 if trimmed is None else int(trimmed[0]))
        return [
            Change(int(row[0]), row[1], row[2], _row_to_item(row[2:]) if row[1] == "upsert" else None)
            for row in rows
        ]
