"""Coalesced search: same results as one-by-one, in fewer FAISS calls."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.index import CoalescingSearcher, DimensionError, VectorIndex
from tests.service.index.data import clustered, ids_for

pytestmark = pytest.mark.anyio

V = "v1"


@pytest.fixture(scope="module")
def index() -> VectorIndex:
    xb = clustered(3000, 32, seed=6)
    index = VectorIndex.build(ids_for(3000), xb, [{"g": i % 4} for i in range(3000)],
                              model_version=V, factory="Flat")
    index.upsert(["extra-1", "extra-2"], clustered(2, 32, seed=7), model_version=V)  # a non-empty delta
    return index


async def test_64_concurrent_searches_equal_one_by_one_in_fewer_faiss_calls(index: VectorIndex) -> None:
    xq = clustered(64, 32, seed=8)
    calls0 = index.stats.faiss_calls
    one_by_one = [index.search(q, 10) for q in xq]
    calls_serial = index.stats.faiss_calls - calls0

    async with CoalescingSearcher(index, max_batch=64, max_delay_s=0.05) as searcher:
        calls0 = index.stats.faiss_calls
        coalesced = await asyncio.gather(*(searcher.search(q, 10) for q in xq))
        calls_coalesced = index.stats.faiss_calls - calls0
        batches = searcher.batches_run

    assert [r.hits for r in coalesced] == [r.hits for r in one_by_one]
    for a, b in zip(coalesced, one_by_one, strict=True):
        np.testing.assert_allclose(a.D, b.D, rtol=1e-6)  # BLAS (batched) vs SIMD (single) sums
    assert calls_serial == 2 * 64  # main + delta per query
    assert batches < 64 and calls_coalesced == 2 * batches
    assert calls_coalesced <= calls_serial // 8, (calls_coalesced, batches)


async def test_each_request_keeps_its_own_options(index: VectorIndex) -> None:
    xq = clustered(12, 32, seed=9)
    options = [{"k": 1 + i % 5, "filter": {"g": i % 4} if i % 2 else None, "min_score": 0.6 if i % 3 == 0 else None}
               for i in range(12)]
    async with CoalescingSearcher(index, max_batch=64, max_delay_s=0.05, omp_threads=1) as searcher:
        got = await asyncio.gather(*(searcher.search(q, **o) for q, o in zip(xq, options, strict=True)))
        batches = searcher.batches_run
    for q, o, result in zip(xq, options, got, strict=True):
        assert result.hits == index.search(q, **o).hits and result.D.shape == (1, o["k"])
    assert batches < 12


async def test_multi_row_requests_and_a_bad_request_fails_alone(index: VectorIndex) -> None:
    xq = clustered(5, 32, seed=10)
    async with CoalescingSearcher(index, max_batch=4, max_delay_s=0.01) as searcher:
        good = searcher.search(xq, 3)
        bad = searcher.search(np.ones(31, np.float32), 3)
        wrong_version = searcher.search(xq[0], 3, model_version="v0")
        results = await asyncio.gather(good, bad, wrong_version, return_exceptions=True)
    assert results[0].hits == index.search(xq, 3).hits
    assert isinstance(results[1], DimensionError) and "dimension 31" in str(results[1])
    assert isinstance(results[2], ValueError) and "model version" in str(results[2])


async def test_closed_searcher_refuses(index: VectorIndex) -> None:
    searcher = CoalescingSearcher(index)
    await searcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        await searcher.search(np.ones(32, np.float32))
