"""Build a FAISS main index from a factory string (inner product on L2-normalised vectors).

Factory strings are FAISS's own ("Flat", "IVF1024,Flat", "HNSW32", "IVF4096,PQ32,RFlat", ...),
plus one placeholder: "{nlist}" is replaced by `suggest_nlist(n)` ("IVF{nlist},Flat").
Indexes that cannot add with ids (Flat, HNSW, PQ, refine) are wrapped in IndexIDMap2; IVF indexes
store ids themselves. The GPU path is taken only when faiss sees a GPU.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import faiss
import numpy as np

from service.index.errors import DimensionError, TrainingSizeError

log = logging.getLogger(__name__)

DEFAULT_TRAIN_SAMPLE = 256  # training vectors per IVF list (FAISS warns below 39, gains little past 256)


def suggest_nlist(n: int) -> int:
    """IVF list count for n vectors: the power of two nearest 4·√n, at least 1, with ≥ 39 vectors/list."""
    if n <= 0:
        return 1
    nlist = 2 ** round(math.log2(max(1.0, 4 * math.sqrt(n))))
    return int(max(1, min(nlist, n // 39 or 1)))


def resolve_factory(factory: str, n: int) -> str:
    """Fill the '{nlist}' placeholder for n vectors."""
    return factory.replace("{nlist}", str(suggest_nlist(n))) if "{nlist}" in factory else factory


def gpu_available() -> bool:
    """True when this faiss build sees at least one GPU."""
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def stores_ids(index: faiss.Index) -> bool:
    """True when `index` keeps its own ids (add_with_ids works without an IDMap)."""
    return isinstance(faiss.downcast_index(index), faiss.IndexIVF | faiss.IndexIDMap | faiss.IndexIDMap2)


def sample_rows(xb: np.ndarray, n: int, seed: int = 1234) -> np.ndarray:
    """At most n rows of xb, drawn without replacement (all rows when n >= len(xb))."""
    if n >= len(xb):
        return xb
    rows = np.sort(np.random.default_rng(seed).choice(len(xb), size=n, replace=False))
    return xb[rows]


def build_index(
    xb: np.ndarray,
    ids: np.ndarray,
    factory: str = "Flat",
    *,
    train_sample: int | None = None,
    metric: int = faiss.METRIC_INNER_PRODUCT,
    search_params: str = "",
    use_gpu: bool | None = None,
    seed: int = 1234,
) -> faiss.Index:
    """A trained index holding xb under int64 `ids`.

    xb: (n, d) float32, already L2-normalised for inner product. train_sample: training vectors
    (default 256 per IVF list, or every vector). search_params: a ParameterSpace string such as
    "nprobe=16". use_gpu: None = when available.
    """
    xb = np.ascontiguousarray(xb, dtype=np.float32)
    if xb.ndim != 2 or xb.shape[1] == 0:
        raise DimensionError(f"xb must be a (n, d) matrix, got shape {xb.shape}")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.shape != (len(xb),):
        raise ValueError(f"ids must have shape ({len(xb)},), got {ids.shape}")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("ids must be unique")
    t0 = time.perf_counter()
    resolved = resolve_factory(factory, len(xb))
    index = faiss.index_factory(xb.shape[1], resolved, metric)
    if not stores_ids(index):
        index = faiss.IndexIDMap2(index)
    if not index.is_trained:
        nlist = _ivf_nlist(index)
        train = sample_rows(xb, train_sample or DEFAULT_TRAIN_SAMPLE * nlist, seed)
        if len(train) < nlist:
            raise TrainingSizeError(f"{resolved!r} needs at least {nlist} training vectors, got {len(train)}")
        index.train(train)
    t_train = time.perf_counter() - t0
    if use_gpu is None:
        use_gpu = gpu_available() and _gpu_options.enabled
    if use_gpu:
        index = to_gpu(index)
    index.add_with_ids(xb, ids)
    if search_params:
        set_search_params(index, search_params)
    log.info("built %s on %d x %d: train %.2f s, total %.2f s%s", resolved, len(xb), xb.shape[1], t_train,
             time.perf_counter() - t0, " (GPU)" if use_gpu else "")
    return index


def build_main(xb: np.ndarray, factory: str, *, search_params: str = "", train_sample: int | None = None,
               use_gpu: bool | None = None) -> faiss.Index:
    """`build_index` over labels 0..n-1 (row positions); a gallery too small to train `factory` gets an exact
    Flat index for now (the next rebuild retries). Pure FAISS work: it holds the GIL only between calls."""
    labels = np.arange(len(xb))
    options = {"train_sample": train_sample, "use_gpu": use_gpu}
    try:
        return build_index(xb, labels, factory, search_params=search_params, **options)
    except TrainingSizeError as exc:  # a young gallery: exact search until it grows
        log.warning("%s; building Flat for now (the next rebuild retries %r)", exc, factory)
        return build_index(xb, labels, "Flat", **options)


def _ivf_nlist(index: faiss.Index) -> int:
    """Number of IVF lists (1 for indexes without an IVF level)."""
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        return 1


def base_index(index: faiss.Index) -> faiss.Index:
    """The innermost index under IDMap / PreTransform / Refine wrappers."""
    index = faiss.downcast_index(index)
    while True:
        if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2 | faiss.IndexPreTransform):
            index = faiss.downcast_index(index.index)
        elif isinstance(index, faiss.IndexRefine):
            index = faiss.downcast_index(index.base_index)
        else:
            return index


def is_gpu_index(index: faiss.Index) -> bool:
    """True for an index (or the base under its wrappers) living on a GPU."""
    return "Gpu" in type(base_index(index)).__name__


@dataclass(frozen=True)
class GpuOptions:
    """How indexes go onto GPUs (service/config.py FaissGpuSettings; set once per process by `configure_gpu`)."""

    enabled: bool = True
    temp_memory_mb: int = 512  # -1: FAISS's default
    float16: bool = False


_gpu_options = GpuOptions()
_gpu_resources: list | None = None  # one StandardGpuResources per GPU, alive as long as the process


def configure_gpu(settings: object) -> GpuOptions:
    """Adopt the FAISS GPU settings (any object with enabled / temp_memory_mb / float16) for this process."""
    global _gpu_options, _gpu_resources
    options = GpuOptions(bool(settings.enabled), int(settings.temp_memory_mb), bool(settings.float16))
    if options != _gpu_options:
        _gpu_options, _gpu_resources = options, None
    return options


def _resources() -> list:
    global _gpu_resources
    if _gpu_resources is None:
        _gpu_resources = []
        for _ in range(faiss.get_num_gpus()):
            res = faiss.StandardGpuResources()
            if _gpu_options.temp_memory_mb >= 0:
                res.setTempMemory(_gpu_options.temp_memory_mb * 1024 * 1024)
            _gpu_resources.append(res)
    return _gpu_resources


def to_gpu(index: faiss.Index) -> faiss.Index:
    """Clone onto all visible GPUs (a no-op without GPUs or with GPU FAISS disabled); wrappers stay on the
    CPU side. Replicated, not sharded: every GPU answers whole queries (the coalescer sends batches)."""
    if not gpu_available() or not _gpu_options.enabled:
        return index
    cloner = faiss.GpuMultipleClonerOptions()
    cloner.shard = False
    cloner.useFloat16 = _gpu_options.float16
    return faiss.index_cpu_to_gpu_multiple_py(_resources(), index, cloner)


def to_cpu(index: faiss.Index) -> faiss.Index:
    """A CPU copy of an index with GPU parts (for snapshots); CPU indexes are returned as is."""
    return faiss.index_gpu_to_cpu(index) if gpu_available() and is_gpu_index(index) else index


def set_search_params(index: faiss.Index, params: str) -> None:
    """Apply a ParameterSpace string ("nprobe=16", "efSearch=64,k_factor=4") through any wrappers."""
    if not params:
        return
    space = faiss.GpuParameterSpace() if is_gpu_index(index) else faiss.ParameterSpace()
    space.set_index_parameters(index, params)
