"""One contract for every index engine, run on FAISS and on Milvus Lite (real Milvus, embedded, through the
same pymilvus client a cluster uses): add, search by vector, filters (hostile values too), delete, upsert,
reopen with nothing lost, a version switch with no mixed answers, and FAISS and Milvus agreeing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.index.engine import EngineCatalog, IndexEngine, open_catalog
from service.index.errors import DimensionError, ModelVersionError
from service.index.milvus_settings import MilvusSettings
from tests.service.index.data import clustered, ids_for

DIM = 16
V1, V2 = "ufo_face/1", "ufo_face/2"
HOSTILE = ['x" or id != "', "x' or id != '", 'x\\" or true or \\"', "x\") or (id != \"", "a\nb", "é\\"]


def make_catalog(engine: str, root: Path) -> EngineCatalog:
    return open_catalog(engine, data_dir=root / "faiss", milvus=MilvusSettings(uri=str(root / "milvus.db")))


@pytest.fixture(params=["faiss", "milvus"])
def engine_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def catalog(engine_name: str, tmp_path: Path) -> Iterator[EngineCatalog]:
    cat = make_catalog(engine_name, tmp_path)
    yield cat
    cat.close()


def live_index(catalog: EngineCatalog, n: int = 60, version: str = V1) -> tuple[IndexEngine, np.ndarray]:
    index = catalog.create("face", version, DIM)
    xb = clustered(n, DIM, centres=6, seed=1)
    meta = [{"identity": f"s{i % 6}", "cam": i % 2, "tag": HOSTILE[i % len(HOSTILE)]} for i in range(n)]
    index.upsert(ids_for(n), xb, meta, model_version=version, offset=n)
    catalog.promote("face", index)
    return index, xb


def exact(xb: np.ndarray, q: np.ndarray, keep: np.ndarray | None = None) -> list[tuple[str, float]]:
    scores = xb @ q
    order = [i for i in np.argsort(-scores, kind="stable") if keep is None or keep[i]]
    return [(ids_for(len(xb))[i], float(scores[i])) for i in order]


def test_add_and_search_by_vector_is_exact(catalog: EngineCatalog) -> None:
    index, xb = live_index(catalog)
    assert len(index) == 60 and "item-00003" in index and "nope" not in index
    result = index.search(xb[3], k=5)
    want = exact(xb, xb[3])[:5]
    assert [h.id for h in result.hits[0]] == [w[0] for w in want]
    np.testing.assert_allclose([h.score for h in result.hits[0]], [w[1] for w in want], atol=1e-5)
    assert result.hits[0][0].metadata["identity"] == "s3"


def test_filter_and_min_score(catalog: EngineCatalog) -> None:
    index, xb = live_index(catalog)
    hits = index.search(xb[0], k=50, filter={"identity": "s1", "cam": 1}).hits[0]
    assert hits and all(h.metadata["identity"] == "s1" and h.metadata["cam"] == 1 for h in hits)
    assert {h.id for h in hits} == {f"item-{i:05d}" for i in range(60) if i % 6 == 1 and i % 2 == 1}
    floor = float(np.sort(xb @ xb[0])[-4])
    assert [h.id for h in index.search(xb[0], k=10, min_score=floor).hits[0]] == [w[0] for w in exact(xb, xb[0])[:4]]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_filter_values_match_only_themselves(catalog: EngineCatalog, hostile: str) -> None:
    index, xb = live_index(catalog)
    hits = index.search(xb[0], k=60, filter={"tag": hostile}).hits[0]
    want = {f"item-{i:05d}" for i in range(60) if HOSTILE[i % len(HOSTILE)] == hostile}
    assert {h.id for h in hits} == want
    assert index.search(xb[0], k=60, filter={hostile: "s1"}).hits[0] == []  # a hostile key matches nothing


def test_filters_that_cannot_be_compared_are_refused_or_empty(catalog: EngineCatalog, engine_name: str) -> None:
    index, xb = live_index(catalog)
    assert index.search(xb[0], k=5, filter={"identity": "s99"}).hits[0] == []
    if engine_name == "milvus":  # pushed down: only JSON scalars
        with pytest.raises(ValueError, match="strings, numbers or booleans"):
            index.search(xb[0], k=5, filter={"identity": ["s1"]})


def test_delete_and_upsert(catalog: EngineCatalog) -> None:
    index, xb = live_index(catalog)
    assert index.delete(["item-00000", "missing"], offset=61) == 1
    assert "item-00000" not in index and len(index) == 59
    assert all(h.id != "item-00000" for h in index.search(xb[0], k=10).hits[0])
    index.upsert("item-00001", xb[0], [{"identity": "moved"}], model_version=V1, offset=62)
    top = index.search(xb[0], k=1).hits[0][0]
    assert (top.id, top.metadata) == ("item-00001", {"identity": "moved"}) and top.score == pytest.approx(1, abs=1e-5)
    assert len(index) == 59 and index.metadata_of("item-00001") == {"identity": "moved"}
    assert index.offset == 62


def test_bad_input_is_refused(catalog: EngineCatalog) -> None:
    index, xb = live_index(catalog, n=6)
    with pytest.raises(DimensionError):
        index.upsert("x", np.ones(DIM + 1, np.float32), model_version=V1)
    with pytest.raises(DimensionError):
        index.search(np.zeros(DIM, np.float32))
    with pytest.raises(ModelVersionError):
        index.upsert("x", xb[0], model_version=V2)
    with pytest.raises(ValueError, match="k must be"):
        index.search(xb[0], k=0)
    with pytest.raises(ValueError, match="ids must be"):
        index.delete([""])


def test_reopen_loses_nothing(engine_name: str, tmp_path: Path) -> None:
    catalog = make_catalog(engine_name, tmp_path)
    index, xb = live_index(catalog)
    index.delete("item-00002", offset=70)
    before = index.search(xb[:3], k=5)
    catalog.close()
    reopened = make_catalog(engine_name, tmp_path)
    try:
        again = reopened.open("face")
        assert again is not None and (again.model_version, again.dim, again.offset) == (V1, DIM, 70)
        assert len(again) == 59 and "item-00002" not in again
        after = again.search(xb[:3], k=5)
        assert [[h.id for h in row] for row in after.hits] == [[h.id for h in row] for row in before.hits]
        assert reopened.open("elsewhere") is None
    finally:
        reopened.close()


def test_version_switch_never_mixes(catalog: EngineCatalog) -> None:
    old, xb = live_index(catalog)
    new = catalog.create("face", V2, DIM)
    new.upsert(ids_for(60), -xb, [{"v": 2}] * 60, model_version=V2, offset=60)
    assert catalog.open("face") is old  # filled beside, not live yet
    assert all(h.metadata.get("v") is None for h in old.search(xb[0], k=60).hits[0])
    catalog.promote("face", new)
    live = catalog.open("face")
    assert live is not None and live.model_version == V2
    hits = live.search(-xb[0], k=60).hits[0]
    assert len(hits) == 60 and all(h.metadata == {"v": 2} for h in hits)
    with pytest.raises(ModelVersionError):
        live.search(xb[0], k=5, model_version=V1)


def test_faiss_and_milvus_agree(tmp_path: Path) -> None:
    faiss_cat, milvus_cat = make_catalog("faiss", tmp_path), make_catalog("milvus", tmp_path)
    try:
        (fi, _), (mi, _) = live_index(faiss_cat, n=200), live_index(milvus_cat, n=200)
        queries = clustered(20, DIM, centres=6, seed=9)
        for options in ({}, {"filter": {"cam": 0}}, {"min_score": 0.5}):
            f, m = fi.search(queries, k=7, **options), mi.search(queries, k=7, **options)
            assert [[h.id for h in r] for r in f.hits] == [[h.id for h in r] for r in m.hits]
            np.testing.assert_allclose(f.D, m.D, atol=1e-5)
    finally:
        faiss_cat.close()
        milvus_cat.close()
