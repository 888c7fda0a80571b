"""The gallery store interface every backend implements, and helpers written against it.

Contract (both backends):
- one store per task: its own SQLite file / its own Redis key prefix, its own change log;
- `upsert` returns the offset of the last change it wrote, and returns only once the write is
  committed (SQLite: after COMMIT; Redis: after the atomic script ran);
- offsets increase strictly and are never reused, even after `trim_changes`;
- every record is of the gallery's one model version (a fence checked atomically with each write);
- `changes_since(o)` lists changes with offset > o in increasing order; an upsert change carries the
  record exactly as written at that offset. Replaying every change after o onto a copy of the
  state at o reproduces the current state; replay is idempotent, so a copy that already holds some
  later changes converges too (rebuilds rely on this).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from service.store.records import Change, Item, ItemPage


class StoreError(RuntimeError):
    """A backend failed (I/O, connection, corrupted row); the message names the store.

    `http_status` / `retry_after_s` say how the gateway answers it (503 + Retry-After: the store is away)."""

    http_status = 503
    retry_after_s: float | None = 1.0


class StoreUnavailable(StoreError):
    """The store cannot serve now but may shortly: Redis unreachable or loading, SQLite locked or read-only.
    Nothing was written (or the write is in doubt and safe to retry: every write is an idempotent upsert)."""


class StoreFull(StoreError):
    """The store has no room for the write (disk full, or the database's size cap): nothing of it was written.
    Answered 507 Insufficient Storage: retrying does not help until an operator frees space."""

    http_status = 507
    retry_after_s = 60.0


class ChangeLogTrimmed(StoreError):
    """The changes after the requested offset were partly trimmed: replay cannot be complete,
    so the reader must rebuild from `iter_items` instead."""

    def __init__(self, offset: int, trimmed_before: int):
        super().__init__(f"changes after offset {offset} are gone: the log was trimmed up to offset "
                         f"{trimmed_before - 1}; rebuild from the items instead of replaying")
        self.offset = offset
        self.trimmed_before = trimmed_before


class ModelVersionFenced(StoreError):
    """A write of records of another model version than the gallery's (its fence): vectors of two models
    never meet in one gallery. Raised by a replica still on the old model after another one upgraded."""

    def __init__(self, fence: str, written: str):
        super().__init__(f"the gallery holds records of model {fence}; refusing records of {written}")
        self.fence = fence
        self.written = written


def batch_model_version(items: Sequence[Item]) -> str:
    """The one model version of a batch of records (ValueError when they disagree)."""
    versions = {item.model_version for item in items}
    if len(versions) != 1:
        raise ValueError(f"a write holds records of several model versions: {sorted(versions)}")
    return versions.pop()


def check_not_trimmed(offset: int, trimmed_before: int) -> None:
    """Raise ChangeLogTrimmed when entries offset+1 .. trimmed_before-1 may have been dropped."""
    if offset + 1 < trimmed_before:
        raise ChangeLogTrimmed(offset, trimmed_before)


@runtime_checkable
class GalleryStore(Protocol):
    """Async store of gallery records with a change log (see the module docstring)."""

    async def upsert(self, items: Sequence[Item]) -> int:
        """Insert or overwrite items (all of one model version: the gallery's, see `model_version`); return the
        offset of the last change written. ModelVersionFenced when they are of another version."""
        ...

    async def model_version(self) -> str | None:
        """The gallery's model version (its fence): set by the first write, moved only by `set_model_version`
        (a model upgrade's cut-over); None before the first write."""
        ...

    async def set_model_version(self, version: str) -> None:
        """Move the fence: from now on only records of `version` may be written."""
        ...

    async def get(self, item_id: str) -> Item | None:
        """The record, or None."""
        ...

    async def delete(self, item_id: str) -> bool:
        """Delete; True when the item existed (a delete change is logged only then)."""
        ...

    async def count(self) -> int:
        """Number of records."""
        ...

    def iter_items(self, batch: int = 1000) -> AsyncIterator[Item]:
        """All records, fetched `batch` at a time (not a point-in-time snapshot: pair it with
        `last_offset()` read before iterating and replay the changes after it)."""
        ...

    def iter_pages(self, batch: int = 10_000) -> AsyncIterator[ItemPage]:
        """All records like `iter_items`, in bulk: non-empty pages of about `batch` records (Redis: HSCAN's
        hint), vectors as one matrix per page (`MixedDimensions` for a page whose vectors differ in length)."""
        ...

    async def changes_since(self, offset: int, limit: int = 1000) -> list[Change]:
        """Up to `limit` changes with offset > `offset`, in increasing offset order; raises
        ChangeLogTrimmed when some of them were trimmed away."""
        ...

    async def last_offset(self) -> int:
        """Offset of the newest change (0 before the first)."""
        ...

    async def trim_changes(self, before: int) -> int:
        """Drop changes with offset < `before` (once a snapshot holds them); return how many."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; raise StoreError (StoreUnavailable) when it cannot (readiness)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


async def replay_changes(
    store: GalleryStore,
    since: int,
    apply: Callable[[Change], Awaitable[None] | None],
    *,
    batch: int = 1000,
) -> int:
    """Feed every change after `since` to `apply`, in order; return the last offset applied
    (`since` when there was none)."""
    offset = since
    while True:
        changes = await store.changes_since(offset, batch)
        for change in changes:
            result = apply(change)
            if result is not None:
                await result
            offset = change.offset
        if len(changes) < batch:
            return offset
