"""When a FAISS index should be rebuilt: the follower checks these every round (the Milvus form of a rebuild
has its own reason, `milvus_rebuild.recreate_reason`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.config import IndexSettings
    from service.index import VectorIndex


def rebuild_reason(index: VectorIndex, opts: IndexSettings, last_build_at: float | None, now: float) -> str | None:
    """Which trigger fires for `index`, if any: delta size, tombstone ratio, or the schedule."""
    if index.delta_size >= opts.rebuild_delta_items > 0:
        return "delta"
    stored = index.main_size + index.delta_size
    if index.tombstones and stored and index.tombstones / stored >= opts.rebuild_tombstone_ratio > 0:
        return "tombstones"
    if opts.rebuild_interval_s > 0 and now - (last_build_at or 0.0) >= opts.rebuild_interval_s:
        return "schedule"
    return None
