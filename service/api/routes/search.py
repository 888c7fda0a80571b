"""POST /v1/tasks/{task}/search: nearest gallery items to an image or an embedding."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from service.api.bodies import SearchInput, SearchOptions, openapi_body, read_search
from service.api.deps import ReadScope, RuntimeDep, TaskDep
from service.api.routes.responses import BODY, INFERENCE, fast_json, problems
from service.api.schemas import SearchRequest, SearchResponse
from service.core import gallery
from service.core.state import model_version_of

DEFAULT_K = SearchRequest.model_fields["k"].default
router = APIRouter(prefix="/v1/tasks/{task}", tags=["gallery"], dependencies=[ReadScope])


async def search_query(
    request: Request, runtime: RuntimeDep,
    k: Annotated[int, Query(ge=1, description="number of hits: for an application/octet-stream body; a `k` in a "
                            "JSON or multipart body takes precedence")] = DEFAULT_K,
    min_score: Annotated[float, Query(allow_inf_nan=False, description="drop hits scoring below this cosine "
                                      "similarity: as `k`")] = None,  # type: ignore[assignment] # absent: no minimum
) -> SearchInput:
    """The query: the body (JSON, multipart, or the raw image) with the query string's options, where given."""
    given = request.query_params
    options = SearchOptions(k if "k" in given else None, min_score if "min_score" in given else None)
    return await read_search(request, runtime.settings.limits, options)


@router.post("/search", response_model=SearchResponse, responses=problems(*INFERENCE, *BODY, 409),
             openapi_extra=openapi_body(SearchRequest, form="SearchRequest", raw=True))
async def search_gallery(runtime: RuntimeDep, task: TaskDep,
                         query: Annotated[SearchInput, Depends(search_query)]) -> Response:
    """Top-k items by cosine similarity, with an optional metadata equality filter and minimum score.
    `no_match` is true when no hit reaches the model's calibrated threshold. The query image may be sent as the
    body itself (`application/octet-stream`, options `k` and `min_score` in the query string; a `filter` needs
    a JSON or multipart body)."""
    found = await gallery.search(runtime, task, query)
    # A SearchResponse as documented, serialised by orjson (no model built and validated twice per answer).
    return fast_json({
        "hits": [{"id": h.id, "score": max(-1.0, min(1.0, float(h.score))), "metadata": h.metadata}
                 for h in found.hits],
        "no_match": found.no_match, "threshold": found.info.verification_threshold,
        "model_version": model_version_of(found.info),
    })
