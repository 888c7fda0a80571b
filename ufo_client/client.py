"""`UFOClient` (blocking) and `AsyncUFOClient` (asyncio or trio): the same methods, one over httpx.Client, the
other over httpx.AsyncClient.

Each method is one line: it builds the endpoint's `Call` (ufo_client.calls, shared) and sends it. Sending is
the only part written twice: the retry loop sleeps with time.sleep in one and anyio.sleep in the other.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import anyio
import httpx

from ufo_client import calls
from ufo_client.calls import Call
from ufo_client.errors import UFOConnectionError
from ufo_client.models import (
    Embeddings,
    Enrolled,
    IndexStatus,
    Item,
    ModelStatus,
    Readiness,
    RebuildJob,
    SearchResult,
    Task,
    Verification,
)
from ufo_client.retry import NO_RETRY, RetryPolicy

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"
USER_AGENT = "ufo-client/0.1"


def http_options(base_url: str, api_key: str | None, timeout: float | httpx.Timeout,
                 headers: Mapping[str, str] | None) -> dict[str, Any]:
    """The keyword arguments of httpx.Client / AsyncClient: base URL, API key header, timeout."""
    merged = {"User-Agent": USER_AGENT, **(headers or {})}
    if api_key is not None:
        if not api_key.strip():
            raise ValueError("api_key is empty")
        merged["Authorization"] = f"Bearer {api_key}"
    return {"base_url": base_url, "headers": merged, "timeout": timeout}


def connection_error(exc: httpx.TransportError, request: httpx.Request) -> UFOConnectionError:
    return UFOConnectionError(f"{request.method} {request.url}: {type(exc).__name__}: {exc}")


class UFOClient:
    """A blocking client of the UFO retrieval gateway.

    >>> with UFOClient("http://127.0.0.1:8080", api_key="ufo_...") as client:
    ...     client.enroll("face", id="alice-1", image="alice.jpg", metadata={"person": "alice"})
    ...     client.search("face", image="query.jpg", k=5).hits[0].id

    Images are paths, bytes, binary files, PIL images or numpy arrays. 503 and 429 answers are retried
    after their Retry-After (`retry`, default 3 times); other errors raise `ufo_client.APIError` subclasses.
    """

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None,
                 timeout: float | httpx.Timeout = 60.0, retry: RetryPolicy | None = None,
                 headers: Mapping[str, str] | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self.retry = retry or RetryPolicy()
        self.http = httpx.Client(transport=transport, **http_options(base_url, api_key, timeout, headers))

    def __enter__(self) -> UFOClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def send(self, call: Call[T]) -> T:
        """Send a call, retrying as the policy says, and parse its answer."""
        request, policy = call.request(self.http), self.retry if call.retry else NO_RETRY
        attempt = 0
        while True:
            try:
                response = self.http.send(request)
            except httpx.TransportError as exc:
                raise connection_error(exc, request) from exc
            wait = policy.wait_s(response, attempt)
            if wait is None:
                return call.parse(response)
            time.sleep(wait)
            attempt += 1

    def tasks(self) -> list[Task]:
        """The tasks served: model version, embedding dimension, input size, threshold, index size."""
        return self.send(calls.tasks())

    def embed(self, task: str, images: Iterable[Any]) -> Embeddings:
        """L2-normalised embeddings of a list of images, in order."""
        return self.send(calls.embed(task, images))

    def enroll(self, task: str, id: str, *, image: Any = None, embedding: Any = None,
               metadata: Mapping[str, Any] | None = None) -> Enrolled:
        """Upsert one item from an image or an embedding; searchable when this returns."""
        return self.send(calls.enroll(task, id, image=image, embedding=embedding, metadata=metadata))

    def enroll_many(self, task: str, items: Iterable[Mapping[str, Any]],
                    batch_size: int = calls.DEFAULT_BATCH) -> Enrolled:
        """Upsert many items (mappings with `id`, `image` or `embedding`, `metadata`), `batch_size` per request.

        Each request is atomic on its own; if one fails, the batches before it stay written."""
        return calls.merge_enrolled([self.send(call) for call in calls.enroll_batches(task, items, batch_size)])

    def get(self, task: str, id: str, *, include_embedding: bool = False) -> Item:
        """The stored item (raises NotFound for an unknown id)."""
        return self.send(calls.get(task, id, include_embedding))

    def delete(self, task: str, id: str) -> None:
        """Delete an item; gone from search results when this returns."""
        self.send(calls.delete(task, id))

    def search(self, task: str, *, image: Any = None, embedding: Any = None, k: int = 10,
               filter: Mapping[str, Any] | None = None, min_score: float | None = None) -> SearchResult:
        """The k nearest items to an image or an embedding, with a metadata equality filter and a minimum score."""
        return self.send(calls.search(task, image=image, embedding=embedding, k=k, filter=filter,
                                      min_score=min_score))

    def verify(self, task: str, image_a: Any, image_b: Any) -> Verification:
        """Cosine similarity of two images and `same` at the model's calibrated threshold."""
        return self.send(calls.verify(task, image_a, image_b))

    def index(self, task: str) -> IndexStatus:
        """The task's index: type, size, tombstones, last build, rebuild job, recall."""
        return self.send(calls.index(task))

    def rebuild_index(self, task: str) -> RebuildJob:
        """Queue a background rebuild of the task's index (admin scope)."""
        return self.send(calls.rebuild_index(task))

    def model(self, task: str) -> ModelStatus:
        """The model serving the task, the repository's versions, the running or last upgrade."""
        return self.send(calls.model_status(task))

    def upgrade(self, task: str, version: int | None = None, *, drop_missing: bool = False) -> ModelStatus:
        """Start a model upgrade (admin scope; default: the repository's newest version); poll `model()`."""
        return self.send(calls.upgrade(task, version, drop_missing))

    def ready(self) -> Readiness:
        """The gateway's readiness (`ready` false while a model, the backend or an index is not serving)."""
        return self.send(calls.ready())


