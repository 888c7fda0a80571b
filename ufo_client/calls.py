"""One place that knows the API: each endpoint as a `Call` (method, path, body, how to read the answer).

`UFOClient` and `AsyncUFOClient` only send these and sleep between retries, so the sync and async clients
cannot drift apart. Arguments are validated here, before anything is sent: a bad one raises ValueError or
TypeError naming it; what only the server can judge comes back as a typed `APIError`.

One image travels as the request body itself (`application/octet-stream`: no base64, no JSON to build or
parse, a third fewer bytes) wherever the API takes it: embedding one image, searching by an image without a
filter (`k`, `min_score` in the query string), enrolling one item from an image (`PUT .../items/{id}`).
"""

from __future__ import annotations

import base64
import json as jsonlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from ufo_client.errors import UnexpectedResponse, error_from_response
from ufo_client.images import image_base64, image_bytes, vector
from ufo_client.models import (
    Embeddings,
    EmbedRequest,
    Enrolled,
    EnrollItem,
    IndexStatus,
    Item,
    ModelStatus,
    Readiness,
    RebuildJob,
    SearchRequest,
    SearchResult,
    Task,
    TaskList,
    UpgradeRequest,
    Verification,
    VerifyRequest,
)
from ufo_client.retry import retry_after_s

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
DEFAULT_BATCH = 256  # the server's default max_items_per_request
RAW = {"Content-Type": "application/octet-stream"}
IN_BODY = "(the request body)"  # stands in for an image sent raw while the other arguments are validated


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the function that turns its answer into a result (or raises the typed error)."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: Mapping[str, Any] | None = field(default=None)
    retry: bool = True
    content: bytes | None = None  # a raw body (the image itself), sent as application/octet-stream

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        if self.content is not None:
            return http.build_request(self.method, self.path, content=self.content, params=self.params, headers=RAW)
        return http.build_request(self.method, self.path, json=self.json, params=self.params)


def check(response: httpx.Response, ok: Iterable[int] = ()) -> None:
    """Raise the typed error for an error answer (statuses in `ok` are not errors)."""
    if response.is_success or response.status_code in ok:
        return
    raise error_from_response(response, retry_after_s(response.headers.get("retry-after")))


def model(kind: type[M], ok: Iterable[int] = ()) -> Callable[[httpx.Response], M]:
    """A parser: check the status, then validate the JSON body as `kind`."""
    def parse(response: httpx.Response) -> M:
        check(response, ok)
        try:
            return kind.model_validate_json(response.content)
        except ValidationError as exc:
            raise UnexpectedResponse(f"{response.request.method} {response.request.url.path}: the answer is not "
                                     f"a {kind.__name__}: {exc}", response) from None
    return parse


def no_content(response: httpx.Response) -> None:
    check(response)


