"""POST /v1/tasks/{task}/search: nearest gallery items to an image or an embedding."""

from __future__ import annotations

from fastapi import APIRouter

from service.api import gallery
from service.api.bodies import openapi_body
from service.api.deps import ReadScope, RuntimeDep, SearchBody, TaskDep
from service.api.routes.responses import BODY, INFERENCE, problems
from service.api.runtime import model_version_of
from service.api.schemas import Hit, SearchRequest, SearchResponse

router = APIRouter(prefix="/v1/tasks/{task}", tags=["gallery"], dependencies=[ReadScope])


@router.post("/search", response_model=SearchResponse, responses=problems(*INFERENCE, *BODY, 409),
             openapi_extra=openapi_body(SearchRequest, form="SearchRequest"))
async def search_gallery(runtime: RuntimeDep, task: TaskDep, query: SearchBody) -> SearchResponse:
    """Top-k items by cosine similarity, with an optional metadata equality filter and minimum score.
    `no_match` is true when no hit reaches the model's calibrated threshold."""
    found = await gallery.search(runtime, task, query)
    return SearchResponse(
        hits=[Hit(id=h.id, score=max(-1.0, min(1.0, h.score)), metadata=h.metadata) for h in found.hits],
        no_match=found.no_match, threshold=found.info.verification_threshold,
        model_version=model_version_of(found.info),
    )
