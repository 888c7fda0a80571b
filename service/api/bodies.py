"""Request bodies: JSON (images as base64), multipart forms (images as files), or the raw image itself.

FastAPI parses a body for one content type only, so these readers take the raw `Request`, dispatch on its
content type and validate with the models in `schemas.py` either way. What comes out is plain data with
image bytes decoded (the core's `ItemInput`, `SearchInput`, ...). `openapi_body` documents every form for /docs.
Multipart text fields holding structure (`metadata`, `filter`) are JSON text; an embedding needs a JSON body.
`application/octet-stream` (embed, search, and `PUT .../items/{id}`) is the one image's file, as is: no
base64, no JSON, no form parsing; the options of a search then come as query parameters (`SearchOptions`).
"""

from __future__ import annotations

import binascii
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from service.api.errors import ApiError, describe_validation, invalid
from service.api.schemas import (
    ID_PATTERN,
    EmbedRequest,
    EnrollBatch,
    EnrollItem,
    SearchRequest,
    VerifyRequest,
)
from service.config import Limits
from service.core.gallery import ItemInput, SearchInput

M = TypeVar("M", bound=BaseModel)
_PLACEHOLDER = "file"  # stands in for an uploaded file while the form is validated as the JSON model
_JSON_FIELDS = ("metadata", "filter")
RAW = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """`k` and `min_score` from the query string: the options of a raw-image search, and the defaults of a JSON
    or multipart one (a field in the body takes precedence)."""

    k: int | None = None
    min_score: float | None = None


def decode_base64(text: str, where: str) -> bytes:
    """Strict base64 of at least one byte (a `data:...,` prefix is allowed): exactly `schemas.BASE64_PATTERN`,
    which the OpenAPI document publishes (a test checks the two agree); 422 naming the field otherwise.
    binascii's strict mode does the checking: running the pattern over a whole image cost 5% of a request."""
    if text.startswith("data:"):
        text = text.partition(",")[2] if "," in text else "!"
    try:
        if len(text) % 4:  # strict mode lets a stray '=' after whole groups through
            raise binascii.Error("not whole groups of 4 characters")
        data = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError) as exc:  # (UnicodeEncodeError is a ValueError)
        reason = "" if isinstance(exc, UnicodeError) else f" ({exc})"
        raise invalid(f"{where}: not valid base64{reason}: the alphabet A-Z a-z 0-9 + /, whole groups of 4 "
                      "characters, '=' padding only at the end") from None
    if not data:
        raise invalid(f"{where}: empty; give the base64 of the image file")
    return data


def validate(model: type[M], data: Any) -> M:
    """The model from JSON bytes or already-parsed JSON, or 422 listing what is wrong."""
    try:
        if isinstance(data, bytes | bytearray):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise invalid(describe_validation(errors)) from None


def content_kind(request: Request, raw: bool = False) -> str:
    """'json', 'form' or (where `raw` is allowed) 'raw' from Content-Type (no header: JSON); 415 otherwise."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media or media == "application/json" or media.endswith("+json"):
        return "json"
    if media in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return "form"
    if raw and media == RAW:
        return "raw"
    accepted = f"application/json, multipart/form-data{' or ' + RAW if raw else ''}"
    raise ApiError(415, f"unsupported Content-Type {media!r}: send {accepted}")


async def read_raw(request: Request) -> bytes:
    """The body as the image file itself (application/octet-stream); 422 when it is empty."""
    data = await request.body()
    if not data:
        raise invalid(f"body: empty; with Content-Type {RAW} the body is the image file's bytes")
    return data


async def read_form(request: Request, limits: Limits) -> FormData:
    """The parsed form, bounded by the limits (a malformed form is a 400, not a crash)."""
    try:
        return await request.form(max_files=limits.max_images_per_request + 2, max_fields=64,
                                  max_part_size=limits.max_body_bytes)
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart raises several types for broken input
        raise ApiError(400, f"malformed form data: {getattr(exc, 'detail', exc)}") from None


async def form_value(value: str | UploadFile, where: str) -> bytes | str:
    """An uploaded file's bytes, or a text field as is."""
    return await value.read() if isinstance(value, UploadFile) else value


