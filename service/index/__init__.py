"""Per-task vector indexes behind one engine seam (`engine.py`): FAISS in the gateway (main + exact delta +
tombstones, coalesced search, snapshots) or a Milvus collection (`milvus_*`: filters pushed down, ef tuned)."""

from service.index.build import build_index, gpu_available, resolve_factory, set_search_params, suggest_nlist
from service.index.coalescer import CoalescingSearcher
from service.index.errors import DimensionError, ModelVersionError, SnapshotError, TrainingSizeError
from service.index.search import Hit, Query, SearchResult
from service.index.snapshot import read_sidecar, verify_snapshot
from service.index.sync import RebuildReport, catch_up, rebuild_from_store, sync_with_store
from service.index.tune import OperatingPoint, exact_knn, recall_at_k, tune_search_params
from service.index.vector_index import IndexStats, VectorIndex

__all__ = [
    "CoalescingSearcher",
    "DimensionError",
    "Hit",
    "IndexStats",
    "ModelVersionError",
    "OperatingPoint",
    "Query",
    "RebuildReport",
    "SearchResult",
    "SnapshotError",
    "TrainingSizeError",
    "VectorIndex",
    "build_index",
    "catch_up",
    "exact_knn",
    "gpu_available",
    "rebuild_from_store",
    "read_sidecar",
    "recall_at_k",
    "resolve_factory",
    "set_search_params",
    "suggest_nlist",
    "sync_with_store",
    "tune_search_params",
    "verify_snapshot",
]
