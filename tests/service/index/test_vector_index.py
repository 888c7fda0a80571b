"""VectorIndex against brute-force IndexFlatIP on seeded clustered data (real FAISS, no mocks)."""

from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest

from service.index import DimensionError, ModelVersionError, VectorIndex, build_index, recall_at_k, suggest_nlist
from tests.service.index.data import clustered, ids_for

V = "v1"
D = 32


def brute_force(xq: np.ndarray, xb: np.ndarray, ids: list[str], k: int) -> tuple[np.ndarray, list[list[str]]]:
    exact = faiss.IndexFlatIP(xb.shape[1])
    exact.add(xb)
    scores, rows = exact.search(xq, k)
    return scores, [[ids[r] for r in row if r >= 0] for row in rows]


def hit_ids(result) -> list[list[str]]:
    return [[h.id for h in row] for row in result.hits]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, list[str]]:
    return clustered(2000, D, seed=1), clustered(40, D, seed=2), ids_for(2000)


def test_flat_equals_brute_force(data) -> None:
    xb, xq, ids = data
    index = VectorIndex.build(ids, xb, model_version=V, factory="Flat")
    result = index.search(xq, 10)
    scores, expected = brute_force(xq, xb, ids, 10)
    assert hit_ids(result) == expected
    np.testing.assert_allclose(result.D, scores, rtol=1e-5, atol=1e-6)
    assert result.I.shape == (40, 10) and result.I[0, 0] == expected[0][0]


def test_main_plus_delta_equals_brute_force(data) -> None:
    xb, xq, ids = data
    index = VectorIndex.build(ids[:1200], xb[:1200], model_version=V)
    index.upsert(ids[1200:1700], xb[1200:1700], model_version=V)
    for i in range(1700, 2000):  # single writes too
        index.upsert(ids[i], xb[i], model_version=V)
    assert (index.main_size, index.delta_size, len(index)) == (1200, 800, 2000)
    assert hit_ids(index.search(xq, 15)) == brute_force(xq, xb, ids, 15)[1]


def test_empty_index_returns_nothing() -> None:
    index = VectorIndex(D, V)
    result = index.search(clustered(3, D), 5)
    assert result.hits == [[], [], []] and np.isneginf(result.D).all()


def test_ivf_recall_floor_and_exhaustive_nprobe_is_exact(data) -> None:
    xb, xq, ids = data
    index = VectorIndex.build(ids, xb, model_version=V, factory="IVF{nlist},Flat", search_params="nprobe=1")
    nlist = suggest_nlist(len(xb))
    _, expected = brute_force(xq, xb, ids, 10)
    got = hit_ids(index.search(xq, 10))
    recall = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, expected, strict=True)])
    assert 0.85 <= recall < 1.0, recall  # approximate, yet above the floor
    index.set_search_params(f"nprobe={nlist}")
    assert hit_ids(index.search(xq, 10)) == expected


@pytest.mark.parametrize(("factory", "params", "floor"), [("HNSW16", "efSearch=64", 0.9),
                                                          ("IVF16,PQ8x4fs,RFlat", "nprobe=8,k_factor_rf=8", 0.9)])
def test_other_factories_plug_in(data, factory: str, params: str, floor: float) -> None:
    xb, xq, _ = data
    index = build_index(xb, np.arange(len(xb)) + 10_000, factory, search_params=params)
    _, labels = index.search(xq, 10)
    _, gt = faiss.knn(xq, xb, 10, metric=faiss.METRIC_INNER_PRODUCT)
    assert recall_at_k(labels, gt + 10_000, 10) >= floor


def test_overwrite_is_returned_once_with_its_new_vector(data) -> None:
    xb, _, ids = data
    index = VectorIndex.build(ids, xb, model_version=V)
    old, new = xb[7], xb[1500]
    index.upsert([ids[7]], new[None], [{"rev": 2}], model_version=V)
    index.upsert([ids[7]], new[None], [{"rev": 3}], model_version=V)  # overwrite the delta copy too
    result = index.search(new, 50)
    found = [h for h in result.hits[0] if h.id == ids[7]]
    assert len(found) == 1 and found[0].score == pytest.approx(1.0, abs=1e-5) and found[0].metadata == {"rev": 3}
    # the old vector no longer matches it perfectly; every id appears at most once
    top = index.search(old, len(xb) + 5).hits[0]
    assert len(top) == len(xb) and len({h.id for h in top}) == len(top)
    assert next(h.score for h in top if h.id == ids[7]) == pytest.approx(float(old @ new), abs=1e-5)
    assert index.tombstones == 2 and len(index) == len(xb)


