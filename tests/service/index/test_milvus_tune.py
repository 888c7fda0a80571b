"""The Milvus engine's index choice by size, its tuned HNSW `ef`, and the recall canary's truth, on a real
embedded Milvus Lite. Milvus Lite builds a real HNSW graph once a segment is flushed (`catalog.tune` flushes
first), so on these 600 random 32-d vectors recall@10 grows with ef: the ladder walk and the canary are measured,
not assumed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from service.config import Settings
from service.index.milvus_catalog import MilvusCatalog
from service.index.milvus_settings import MilvusSettings
from service.index.milvus_tune import EF_LADDER, canary_truth, held_out_queries, scan_top_k
from service.worker.canary import RecallCanary

DIM = 32
N = 600


def unit_rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def gallery() -> np.ndarray:
    return unit_rows(N, 0)


def filled(catalog: MilvusCatalog, task: str, xb: np.ndarray, n_expected: int):  # noqa: ANN201
    index = catalog.create(task, "m/1", DIM, n_expected=n_expected)
    ids = [f"i{n}" for n in range(len(xb))]
    for start in range(0, len(xb), 200):
        index.upsert(ids[start : start + 200], xb[start : start + 200], model_version="m/1")
    return index


def test_the_scan_is_exact_search(tmp_path: Path, gallery: np.ndarray) -> None:
    catalog = MilvusCatalog(MilvusSettings(uri=str(tmp_path / "m.db")), flat_below=10**6)
    try:
        index = filled(catalog, "face", gallery, n_expected=N)
        xq = unit_rows(12, 1)
        hits = scan_top_k(index, xq, 7)
        scores = xq @ gallery.T
        for q, row in enumerate(hits):
            expected = np.argsort(-scores[q], kind="stable")[:7]
            assert [h.id for h in row] == [f"i{n}" for n in expected]
            np.testing.assert_allclose([h.score for h in row], scores[q, expected], atol=1e-5)
        queries = held_out_queries(index, 20)  # midpoints of an item and its neighbour: near, not in, the gallery
        np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
        assert (queries @ gallery.T).max(axis=1).max() < 0.9999
    finally:
        catalog.close()


def test_size_picks_the_index_and_hnsw_is_tuned_once_and_reopened_as_tuned(tmp_path: Path,
                                                                           gallery: np.ndarray) -> None:
    settings = MilvusSettings(uri=str(tmp_path / "m.db"))
    catalog = MilvusCatalog(settings, flat_below=N, recall_target=0.999)
    try:
        small = filled(catalog, "face", gallery[:100], n_expected=100)
        assert (small.index_type, small.factory, catalog.tune(small), small.search_params) == (
            "FLAT", "milvus:FLAT", None, "")
        large = filled(catalog, "person", gallery, n_expected=N)
        assert large.index_type == "HNSW" and large.factory == "milvus:HNSW"
        point = catalog.tune(large)
        assert point is not None and point.recall >= 0.999 and point.params == f"ef={large.search_ef}"
        assert large.search_ef in EF_LADDER[1:] and large.search_params == point.params  # ef=16 misses 0.999
        assert large.search_params_for(5) == {"metric_type": "IP", "params": {"ef": large.search_ef}}
        assert large.search_params_for(500)["params"] == {"ef": 500}  # Milvus needs ef >= k
        catalog.promote("person", large)
    finally:
        catalog.close()
    again = MilvusCatalog(settings, flat_below=N)  # a restart or another replica reads the tuned ef back
    try:
        reopened = again.open("person")
        assert reopened is not None and reopened.index_type == "HNSW"
        assert (reopened.search_ef, reopened.tuned_recall) == (large.search_ef, pytest.approx(point.recall))
    finally:
        again.close()


def test_the_canary_measures_a_milvus_collection_exactly_or_against_a_wider_search(tmp_path: Path,
                                                                                  gallery: np.ndarray) -> None:
    catalog = MilvusCatalog(MilvusSettings(uri=str(tmp_path / "m.db")), flat_below=N)
    try:
        index = filled(catalog, "face", gallery, n_expected=N)
        catalog.tune(index)
        xq = unit_rows(32, 2)
        truth = canary_truth(index, xq, 10, max_exact_items=N)
        assert truth.exact and [[h.id for h in row] for row in truth.hits] == [
            [h.id for h in row] for row in scan_top_k(index, xq, 10)]
        assert not canary_truth(index, xq, 10, max_exact_items=N - 1).exact
        recalls = {}
        for ef, max_exact in ((16, N), (512, N), (16, 10)):
            index.search_ef = ef  # served as if tuned to this ef
            canary = RecallCanary(k=10, per_round=32, max_exact_items=max_exact)
            assert canary.measure(index) is None  # no live query seen yet
            canary.observe(xq)
            recalls[ef, max_exact] = canary.measure(index)
            assert (canary.exact, canary.rounds) == (max_exact == N, 1)
        assert recalls[512, N] == pytest.approx(1.0)
        assert recalls[16, N] < 0.99  # a too-small ef shows as a falling recall, against exact truth
        assert recalls[16, 10] < 0.99  # and against the wider reference search above the scan limit
    finally:
        catalog.close()


def test_the_collection_an_alias_leaves_is_dropped_after_the_grace_period(tmp_path: Path,
                                                                          gallery: np.ndarray) -> None:
    settings = MilvusSettings(uri=str(tmp_path / "m.db"), retire_after_s=0.3)
    catalog = MilvusCatalog(settings, flat_below=N)
    try:
        old = filled(catalog, "face", gallery[:50], n_expected=50)
        catalog.promote("face", old)
        new = catalog.create("face", "m/2", DIM)
        new.upsert(["a"], gallery[:1], model_version="m/2")
        assert catalog.retired("face") == [new.collection]  # filled beside the live one: not dropped
        catalog.promote("face", new)
        assert catalog.retired("face") == [old.collection]
        for _ in range(100):
            if not catalog.client.has_collection(old.collection):
                break
            time.sleep(0.05)
        assert not catalog.client.has_collection(old.collection) and catalog.retired("face") == []
        assert catalog.open("face") is new and len(new) == 1
        catalog.settings = MilvusSettings(uri=settings.uri, retire_after_s=3600)
        third = catalog.create("face", "m/3", DIM)
        catalog.promote("face", third)
    finally:
        catalog.close()  # a pending drop is cancelled, not run half-way: the collection stays, listed as retired
    again = MilvusCatalog(settings, flat_below=N)
    try:
        assert again.retired("face") == [new.collection] and again.client.has_collection(new.collection)
    finally:
        again.close()


def test_shards_replicas_and_the_new_milvus_settings_are_checked_and_reach_milvus(tmp_path: Path, gallery: np.ndarray,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UFO_MILVUS__SHARDS", "4")
    monkeypatch.setenv("UFO_MILVUS__REPLICAS", "2")
    settings = Settings().milvus
    assert (settings.shards, settings.replicas) == (4, 2)
    for bad in ("0", "65", "two"):
        monkeypatch.setenv("UFO_MILVUS__SHARDS", bad)
        with pytest.raises(ValidationError, match="shards"):
            Settings()
    monkeypatch.delenv("UFO_MILVUS__SHARDS")
    for name, bad in (("UFO_MILVUS__REPLICAS", "0"), ("UFO_MILVUS__RETIRE_AFTER_S", "-1"),
                      ("UFO_MILVUS__INDEX_WAIT_S", "soon"), ("UFO_INDEX__EXACT_SCAN_MAX_ITEMS", "-5")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValidationError, match=name.split("__")[-1].lower()):
            Settings()
        monkeypatch.delenv(name)
    # Milvus Lite takes both (and serves from one shard and one replica): the calls a server gets are accepted
    catalog = MilvusCatalog(MilvusSettings(uri=str(tmp_path / "m.db"), shards=4, replicas=2), flat_below=N)
    try:
        index = filled(catalog, "face", gallery[:20], n_expected=20)
        assert len(index) == 20 and scan_top_k(index, gallery[:1], 1)[0][0].id == "i0"
    finally:
        catalog.close()