class AsyncUFOClient:
    """The asynchronous twin of `UFOClient`: the same methods and arguments, awaited.

    >>> async with AsyncUFOClient("http://127.0.0.1:8080") as client:
    ...     hits = (await client.search("face", image="query.jpg", k=5)).hits
    """

    def __init__(self, base_url: str = DEFAULT_URL, *, api_key: str | None = None,
                 timeout: float | httpx.Timeout = 60.0, retry: RetryPolicy | None = None,
                 headers: Mapping[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.retry = retry or RetryPolicy()
        self.http = httpx.AsyncClient(transport=transport, **http_options(base_url, api_key, timeout, headers))

    async def __aenter__(self) -> AsyncUFOClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, call: Call[T]) -> T:
        """Send a call, retrying as the policy says, and parse its answer."""
        request, policy = call.request(self.http), self.retry if call.retry else NO_RETRY
        attempt = 0
        while True:
            try:
                response = await self.http.send(request)
            except httpx.TransportError as exc:
                raise connection_error(exc, request) from exc
            wait = policy.wait_s(response, attempt)
            if wait is None:
                return call.parse(response)
            await anyio.sleep(wait)
            attempt += 1

    async def tasks(self) -> list[Task]:
        return await self.send(calls.tasks())

    async def embed(self, task: str, images: Iterable[Any]) -> Embeddings:
        return await self.send(calls.embed(task, images))

    async def enroll(self, task: str, id: str, *, image: Any = None, embedding: Any = None,
                     metadata: Mapping[str, Any] | None = None) -> Enrolled:
        return await self.send(calls.enroll(task, id, image=image, embedding=embedding, metadata=metadata))

    async def enroll_many(self, task: str, items: Iterable[Mapping[str, Any]],
                          batch_size: int = calls.DEFAULT_BATCH) -> Enrolled:
        return calls.merge_enrolled([await self.send(call) for call in calls.enroll_batches(task, items, batch_size)])

    async def get(self, task: str, id: str, *, include_embedding: bool = False) -> Item:
        return await self.send(calls.get(task, id, include_embedding))

    async def delete(self, task: str, id: str) -> None:
        await self.send(calls.delete(task, id))

    async def search(self, task: str, *, image: Any = None, embedding: Any = None, k: int = 10,
                     filter: Mapping[str, Any] | None = None,
                     min_score: float | None = None) -> SearchResult:
        return await self.send(calls.search(task, image=image, embedding=embedding, k=k, filter=filter,
                                            min_score=min_score))

    async def verify(self, task: str, image_a: Any, image_b: Any) -> Verification:
        return await self.send(calls.verify(task, image_a, image_b))

    async def index(self, task: str) -> IndexStatus:
        return await self.send(calls.index(task))

    async def rebuild_index(self, task: str) -> RebuildJob:
        return await self.send(calls.rebuild_index(task))

    async def model(self, task: str) -> ModelStatus:
        return await self.send(calls.model_status(task))

    async def upgrade(self, task: str, version: int | None = None, *, drop_missing: bool = False) -> ModelStatus:
        return await self.send(calls.upgrade(task, version, drop_missing))

    async def ready(self) -> Readiness:
        return await self.send(calls.ready())