async def image_field(value: str | UploadFile, where: str) -> bytes:
    """A file's bytes, or a text field holding base64."""
    data = await form_value(value, where)
    return data if isinstance(data, bytes) else decode_base64(data, where)


def form_dict(form: FormData, images: Sequence[str]) -> dict[str, Any]:
    """The form as the JSON model's dict: image fields replaced by a placeholder, JSON text fields parsed."""
    data: dict[str, Any] = {}
    if "embedding" in form:
        raise invalid("body.embedding: a multipart form carries the image as a file; send an embedding in a JSON "
                      "body")
    repeated = sorted(key for key, count in Counter(key for key, _ in form.multi_items()).items() if count > 1)
    if repeated:
        raise invalid(f"body.{repeated[0]}: given {len(form.getlist(repeated[0]))} times; give it once")
    for key in form:
        if key in images:
            data[key] = _PLACEHOLDER
            continue
        value = form.get(key)
        if isinstance(value, UploadFile):
            raise invalid(f"body.{key}: expected a text field, got a file")
        data[key] = value
        if key in _JSON_FIELDS:
            try:
                data[key] = json.loads(value)
            except ValueError:
                raise invalid(f"body.{key}: not valid JSON text") from None
    return data


async def read_embed(request: Request, limits: Limits) -> list[bytes]:
    """Images to embed, in order (a raw body is one image)."""
    kind = content_kind(request, raw=True)
    if kind == "raw":
        return [await read_raw(request)]
    if kind == "json":
        body = validate(EmbedRequest, await request.body())
        images = [decode_base64(text, f"images[{i}]") for i, text in enumerate(body.images)]
    else:
        values = (await read_form(request, limits)).getlist("images")
        if not values:
            raise invalid("body.images: give at least one image (files named `images`)")
        images = [await image_field(v, f"images[{i}]") for i, v in enumerate(values)]
    if len(images) > limits.max_images_per_request:
        raise invalid(f"{len(images)} images in one request; the limit is {limits.max_images_per_request}")
    return images


def _item_input(item: EnrollItem, image: bytes | None) -> ItemInput:
    return ItemInput(item.id, image, item.embedding, item.metadata)


async def read_enroll(request: Request, limits: Limits) -> list[ItemInput]:
    """One item (`{"id": ...}` or a form) or a batch (`{"items": [...]}`)."""
    if content_kind(request) == "form":
        form = await read_form(request, limits)
        item = validate(EnrollItem, form_dict(form, ["image"]))
        image = await image_field(form["image"], "image") if item.image is not None else None
        return [_item_input(item, image)]
    raw = await request.body()
    try:  # parse once; a JSON error is left for the model to report
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw
    if not (isinstance(parsed, dict) and "items" in parsed):
        item = validate(EnrollItem, parsed)
        return [_item_input(item, item.image and decode_base64(item.image, "image"))]
    batch = validate(EnrollBatch, parsed)
    if len(batch.items) > limits.max_items_per_request:
        raise invalid(f"{len(batch.items)} items in one request; the limit is {limits.max_items_per_request}")
    return [_item_input(it, it.image and decode_base64(it.image, f"items[{i}].image"))
            for i, it in enumerate(batch.items)]


async def read_put_item(request: Request, item_id: str) -> ItemInput:
    """`PUT .../items/{id}`: the raw image as the body, `metadata` as JSON text in the query string."""
    if content_kind(request, raw=True) != "raw":
        raise ApiError(415, f"PUT .../items/{{id}} takes the image file as {RAW}; send JSON or multipart bodies "
                       "to POST .../items")
    text = request.query_params.get("metadata")
    metadata: Any = {}
    if text is not None:
        try:
            metadata = json.loads(text)
        except ValueError:
            raise invalid("query.metadata: not valid JSON text") from None
        if not isinstance(metadata, dict):
            raise invalid(f"query.metadata: expected a JSON object, got {type(metadata).__name__}")
    return ItemInput(item_id, await read_raw(request), None, metadata)


