"""Gallery items: POST /v1/tasks/{task}/items (upsert one or many), GET and DELETE one by id."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from service.api.bodies import openapi_body, openapi_raw_body, read_put_item
from service.api.deps import EnrollBody, ReadScope, RuntimeDep, TaskDep, WriteScope
from service.api.routes.responses import BODY, COMMON, INFERENCE, problems
from service.api.schemas import ID_PATTERN, MAX_ID_LENGTH, EnrollBatch, EnrollItem, EnrollResponse, ItemOut
from service.core import gallery

router = APIRouter(prefix="/v1/tasks/{task}/items", tags=["gallery"])
ItemId = Annotated[str, Path(description="the item's id (may hold '/')", examples=["s29/s29_0001.pgm"])]
NewItemId = Annotated[str, Path(description="the item's id (may hold '/'), no control characters",
                                examples=["s29/s29_0001.pgm"], max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]


@router.post("", response_model=EnrollResponse, dependencies=[WriteScope], responses=problems(*INFERENCE, *BODY, 409),
             openapi_extra=openapi_body(EnrollItem, EnrollBatch, form="EnrollItem"))
async def enroll_items(runtime: RuntimeDep, task: TaskDep, items: EnrollBody) -> EnrollResponse:
    """Upsert one item (`{"id", "image" | "embedding", "metadata"}`) or many (`{"items": [...]}`).
    The items are searchable as soon as this returns."""
    ids, model_version = await gallery.enroll(runtime, task, items)
    return EnrollResponse(ids=ids, count=len(ids), model_version=model_version)


# `metadata` travels as JSON text in the query string (a JSON object); FastAPI cannot declare such a parameter.
_METADATA_PARAMETER = {"name": "metadata", "in": "query", "required": False,
                       "description": "a JSON object stored with the item (as for POST .../items)",
                       "content": {"application/json": {"schema": {"type": "object"}}}}


@router.put("/{item_id:path}", response_model=EnrollResponse, dependencies=[WriteScope],
            responses=problems(*INFERENCE, 409),
            openapi_extra={**openapi_raw_body(), "parameters": [_METADATA_PARAMETER]})
async def put_item(runtime: RuntimeDep, task: TaskDep, item_id: NewItemId, request: Request) -> EnrollResponse:
    """Upsert one item from the image file sent as the body itself (`application/octet-stream`, no base64),
    `metadata` as a JSON object in the query string. Searchable as soon as this returns."""
    item = await read_put_item(request, item_id)
    ids, model_version = await gallery.enroll(runtime, task, [item])
    return EnrollResponse(ids=ids, count=len(ids), model_version=model_version)


@router.get("/{item_id:path}", response_model=ItemOut, dependencies=[ReadScope], responses=problems(*COMMON))
async def get_item(
    task: TaskDep, item_id: ItemId,
    include_embedding: Annotated[bool, Query(description="also return the stored embedding")] = False,
) -> ItemOut:
    """The stored item: metadata, model version, timestamps (and the embedding if asked)."""
    item = await gallery.get_item(task, item_id)
    return ItemOut(
        id=item.id, metadata=item.metadata, model_version=item.model_version, image_kept=item.image_ref is not None,
        created_at=item.created_at, updated_at=item.updated_at,
        embedding=item.vector.tolist() if include_embedding else None,
    )


@router.delete("/{item_id:path}", status_code=204, dependencies=[WriteScope], responses=problems(*COMMON))
async def delete_item(task: TaskDep, item_id: ItemId) -> Response:
    """Delete the item; it is gone from search results when this returns."""
    await gallery.delete(task, item_id)
    return Response(status_code=204)
