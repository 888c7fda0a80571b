"""sqlite3 errors as typed store errors: what the gateway answers depends on whether a retry can help.

SQLITE_FULL (disk full, or the store's page cap) → `StoreFull` (507); locked, busy, read-only, I/O and
cannot-open → `StoreUnavailable` (503 + Retry-After); anything else (corruption, misuse) → `StoreError`.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from service.store.base import StoreError, StoreFull, StoreUnavailable

# Primary result codes (the low byte of an extended code) that a retry may cure: the store is away, not broken.
_TRANSIENT = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PERM",
              "SQLITE_PROTOCOL"}
_PRIMARY_NAMES = {5: "SQLITE_BUSY", 6: "SQLITE_LOCKED", 8: "SQLITE_READONLY", 10: "SQLITE_IOERR", 13: "SQLITE_FULL",
                  14: "SQLITE_CANTOPEN", 3: "SQLITE_PERM", 15: "SQLITE_PROTOCOL"}


def store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """The typed store error for an sqlite3 error: StoreFull, StoreUnavailable, or StoreError (corruption...)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = _PRIMARY_NAMES.get(code & 0xFF) if isinstance(code, int) else None
    name = getattr(exc, "sqlite_errorname", None) or primary or type(exc).__name__
    message = f"sqlite store {path}: {exc} ({name})"
    if primary == "SQLITE_FULL":
        return StoreFull(message)
    if primary in _TRANSIENT:
        return StoreUnavailable(message)
    return StoreError(message)