async def read_search(request: Request, limits: Limits, options: SearchOptions = SearchOptions()) -> SearchInput:
    """A query image or embedding with its options (body fields first, then the query string's)."""
    image: bytes | None = None
    if options.k is not None:  # checked even where the body's `k` takes precedence
        check_k(options.k, limits)
    kind = content_kind(request, raw=True)
    if kind == "raw":
        k = options.k or SearchRequest.model_fields["k"].default
        check_k(k, limits)
        return SearchInput(await read_raw(request), None, k, None, options.min_score)
    if kind == "json":
        body = validate(SearchRequest, await request.body())
        if body.image is not None:
            image = decode_base64(body.image, "image")
    else:
        form = await read_form(request, limits)
        body = validate(SearchRequest, form_dict(form, ["image"]))
        if body.image is not None:
            image = await image_field(form["image"], "image")
    k = body.k if "k" in body.model_fields_set or options.k is None else options.k
    check_k(k, limits)
    min_score = body.min_score if "min_score" in body.model_fields_set else options.min_score
    return SearchInput(image, body.embedding, k, body.filter, min_score)


def check_k(k: int, limits: Limits) -> None:
    if k > limits.max_k:
        raise invalid(f"k: {k} is above the limit of {limits.max_k} hits per query")


async def read_verify(request: Request, limits: Limits) -> tuple[bytes, bytes]:
    """The two images to compare."""
    if content_kind(request) == "json":
        body = validate(VerifyRequest, await request.body())
        return decode_base64(body.image_a, "image_a"), decode_base64(body.image_b, "image_b")
    form = await read_form(request, limits)
    validate(VerifyRequest, form_dict(form, ["image_a", "image_b"]))
    return await image_field(form["image_a"], "image_a"), await image_field(form["image_b"], "image_b")


# -- OpenAPI ---------------------------------------------------------------------------------------

_FILE = {"type": "string", "format": "binary"}
# Structured fields travel as JSON text parts (`encoding` says so); `_JSON_FIELDS` parses them. A form carries its
# image as a file part, always (an embedding goes in a JSON body): no oneOf, whose negations schemathesis builds
# into valid requests when it sends a real image file.
_OBJECT = {"type": "object", "description": "JSON object"}
FORMS: dict[str, dict[str, Any]] = {
    "EmbedRequest": {"type": "object", "additionalProperties": False, "required": ["images"],
                     "properties": {"images": {"type": "array", "items": _FILE, "minItems": 1}}},
    "EnrollItem": {"type": "object", "additionalProperties": False, "required": ["id", "image"], "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 512, "pattern": ID_PATTERN}, "image": _FILE,
        "metadata": _OBJECT}},
    "SearchRequest": {"type": "object", "additionalProperties": False, "required": ["image"], "properties": {
        "image": _FILE, "k": {"type": "integer", "minimum": 1, "default": 10}, "filter": _OBJECT,
        "min_score": {"type": "number"}}},
    "VerifyRequest": {"type": "object", "additionalProperties": False, "required": ["image_a", "image_b"],
                      "properties": {"image_a": _FILE, "image_b": _FILE}},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# One image file as the whole body (at least one byte; `read_raw` refuses an empty one).
RAW_IMAGE = {"type": "string", "format": "binary", "minLength": 1,
             "description": "the image file's bytes (JPEG, PNG, WebP, BMP, GIF, TIFF, PGM), no base64"}


def openapi_body(*json_models: type[BaseModel], form: str | None = None, raw: bool = False) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON body (one model, or any of several), its multipart twin, and (`raw`) the
    image itself as application/octet-stream."""
    names = [m.__name__ for m in json_models]
    schema = _ref(names[0]) if len(names) == 1 else {"oneOf": [_ref(n) for n in names]}
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if form is not None:
        schema = FORMS[form]
        encoding = {name: {"contentType": "application/json"} for name in _JSON_FIELDS if name in schema["properties"]}
        content["multipart/form-data"] = {"schema": schema, **({"encoding": encoding} if encoding else {})}
    if raw:
        content[RAW] = {"schema": RAW_IMAGE}
    return {"requestBody": {"required": True, "content": content}}


def openapi_raw_body() -> dict[str, Any]:
    """`openapi_extra` of an operation whose only body is the image itself."""
    return {"requestBody": {"required": True, "content": {RAW: {"schema": RAW_IMAGE}}}}
