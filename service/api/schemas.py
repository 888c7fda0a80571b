"""Request and response bodies of the HTTP API (what clients see; the store's `Item` stays internal).

JSON bodies carry images as base64 strings; the same endpoints take multipart forms with the same field
names (files for images, JSON text for `metadata`, `filter` and `embedding`): see `bodies.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.core.gallery import MAX_ID_LENGTH

# An 8x8 grey PNG: a real, decodable image, so "Try it out" at /docs works as is.
EXAMPLE_IMAGE = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAAAAADhZOFXAAAAEElEQVR4nGNsYIAAJgaKGAAmCACQXTClHgAAAABJRU5ErkJggg=="

Metadata = Annotated[dict[str, Any], Field(description="a JSON object stored with the item; filterable by equality",
                                           examples=[{"person": "s29", "camera": "door-2"}])]
Embedding = Annotated[list[float], Field(min_length=1, description="an embedding instead of an image: the task's "
                                         "dimension, finite values (normalised by the server)")]
# What `bodies.decode_base64` accepts: strict padded base64 of at least one byte, after an optional
# `data:...,` prefix. Only documented (the server's own check keeps its error messages); tests check the two agree.
BASE64_PATTERN = (r"^(data:[^,]*,)?(([A-Za-z0-9+/]{4})+([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
                  r"|[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)$")
# What `gallery.check_id` accepts: no control characters (Unicode category Cc), written as the characters
# themselves (JSON escapes them) since generators read `\u` escapes in patterns differently. (It also refuses
# lone surrogates, which JSON text cannot carry interoperably and JSON Schema does not describe.)
ID_PATTERN = "^[^\x00-\x1f\x7f-\x9f]+$"
Image = Annotated[str, Field(min_length=1, description="base64 image (JPEG, PNG, WebP, BMP, GIF, TIFF, PGM); a "
                             "`data:<type>;base64,` prefix is allowed", examples=[EXAMPLE_IMAGE],
                             json_schema_extra={"pattern": BASE64_PATTERN, "contentEncoding": "base64"})]

ItemId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, examples=["s29_0001"],
                              description="client-chosen string id (the upsert key), no control characters",
                              json_schema_extra={"pattern": ID_PATTERN})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def one_source(example: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Schema extras: "exactly one of `image` or `embedding`, not null" (what `_one_source` enforces), an example."""

    def extra(schema: dict[str, Any]) -> None:
        schema["oneOf"] = [{"required": [name], "properties": {name: {"type": kind}}}
                           for name, kind in (("image", "string"), ("embedding", "array"))]
        schema["examples"] = [example]

    return extra


class EmbedRequest(Strict):
    images: list[Image] = Field(min_length=1, description="base64 images (multipart: files named `images`)",
                              examples=[[EXAMPLE_IMAGE]])


class EmbedResponse(BaseModel):
    embeddings: list[list[float]] = Field(description="one L2-normalised embedding per image, in order")
    dim: int
    model_version: str = Field(examples=["ufo_face/1"])


class EnrollItem(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=one_source(
        {"id": "s29_0001", "image": EXAMPLE_IMAGE, "metadata": {"person": "s29"}}))

    id: ItemId
    image: Image | None = None
    embedding: Embedding | None = None
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> EnrollItem:
        if (self.image is None) == (self.embedding is None):
            raise ValueError("give exactly one of `image` (base64) or `embedding`")
        return self


class EnrollBatch(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"items": [
        {"id": "s29_0001", "image": EXAMPLE_IMAGE, "metadata": {"person": "s29"}},
        {"id": "s29_0002", "image": EXAMPLE_IMAGE, "metadata": {"person": "s29"}}]}]})

    items: list[EnrollItem] = Field(min_length=1, description="many items in one request (upserted in order)")


class EnrollResponse(BaseModel):
    ids: list[str] = Field(description="the ids written, in order")
    count: int
    model_version: str


class ItemOut(BaseModel):
    id: str
    metadata: dict[str, Any]
    model_version: str
    image_kept: bool = Field(description="whether the source image is kept (re-embedding on a model upgrade)")
    created_at: float | None = Field(description="Unix seconds")
    updated_at: float | None = Field(description="Unix seconds")
    embedding: list[float] | None = Field(default=None, description="only with ?include_embedding=true")


class SearchRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=one_source(
        {"image": EXAMPLE_IMAGE, "k": 5, "filter": {"person": "s29"}, "min_score": 0.3}))

    image: Image | None = None
    embedding: Embedding | None = None
    k: int = Field(default=10, ge=1, description="number of hits (at most the server's max_k)")
    filter: dict[str, Any] | None = Field(default=None, description="metadata equality filter: every key must "
                                          "be present with an equal value", examples=[{"person": "s29"}])
    min_score: float | None = Field(default=None, allow_inf_nan=False, description="drop hits scoring below this "
                                    "cosine similarity", examples=[0.3])

    @model_validator(mode="after")
    def _one_source(self) -> SearchRequest:
        if (self.image is None) == (self.embedding is None):
            raise ValueError("give exactly one of `image` (base64) or `embedding`")
        return self


class Hit(BaseModel):
    id: str
    score: float = Field(description="cosine similarity")
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    hits: list[Hit]
    no_match: bool = Field(description="true when no hit reaches the task's calibrated threshold")
    threshold: float | None = Field(description="the model's calibrated verification threshold")
    model_version: str


class VerifyRequest(Strict):
    image_a: Image
    image_b: Image


class VerifyResponse(BaseModel):
    score: float = Field(description="cosine similarity of the two embeddings")
    same: bool = Field(description="score >= threshold")
    threshold: float
    model_version: str


class IndexInfo(BaseModel):
    task: str
    model_version: str
    dim: int
    type: str = Field(description="FAISS factory string of the main index")
    size: int = Field(description="live items")
    main_size: int
    delta_size: int
    tombstones: int
    offset: int = Field(description="store change-log offset the index includes")
    built_at: float | None
    last_rebuild_seconds: float | None
    state: str = Field(description="ready, rebuilding (a background job is queued or running), or unavailable")
    detail: str | None = None
    version: str | None = Field(None, description="version of the rebuilt snapshot serving (None: built at start)")
    search_params: str | None = Field(None, description="tuned operating point (nprobe, efSearch; Milvus: ef)")
    last_build_at: float | None = Field(None, description="when the last background rebuild finished (epoch s)")
    job: dict[str, Any] | None = Field(None, description="the task's current or last rebuild job")
    recall: float | None = Field(None, description="recall@k measured on held-out queries at build time")
    canary_recall: float | None = Field(None, description="recall@k of sampled live queries (recall canary)")
    canary_k: int | None = None
    canary_exact: bool | None = Field(None, description="whether the canary's last round compared with exact search "
                                      "(false: a Milvus collection too large to scan, compared with a wider search)")
    rebuilds: int = Field(0, description="rebuilt snapshots swapped in since the gateway started")


class TaskInfo(BaseModel):
    task: str
    model_name: str
    model_version: str
    version: int
    embedding_dim: int
    input_size: tuple[int, int] = Field(description="[H, W]")
    verification_threshold: float | None
    index_size: int
    index_type: str


class TaskList(BaseModel):
    tasks: list[TaskInfo]


class RebuildResponse(BaseModel):
    task: str
    job_id: str
    state: str | None = Field(description="queued, running, done or failed (poll GET /v1/tasks/{task}/index)")
    reason: str
    count: int = Field(description="live items in the index now")
    type: str = Field(description="FAISS factory string of the index serving now")


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Any]


class Problem(BaseModel):
    """RFC 9457 problem details: every error response."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


BODY_MODELS: tuple[type[BaseModel], ...] = (EmbedRequest, EnrollItem, EnrollBatch, SearchRequest, VerifyRequest)


class UpgradeRequest(Strict):
    version: int | None = Field(default=None, ge=1, description="the version of the task's model to serve (default: "
                                "the highest usable one in the model repository)")
    drop_missing: bool = Field(default=False, description="delete items whose source image is not kept at the "
                               "cut-over (their clients re-enroll them) instead of refusing the upgrade")


class ModelStatus(BaseModel):
    task: str
    model_name: str
    model_version: str = Field(description="'<model_name>/<version>' serving now (queries and enrollment)")
    version: int
    embedding_dim: int
    available_versions: list[int] = Field(description="versions in the model repository, highest first")
    loaded_versions: list[int] = Field(description="versions loaded in the inference backend now (two during an "
                                       "upgrade and for a short while after its cut-over)")
    images_kept: bool = Field(description="whether enrolled images are kept; without them a model upgrade cannot "
                              "re-embed the gallery and clients must re-enroll it")
    upgrade: dict[str, Any] | None = Field(description="the running or last model upgrade: state (running, done, "
                                           "failed), model_version, from, embedded, missing, error")
