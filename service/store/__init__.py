"""Gallery records per task: SQLite (default, embedded) or Redis (distributed), one interface."""

from service.store.base import (
    ChangeLogTrimmed,
    GalleryStore,
    ModelVersionFenced,
    StoreError,
    StoreFull,
    StoreUnavailable,
    replay_changes,
)
from service.store.factory import open_store, sqlite_path
from service.store.records import Change, Item, same_item, validate_item
from service.store.sqlite_store import SQLiteStore

__all__ = [
    "Change",
    "ChangeLogTrimmed",
    "GalleryStore",
    "Item",
    "ModelVersionFenced",
    "SQLiteStore",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "open_store",
    "replay_changes",
    "same_item",
    "sqlite_path",
    "validate_item",
]
