"""The API's bodies as pydantic models: what the gateway answers, and what the client sends.

They mirror the server's OpenAPI schemas field for field (`SERVER_SCHEMAS` maps each model to its schema
name; tests/client/test_openapi_contract.py checks names, required-ness and types against a running server).
Answers ignore fields they do not know, so a newer server does not break an older client; requests forbid
unknown fields, as the server does, so a typo fails here before it is sent.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- answers -----------------------------------------------------------------------------------------

class Task(Answer):
    """A task the gateway serves (GET /v1/tasks)."""

    task: str
    model_name: str
    model_version: str
    version: int
    embedding_dim: int
    input_size: tuple[int, int]
    verification_threshold: float | None
    index_size: int
    index_type: str


class TaskList(Answer):
    tasks: list[Task]


class Embeddings(Answer):
    """One L2-normalised embedding per image, in order."""

    embeddings: list[list[float]]
    dim: int
    model_version: str


class Enrolled(Answer):
    """The ids written, in order."""

    ids: list[str]
    count: int
    model_version: str


class Item(Answer):
    """A stored gallery item (`embedding` only when asked for)."""

    id: str
    metadata: dict[str, Any]
    model_version: str
    image_kept: bool
    created_at: float | None
    updated_at: float | None
    embedding: list[float] | None = None


class Hit(Answer):
    id: str
    score: float
    metadata: dict[str, Any]


class SearchResult(Answer):
    """Hits best first; `no_match` when none reaches the model's calibrated threshold."""

    hits: list[Hit]
    no_match: bool
    threshold: float | None
    model_version: str


class Verification(Answer):
    score: float
    same: bool
    threshold: float
    model_version: str


class IndexStatus(Answer):
    """A task's index: size, type, last build, the rebuild job, recall."""

    task: str
    model_version: str
    dim: int
    type: str
    size: int
    main_size: int
    delta_size: int
    tombstones: int
    offset: int
    built_at: float | None
    last_rebuild_seconds: float | None
    state: str
    detail: str | None = None
    version: str | None = None
    search_params: str | None = None
    last_build_at: float | None = None
    job: dict[str, Any] | None = None
    recall: float | None = None
    canary_recall: float | None = None
    canary_k: int | None = None
    canary_exact: bool | None = None
    rebuilds: int = 0


class RebuildJob(Answer):
    task: str
    job_id: str
    state: str | None
    reason: str
    count: int
    type: str


class ModelStatus(Answer):
    """The model serving a task, the versions the repository holds, the running or last upgrade."""

    task: str
    model_name: str
    model_version: str
    version: int
    embedding_dim: int
    available_versions: list[int]
    loaded_versions: list[int]
    images_kept: bool
    upgrade: dict[str, Any] | None


class Readiness(Answer):
    ready: bool
    checks: dict[str, Any]


class Problem(Answer):
    """RFC 9457 problem details (every error answer); raised as `ufo_client.errors.APIError`."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


# -- requests (JSON: images as base64 text) ----------------------------------------------------------

Base64Image = Annotated[str, Field(min_length=1)]
Vector = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=1)]


def _exactly_one(image: object, embedding: object) -> None:
    if (image is None) == (embedding is None):
        raise ValueError("give exactly one of `image` or `embedding`")


class EmbedRequest(Body):
    images: list[Base64Image] = Field(min_length=1)


class EnrollItem(Body):
    id: Annotated[str, Field(min_length=1, max_length=512)]
    image: Base64Image | None = None
    embedding: Vector | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> EnrollItem:
        _exactly_one(self.image, self.embedding)
        return self


class EnrollBatch(Body):
    items: list[EnrollItem] = Field(min_length=1)


class SearchRequest(Body):
    image: Base64Image | None = None
    embedding: Vector | None = None
    k: int = Field(default=10, ge=1)
    filter: dict[str, Any] | None = None
    min_score: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_source(self) -> SearchRequest:
        _exactly_one(self.image, self.embedding)
        return self


class VerifyRequest(Body):
    image_a: Base64Image
    image_b: Base64Image


class UpgradeRequest(Body):
    version: int | None = Field(default=None, ge=1)
    drop_missing: bool = False


SERVER_SCHEMAS: dict[type[BaseModel], str] = {
    Task: "TaskInfo", TaskList: "TaskList", Embeddings: "EmbedResponse", Enrolled: "EnrollResponse",
    Item: "ItemOut", Hit: "Hit", SearchResult: "SearchResponse", Verification: "VerifyResponse",
    IndexStatus: "IndexInfo", RebuildJob: "RebuildResponse", ModelStatus: "ModelStatus", Readiness: "Readiness",
    Problem: "Problem", EmbedRequest: "EmbedRequest", EnrollItem: "EnrollItem", EnrollBatch: "EnrollBatch",
    SearchRequest: "SearchRequest", VerifyRequest: "VerifyRequest", UpgradeRequest: "UpgradeRequest",
}