def segment(value: str, what: str) -> str:
    """A task name or item id as one URL path segment (any character, including '/', '?', '%' and '..')."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if set(value) == {"."} else quoted  # keep '.'/'..' from being resolved


def task_path(task: str, *rest: str) -> str:
    return "/".join(["/v1/tasks", segment(task, "task"), *rest])


def body(request: BaseModel) -> dict[str, Any]:
    return request.model_dump(mode="json", exclude_none=True)


# -- endpoints ---------------------------------------------------------------------------------------

def tasks() -> Call[list[Task]]:
    parse = model(TaskList)
    return Call("GET", "/v1/tasks", lambda response: parse(response).tasks)


def embed(task: str, images: Iterable[Any]) -> Call[Embeddings]:
    if isinstance(images, str | bytes | bytearray | memoryview) or hasattr(images, "shape") \
            or not isinstance(images, Iterable):
        raise TypeError("images must be a list of images (paths, bytes, PIL images or arrays), not one image")
    images = list(images)
    if len(images) == 1:
        return Call("POST", task_path(task, "embed"), model(Embeddings), content=image_bytes(images[0]))
    request = EmbedRequest(images=[image_base64(image) for image in images])
    return Call("POST", task_path(task, "embed"), model(Embeddings), json=body(request))


def enroll_item(id: str, image: Any = None, embedding: Any = None,
                metadata: Mapping[str, Any] | None = None) -> EnrollItem:
    return EnrollItem(id=id, image=None if image is None else image_base64(image),
                      embedding=None if embedding is None else vector(embedding), metadata=dict(metadata or {}))


def enroll(task: str, id: str, *, image: Any = None, embedding: Any = None,
           metadata: Mapping[str, Any] | None = None) -> Call[Enrolled]:
    if image is None:
        return Call("POST", task_path(task, "items"), model(Enrolled), json=body(enroll_item(id, None, embedding,
                                                                                               metadata)))
    item = EnrollItem(id=id, image=IN_BODY, embedding=None if embedding is None else vector(embedding),
                      metadata=dict(metadata or {}))  # validates the arguments (one of image or embedding)
    params = {"metadata": jsonlib.dumps(item.metadata, allow_nan=False)} if item.metadata else None
    return Call("PUT", task_path(task, "items", segment(id, "id")), model(Enrolled), params=params,
                content=image_bytes(image))


def enroll_batches(task: str, items: Iterable[Mapping[str, Any]], batch_size: int = DEFAULT_BATCH
                   ) -> Iterator[Call[Enrolled]]:
    """Calls of at most `batch_size` items each; images are read one batch at a time."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    path, batch = task_path(task, "items"), []
    for number, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(f"items[{number}]: expected a mapping with id, image or embedding, metadata; "
                            f"got {type(item).__name__}")
        try:
            batch.append(body(enroll_item(**item)))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"items[{number}]: {exc}") from None
        if len(batch) == batch_size:
            yield Call("POST", path, model(Enrolled), json={"items": batch})
            batch = []
    if batch:
        yield Call("POST", path, model(Enrolled), json={"items": batch})


def merge_enrolled(results: list[Enrolled]) -> Enrolled:
    """The answers of several batches as one (the model version of the last)."""
    if not results:
        raise ValueError("enroll_many needs at least one item")
    ids = [item_id for result in results for item_id in result.ids]
    return Enrolled(ids=ids, count=len(ids), model_version=results[-1].model_version)


def get(task: str, id: str, include_embedding: bool = False) -> Call[Item]:
    return Call("GET", task_path(task, "items", segment(id, "id")), model(Item),
                params={"include_embedding": bool(include_embedding)})


def delete(task: str, id: str) -> Call[None]:
    return Call("DELETE", task_path(task, "items", segment(id, "id")), no_content)


def search(task: str, *, image: Any = None, embedding: Any = None, k: int = 10,
           filter: Mapping[str, Any] | None = None, min_score: float | None = None) -> Call[SearchResult]:
    raw = None if image is None else image_bytes(image)
    request = SearchRequest(image=None if raw is None else IN_BODY, k=k, min_score=min_score,
                            embedding=None if embedding is None else vector(embedding),
                            filter=None if filter is None else dict(filter))  # validates the arguments
    if raw is not None and filter is None:  # the image as the body, the options in the query string
        return Call("POST", task_path(task, "search"), model(SearchResult), content=raw,
                    params=body(request.model_copy(update={"image": None})))
    if raw is not None:  # a filter needs the JSON body
        request = request.model_copy(update={"image": base64.b64encode(raw).decode("ascii")})
    return Call("POST", task_path(task, "search"), model(SearchResult), json=body(request))


def verify(task: str, image_a: Any, image_b: Any) -> Call[Verification]:
    request = VerifyRequest(image_a=image_base64(image_a), image_b=image_base64(image_b))
    return Call("POST", task_path(task, "verify"), model(Verification), json=body(request))


def index(task: str) -> Call[IndexStatus]:
    return Call("GET", task_path(task, "index"), model(IndexStatus))


def rebuild_index(task: str) -> Call[RebuildJob]:
    return Call("POST", task_path(task, "index", "rebuild"), model(RebuildJob))


def model_status(task: str) -> Call[ModelStatus]:
    return Call("GET", task_path(task, "model"), model(ModelStatus))


def upgrade(task: str, version: int | None = None, drop_missing: bool = False) -> Call[ModelStatus]:
    request = UpgradeRequest(version=version, drop_missing=drop_missing)
    return Call("POST", task_path(task, "model", "upgrade"), model(ModelStatus), json=body(request))


def ready() -> Call[Readiness]:
    """GET /readyz: 503 means "not ready" here, an answer rather than an error (and not retried)."""
    return Call("GET", "/readyz", model(Readiness, ok=(503,)), retry=False)
