"""The dynamic batcher on its own: coalescing, error isolation, a bounded queue, the metrics hooks."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.inference.batcher import DynamicBatcher
from service.inference.errors import BackendUnavailable, InferenceError, InvalidInput, Overloaded

POISON = -999.0


def row_sums(pixels: np.ndarray) -> np.ndarray:
    """A stand-in model: one output row per input row, failing on a poisoned batch."""
    if (pixels == POISON).any():
        raise RuntimeError("poisoned input")
    return pixels.reshape(len(pixels), -1).sum(axis=1, keepdims=True)


def requests(n: int) -> list[np.ndarray]:
    return [np.full((1, 2, 2), float(i), dtype=np.float32) for i in range(n)]


@pytest.mark.anyio
async def test_concurrent_requests_coalesce_and_get_their_own_rows() -> None:
    sizes: list[int] = []
    batcher = DynamicBatcher([row_sums], max_batch=8, max_delay_ms=200, on_batch=lambda n, s: sizes.append(n))
    try:
        results = await asyncio.gather(*(batcher.submit(x) for x in requests(20)))
    finally:
        batcher.close()
    assert [float(r[0, 0]) for r in results] == [4.0 * i for i in range(20)]
    assert sizes == [8, 8, 4] and batcher.batches_run == 3 and batcher.images_run == 20
    assert batcher.batch_sizes == {8: 2, 4: 1}


@pytest.mark.anyio
async def test_a_failing_batch_fails_only_its_requests() -> None:
    batcher = DynamicBatcher([row_sums], max_batch=4, max_delay_ms=200)
    batch = requests(8)
    batch[1][:] = POISON  # lands in the first batch (requests 0-3)
    try:
        results = await asyncio.gather(*(batcher.submit(x) for x in batch), return_exceptions=True)
        assert batcher.healthy  # the worker survived the failure
    finally:
        batcher.close()
    assert all(isinstance(r, InferenceError) and "poisoned input" in str(r) for r in results[:4])
    assert [float(r[0, 0]) for r in results[4:]] == [4.0 * i for i in range(4, 8)]
    assert batcher.failed_batches == 1 and batcher.batches_run == 1


@pytest.mark.anyio
async def test_full_queue_rejects_with_overloaded() -> None:
    started, release = threading.Event(), threading.Event()
    depths: list[int] = []

    def blocked(pixels: np.ndarray) -> np.ndarray:
        started.set()
        release.wait(10)
        return row_sums(pixels)

    batcher = DynamicBatcher([blocked], max_batch=1, max_delay_ms=0, max_queue=2, on_queue_depth=depths.append)
    try:
        running = asyncio.ensure_future(batcher.submit(requests(1)[0]))
        assert await asyncio.to_thread(started.wait, 10)  # the worker holds request 0
        queued = [asyncio.ensure_future(batcher.submit(x)) for x in requests(3)[1:]]
        await asyncio.sleep(0)  # let both enqueue
        assert batcher.queue_depth == 2
        with pytest.raises(Overloaded, match="2 images queued"):
            await batcher.submit(requests(1)[0])
        release.set()
        await asyncio.gather(running, *queued)
    finally:
        release.set()
        batcher.close()
    assert batcher.rejected == 1 and batcher.queue_depth == 0 and max(depths) == 2 and depths[-1] == 0


@pytest.mark.anyio
async def test_request_size_and_closed_batcher() -> None:
    batcher = DynamicBatcher([row_sums], max_batch=2)
    with pytest.raises(InvalidInput, match="1..2 images"):
        await batcher.submit(np.zeros((3, 2, 2), np.float32))
    batcher.close()
    assert not batcher.healthy
    with pytest.raises(BackendUnavailable, match="closed"):
        await batcher.submit(np.zeros((1, 2, 2), np.float32))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one runner"):
        DynamicBatcher([])
    with pytest.raises(ValueError, match="max_queue >= max_batch"):
        DynamicBatcher([row_sums], max_batch=8, max_queue=4)


@pytest.mark.anyio
async def test_a_burst_is_shared_by_idle_workers_and_a_lone_request_does_not_wait() -> None:
    threads: list[str] = []

    def named(pixels: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        time.sleep(0.02)  # a run takes a while, as a model's does: the other worker gets its turn to gather
        return row_sums(pixels)

    batcher = DynamicBatcher([named, named], max_batch=32, max_delay_ms=1000, name="pool")
    try:
        started = asyncio.get_running_loop().time()
        await batcher.submit(requests(1)[0])  # both workers idle: nobody waits for company
        assert asyncio.get_running_loop().time() - started < 0.5
        # A burst that is all queued before either worker looks (as when one loop pass resubmits a whole
        # batch's clients). White-box: holding the batcher's re-entrant lock keeps the workers off meanwhile.
        with batcher._cond:
            pending = [asyncio.ensure_future(batcher.submit(x)) for x in requests(32)]
            while batcher.queue_depth < 32:
                await asyncio.sleep(0)
        results = await asyncio.gather(*pending)
    finally:
        batcher.close()
    assert [float(r[0, 0]) for r in results] == [4.0 * i for i in range(32)]
    assert batcher.batch_sizes == {1: 1, 16: 2}, "32 queued images on 2 idle workers: 16 each"
    assert set(threads[1:]) == {"pool-0", "pool-1"}
