"""In-process dynamic batching: concurrent `await submit(pixels)` calls run as few, larger model runs.

TEI's core/ pattern: requests wait on futures; worker threads own the model and run batches. There is
ONE worker thread per model instance (one ONNX Runtime session each) — two 1-thread sessions side by side
beat one 2-thread session on small models (docs/benchmarks.md). Only one worker gathers at a time, so the others
run their batches meanwhile and the next batch forms while the previous ones compute. The gathering is
work-conserving: a burst is shared fairly among the free workers (one session taking all 32 requests while
the other idles halves CPU throughput), and a worker waits up to `max_delay_ms` for more requests only
while every other worker is busy — a lone request on an idle pool never waits for company. A request
never straddles two batches (the backend splits calls larger than `max_batch` first).

Errors stay with their batch: a failing run fails exactly the requests in it, never the worker. The queue
is bounded in images (`max_queue`): past it `submit` raises `Overloaded` at once (→ 429), so overload
shows as fast refusals instead of unbounded latency. `queue_depth`, `batch_sizes` and the counters are
plain attributes (and `busy_workers`); `on_batch` / `on_queue_depth` hooks feed Prometheus without this
module importing it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.inference.errors import BackendUnavailable, InferenceError, InvalidInput, Overloaded

log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], np.ndarray]  # pixels [B,...] → outputs [B,D], called on one worker thread
BatchHook = Callable[[int, float], None]  # (images in the batch, seconds the run took)
DepthHook = Callable[[int], None]  # images waiting in the queue


@dataclass(slots=True)
class _Request:
    pixels: np.ndarray
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[np.ndarray]
    enqueued_at: float = field(default_factory=time.perf_counter)


Outcome = tuple[asyncio.Future[np.ndarray], np.ndarray | None, BaseException | None]


def _resolve(outcomes: list[Outcome]) -> None:
    """On the requests' loop: complete each future unless its caller stopped waiting."""
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]