def test_deleted_ids_are_never_returned(data) -> None:
    xb, xq, ids = data
    index = VectorIndex.build(ids, xb, model_version=V, factory="IVF{nlist},Flat", search_params="nprobe=64")
    index.upsert(["fresh"], xq[0], model_version=V)
    gone = set(ids[::3]) | {"fresh"}
    assert index.delete(sorted(gone)) == len(gone)
    assert index.delete(["fresh", "never-existed"]) == 0
    for row in index.search(np.concatenate([xq, xb[::3][:20]]), 2100).hits:
        assert not gone & {h.id for h in row}
    assert len(index) == len(xb) + 1 - len(gone) and "fresh" not in index


def test_read_your_writes(data) -> None:
    _, xq, _ = data
    index = VectorIndex.build(ids_for(500, "base"), clustered(500, D, seed=3), model_version=V, factory="Flat")
    for i in range(20):
        index.upsert(f"new-{i}", xq[i], model_version=V)
        top = index.search(xq[i], 1).hits[0][0]
        assert top.id == f"new-{i}" and top.score == pytest.approx(1.0, abs=1e-5)


def test_metadata_filter_equals_brute_force_on_the_subset(data) -> None:
    xb, xq, ids = data
    meta = [{"camera": i % 7, "site": "a" if i % 2 else "b"} for i in range(len(xb))]
    index = VectorIndex.build(ids, xb, meta, model_version=V)
    wanted = {"camera": 3, "site": "a"}
    subset = [i for i, m in enumerate(meta) if m == wanted]
    _, expected = brute_force(xq, xb[subset], [ids[i] for i in subset], 10)
    calls = index.stats.faiss_calls
    result = index.search(xq, 10, filter=wanted)
    assert hit_ids(result) == expected
    assert all(h.metadata == wanted for row in result.hits for h in row)
    assert index.stats.faiss_calls - calls > 1  # 1/14 selectivity needs more than one fetch
    assert index.search(xq[:2], 5, filter={"camera": 99}).hits == [[], []]


def test_min_score_equals_brute_force_threshold(data) -> None:
    xb, xq, ids = data
    index = VectorIndex.build(ids[:1000], xb[:1000], model_version=V)
    index.upsert(ids[1000:], xb[1000:], model_version=V)
    scores, expected = brute_force(xq, xb, ids, 20)
    threshold = float(np.median(scores[:, 10]))
    result = index.search(xq, 20, min_score=threshold)
    for row, s, e in zip(result.hits, scores, expected, strict=True):
        keep = int((s >= threshold).sum())
        assert [h.id for h in row] == e[:keep] and all(h.score >= threshold for h in row)


def test_dimension_nan_zero_and_version_errors(data) -> None:
    xb, _, ids = data
    index = VectorIndex.build(ids[:100], xb[:100], model_version=V)
    with pytest.raises(DimensionError, match="dimension 16, the index expects 32"):
        index.upsert("x", np.ones(16, np.float32), model_version=V)
    bad = xb[:3].copy()
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN or Inf in 1 row\(s\), e.g. rows \[1\]"):
        index.upsert(["a", "b", "c"], bad, model_version=V)
    with pytest.raises(DimensionError, match="zero vector"):
        index.search(np.zeros(D, np.float32))
    with pytest.raises(DimensionError, match="matrix"):
        index.search(np.ones((2, 2, D), np.float32))
    with pytest.raises(ModelVersionError, match="model version 'v2' but this index holds version 'v1'"):
        index.upsert("x", xb[0], model_version="v2")
    with pytest.raises(ModelVersionError):
        index.search(xb[0], model_version="v0")
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search(xb[0], 0)
    assert len(index) == 100 and "x" not in index


def test_concurrent_writes_and_searches_stay_consistent(data) -> None:
    xb, xq, ids = data
    index = VectorIndex.build(ids[:1000], xb[:1000], model_version=V)
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                for row in index.search(xq[:8], 20).hits:
                    assert len({h.id for h in row}) == len(row)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for i in range(1000, 2000, 10):  # growth of every buffer happens under the readers
        index.upsert(ids[i : i + 10], xb[i : i + 10], model_version=V)
        index.upsert(ids[i - 1000], xb[i], model_version=V)
        assert index.search(xb[i], 1).hits[0][0].score == pytest.approx(1.0, abs=1e-5)
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors[0]
    assert len(index) == 2000
