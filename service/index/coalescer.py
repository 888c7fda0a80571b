"""Coalesced search: concurrent asyncio requests run as one batched FAISS call on one thread.

Why one dedicated thread: FAISS GPU indexes are not thread-safe even for searches, and a batch is
where both GPU and CPU (BLAS for exact search) get their speed. Requests are validated on the
caller's side (a bad request fails alone, never its batch), queued, and awaited on a future.
The thread takes the first waiting request, then whatever else is queued, waiting at most
`max_delay_s` for more, up to `max_batch` query rows; while one batch runs the next one forms.
Each request keeps its own k / filter / min_score: the batch shares the FAISS calls only.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from service.index.search import Query, SearchResult

if TYPE_CHECKING:
    from service.index.engine import IndexEngine

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Request:
    xq: np.ndarray  # (n, d) prepared
    query: Query
    index: IndexEngine  # the index it was prepared (model version checked) against: searched in that one
    future: asyncio.Future[SearchResult]
    loop: asyncio.AbstractEventLoop


_STOP = object()


def _resolve(request: _Request, result: SearchResult | None, error: BaseException | None) -> None:
    """Runs on the request's event loop: complete its future unless the caller gave up."""
    if request.future.done():
        return
    if error is not None:
        request.future.set_exception(error)
    else:
        request.future.set_result(result)  # type: ignore[arg-type]


def _post(request: _Request, result: SearchResult | None, error: BaseException | None) -> None:
    """Hand a result to the request's loop from the search thread (a closed loop is skipped)."""
    try:
        request.loop.call_soon_threadsafe(_resolve, request, result, error)
    except RuntimeError:
        log.warning("dropping a search result: its event loop is closed")


class CoalescingSearcher:
    """Async front of one index engine (`VectorIndex`, `MilvusIndex`).
    Use `async with CoalescingSearcher(index) as s:`
    or call `close()`; `index` may be replaced (model upgrade) by assigning `searcher.index`: a request
    already accepted is still searched in the index it was checked against (never a mix of models).
    `omp_threads` pins FAISS's OpenMP threads for this searcher's thread (None: FAISS default);
    on small shared CPUs one thread avoids OpenMP's per-call overhead on tiny batches."""

    def __init__(self, index: IndexEngine | None = None, *, max_batch: int = 64, max_delay_s: float = 0.002,
                 omp_threads: int | None = None, name: str = "index-search"):
        if max_batch <= 0:
            raise ValueError(f"max_batch must be positive, got {max_batch}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must be >= 0, got {max_delay_s}")
        self.index = index
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.omp_threads = omp_threads  # OpenMP threads of the search thread only (per-thread setting)
        self.batches_run = 0
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def __aenter__(self) -> CoalescingSearcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def search(
        self,
        xq: np.ndarray,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,  # noqa: A002 - the API's word
        min_score: float | None = None,
        model_version: str | None = None,
        index: IndexEngine | None = None,
    ) -> SearchResult:
        """Like `VectorIndex.search`, batched with concurrent callers; in `index` when given (the one a
        request's model serves: a `Serving` pair), else in `self.index`."""
        if self._closed:
            raise RuntimeError("searcher is closed")
        query = Query(k, filter, min_score)
        index = self.index if index is None else index
        if index is None:
            raise RuntimeError("searcher has no index: pass one")
        prepared = index.prepare_queries(xq, model_version)
        loop = asyncio.get_running_loop()
        request = _Request(prepared, query, index, loop.create_future(), loop)
        self._queue.put(request)
        return await request.future

    async def close(self) -> None:
        """Finish queued requests, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    # -- the search thread ---------------------------------------------------------------------

    def _run(self) -> None:
        if self.omp_threads:
            faiss.omp_set_num_threads(self.omp_threads)
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._gather(first)  # type: ignore[arg-type]
            self._execute(batch)
            if stop:
                return

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """The first request plus whatever arrives within max_delay_s, up to max_batch rows."""
        batch, rows = [first], len(first.xq)
        deadline = time.monotonic() + self.max_delay_s
        while rows < self.max_batch:
            timeout = deadline - time.monotonic()
            try:
                nxt = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                return batch, True
            batch.append(nxt)  # type: ignore[arg-type]
            rows += len(nxt.xq)  # type: ignore[union-attr]
        return batch, False

    def _execute(self, batch: list[_Request]) -> None:
        if any(r.index is not batch[0].index for r in batch):  # only across a model cut-over
            for index in {id(r.index): r.index for r in batch}.values():
                self._execute([r for r in batch if r.index is index])
            return
        t0 = time.perf_counter()
        try:
            xq = batch[0].xq if len(batch) == 1 else np.concatenate([r.xq for r in batch])
            queries = [r.query for r in batch for _ in range(len(r.xq))]
            hits = batch[0].index.search_prepared(xq, queries)
        except Exception as exc:  # one failure fails its batch, never the thread
            log.exception("search batch of %d requests failed", len(batch))
            for request in batch:
                _post(request, None, exc)
            return
        self.batches_run += 1
        start = 0
        for request in batch:
            n = len(request.xq)
            result = SearchResult.from_hits(hits[start : start + n], request.query.k)
            start += n
            _post(request, result, None)
        log.debug("searched %d requests (%d rows) in %.2f ms", len(batch), len(xq), 1e3 * (time.perf_counter() - t0))