def _post(requests: list[_Request], results: list[np.ndarray | None], errors: list[BaseException | None]) -> None:
    """Hand a batch's outcomes to their loops: one wake-up per loop, not one per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for request, result, error in zip(requests, results, errors, strict=True):
        by_loop.setdefault(request.loop, []).append((request.future, result, error))
    for loop, outcomes in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, outcomes)
        except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
            log.debug("dropping %d batch results: their event loop is closed", len(outcomes))


class DynamicBatcher:
    """Batches `submit` calls across one worker thread per runner. Threads start at construction."""

    def __init__(
        self,
        runners: Sequence[Runner],
        *,
        max_batch: int = 32,
        max_delay_ms: float = 2.0,
        max_queue: int = 1024,
        name: str = "batcher",
        on_batch: BatchHook | None = None,
        on_queue_depth: DepthHook | None = None,
    ) -> None:
        if not runners:
            raise ValueError("the batcher needs at least one runner")
        if max_batch < 1 or max_delay_ms < 0 or max_queue < max_batch:
            raise ValueError(f"need max_batch >= 1, max_delay_ms >= 0, max_queue >= max_batch; got "
                             f"{max_batch}, {max_delay_ms}, {max_queue}")
        self.name = name
        self.max_batch = max_batch
        self.max_delay_s = max_delay_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.on_queue_depth = on_queue_depth
        self.batches_run = 0
        self.images_run = 0
        self.failed_batches = 0
        self.rejected = 0
        self.batch_sizes: Counter[int] = Counter()
        self._queue: deque[_Request] = deque()
        self._queued_images = 0
        self._busy = 0  # workers running a batch (guarded by _cond)
        self._closed = False
        self._cond = threading.Condition()
        self._gather_lock = threading.Lock()  # one gatherer at a time: it alone decides each batch's share
        self._stats_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(runner,), name=f"{name}-{i}", daemon=True)
            for i, runner in enumerate(runners)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queue_depth(self) -> int:
        """Images waiting for a worker."""
        return self._queued_images

    @property
    def busy_workers(self) -> int:
        """Workers running a batch right now."""
        return self._busy

    @property
    def healthy(self) -> bool:
        """Open, and every worker thread alive."""
        return not self._closed and all(t.is_alive() for t in self._threads)

    async def submit(self, pixels: np.ndarray) -> np.ndarray:
        """Run `pixels` [n,...] (1 ≤ n ≤ max_batch) in some batch; returns its n output rows."""
        rows = len(pixels)
        if not 1 <= rows <= self.max_batch:
            raise InvalidInput(f"a batcher request holds 1..{self.max_batch} images, got {rows}")
        loop = asyncio.get_running_loop()
        request = _Request(pixels, loop, loop.create_future())
        self._enqueue(request)
        return await request.future

    def _enqueue(self, request: _Request) -> None:
        rows = len(request.pixels)
        with self._cond:
            if self._closed:
                raise BackendUnavailable(f"{self.name} is closed")
            if self._queued_images + rows > self.max_queue:
                self.rejected += 1
                raise Overloaded(f"{self.name}: {self._queued_images} images queued (max {self.max_queue})",
                                 retry_after_s=1.0)
            self._queue.append(request)
            self._queued_images += rows
            depth = self._queued_images
            self._cond.notify()
        self._report_depth(depth)

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Refuse new requests, finish the queued ones, stop the workers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("%s: worker %s still running after %s s", self.name, thread.name, timeout_s)

    # -- worker threads ----------------------------------------------------------------------------

    def _work(self, runner: Runner) -> None:
        while True:
            with self._gather_lock:
                batch = self._take_batch()
            if batch is None:
                return
            try:
                results, errors = self._run(runner, batch)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify()  # a gatherer waiting because everyone was busy can go now
            # Answer only once this worker counts as free: a client that resubmits at once finds it idle.
            _post(batch, results, errors)

    def _pop_live(self) -> _Request | None:
        """The oldest request whose caller is still waiting (cancelled ones are dropped). Holds _cond."""
        while self._queue:
            request = self._queue.popleft()
            self._queued_images -= len(request.pixels)
            if not request.future.done():
                return request
        return None

    def _take_fitting(self, batch: list[_Request], rows: int, cap: int) -> int:
        """Move queued requests into `batch` while they fit in `cap` images, whole; returns the rows. Holds _cond."""
        while self._queue and rows + len(self._queue[0].pixels) <= cap:
            request = self._pop_live()
            if request is not None:
                batch.append(request)
                rows += len(request.pixels)
        return rows

    def _take_batch(self) -> list[_Request] | None:
        """Block for the first request, then form a batch.

        Work-conserving, for several workers: with `idle` workers free (this one included), take a fair
        share, ceil(queued / idle) images, so a burst is split across free sessions instead of one session
        taking it all while the others wait. Wait up to max_delay (from the oldest request's arrival) for
        more only while every other worker is busy: then nobody else could start the waiting requests.
        """
        with self._cond:
            first = None
            while first is None:
                first = self._pop_live()
                if first is None:
                    if self._closed:
                        return None
                    self._cond.wait()
            idle = len(self._threads) - self._busy
            queued = self._queued_images + len(first.pixels)
            share = min(self.max_batch, max(len(first.pixels), -(-queued // idle)))
            batch = [first]
            rows = self._take_fitting(batch, len(first.pixels), share)
            deadline = first.enqueued_at + self.max_delay_s
            while rows < self.max_batch and self._busy == len(self._threads) - 1 and not self._closed:
                if self._queue:
                    taken = self._take_fitting(batch, rows, self.max_batch)
                    if taken == rows:
                        break  # the next request does not fit: it waits for the next batch, whole
                    rows = taken
                    continue
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._busy += 1
            depth = self._queued_images
        self._report_depth(depth)
        return batch

    def _run(self, runner: Runner, batch: list[_Request]) -> tuple[list[np.ndarray | None], list[BaseException | None]]:
        """One model run for the whole batch: its outputs split back per request, or the error for each."""
        rows = [len(r.pixels) for r in batch]
        started = time.perf_counter()
        try:
            pixels = batch[0].pixels if len(batch) == 1 else np.concatenate([r.pixels for r in batch])
            outputs = runner(pixels)
            if len(outputs) != sum(rows):
                raise ValueError(f"the model returned {len(outputs)} rows for {sum(rows)} images")
        except Exception as exc:  # the batch fails, the worker lives on
            log.exception("%s: batch of %d images (%d requests) failed", self.name, sum(rows), len(batch))
            with self._stats_lock:
                self.failed_batches += 1
            errors: list[BaseException | None] = []
            for _ in batch:  # one instance per request: tracebacks are mutated where each is raised
                errors.append(InferenceError(f"model run failed for a batch of {sum(rows)} images: {exc}"))
                errors[-1].__cause__ = exc
            return [None] * len(batch), errors
        elapsed = time.perf_counter() - started
        with self._stats_lock:
            self.batches_run += 1
            self.images_run += sum(rows)
            self.batch_sizes[sum(rows)] += 1
        if self.on_batch is not None:
            self._call_hook(self.on_batch, sum(rows), elapsed)
        bounds = np.cumsum(rows)
        return [outputs[end - n : end] for n, end in zip(rows, bounds, strict=True)], [None] * len(batch)

    def _report_depth(self, depth: int) -> None:
        if self.on_queue_depth is not None:
            self._call_hook(self.on_queue_depth, depth)

    def _call_hook(self, hook: Callable[..., None], *args: object) -> None:
        try:
            hook(*args)
        except Exception:  # a broken metrics hook must not fail requests
            log.exception("%s: metrics hook %r failed", self.name, hook)
