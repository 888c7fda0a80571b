"""build_index preconditions and operating-point tuning against exact ground truth."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from service.index import (
    TrainingSizeError,
    VectorIndex,
    build_index,
    exact_knn,
    recall_at_k,
    resolve_factory,
    suggest_nlist,
    tune_search_params,
)
from tests.service.index.data import clustered, ids_for


@pytest.fixture(scope="module")
def xb() -> np.ndarray:
    return clustered(3000, 32, centres=60, seed=11)


def test_factory_placeholder_and_nlist() -> None:
    assert suggest_nlist(1_000_000) == 4096 and suggest_nlist(0) == 1
    assert resolve_factory("IVF{nlist},Flat", 1_000_000) == "IVF4096,Flat"
    assert resolve_factory("HNSW32", 10) == "HNSW32"


def test_build_index_preconditions(xb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unique"):
        build_index(xb[:4], np.array([1, 1, 2, 3]))
    with pytest.raises(ValueError, match="shape"):
        build_index(xb[:4], np.arange(3))
    with pytest.raises(TrainingSizeError, match="needs at least 64 training vectors, got 10"):
        build_index(xb[:10], np.arange(10), "IVF64,Flat")
    young = VectorIndex.build(ids_for(10), xb[:10], model_version="v", factory="IVF64,Flat")
    assert young.factory == "IVF64,Flat" and young.search(xb[3], 1).hits[0][0].id == ids_for(10)[3]
    index = build_index(xb, np.arange(len(xb)) * 7, "Flat")
    assert isinstance(index, faiss.IndexIDMap2) and index.search(xb[:1], 1)[1][0, 0] == 0


def test_tuning_picks_the_cheapest_nprobe_reaching_the_target(xb: np.ndarray) -> None:
    index = build_index(xb, np.arange(len(xb)), "IVF64,Flat")
    xq = clustered(200, 32, centres=60, seed=12)  # held-out queries from the same mixture
    _, gt = exact_knn(xq, xb, 10)
    point = tune_search_params(index, xq, gt, k=10, target_recall=0.95)
    nprobe = int(point.params.split("=")[1])
    assert point.recall >= 0.95 and faiss.extract_index_ivf(index).nprobe == nprobe
    if nprobe > 1:  # the next cheaper setting misses the target
        faiss.ParameterSpace().set_index_parameters(index, f"nprobe={nprobe // 2}")
        assert recall_at_k(index.search(xq, 10)[1], gt, 10) < 0.95
    flat = build_index(xb, np.arange(len(xb)), "Flat")
    assert tune_search_params(flat, xq, gt).params == "" and tune_search_params(flat, xq, gt).recall == 1.0


def test_ivf_that_runs_dry_stops_without_looping(xb: np.ndarray) -> None:
    index = VectorIndex.build(ids_for(len(xb)), xb, model_version="v", factory="IVF64,Flat", search_params="nprobe=1")
    index.delete(ids_for(len(xb))[::2])
    hits = index.search(xb[:3], 2000, filter={}).hits
    assert all(0 < len(row) < 2000 for row in hits)
