"""Change-log retention: once a snapshot is announced, the log entries well before its offset are dropped.

Who still reads the log, and from where: followers from their live index's offset (near the head); a
starting gateway from the latest snapshot's offset; a gateway restarting from its own older snapshot from
that snapshot's offset. So the trim never passes the announced snapshot and keeps `log_retain` entries
before it; a reader that falls further behind gets `ChangeLogTrimmed` and rebuilds from the items (every
reader handles that: `sync_with_store`, `IndexFollower.open` and `poll`). Without trimming, the log (a
Redis Stream held in memory, or a SQLite table) would grow with every write forever.
"""

from __future__ import annotations

import logging

from service.store import open_store
from service.worker.records import SnapshotInfo

log = logging.getLogger(__name__)


def trim_point(snapshot_offset: int, retain: int) -> int:
    """The `before` for `trim_changes`: entries with offset <= snapshot_offset - retain go (0: none)."""
    if retain < 0 or snapshot_offset - retain < 1:
        return 0
    return snapshot_offset - retain + 1


async def trim_log(store_url: str, info: SnapshotInfo, retain: int) -> int:
    """Trim the task's change log behind the announced snapshot `info`; returns the entries removed."""
    before = trim_point(info.offset, retain)
    if before == 0:
        return 0
    store = await open_store(store_url, info.task)
    try:
        removed = await store.trim_changes(before)
    finally:
        await store.close()
    if removed:
        log.info("%s: trimmed %d change-log entries before offset %d (snapshot %s at %d, %d kept before it)",
                 info.task, removed, before, info.version, info.offset, retain)
    return removed
