"""POST /v1/tasks/{task}/embed: images → L2-normalised embeddings."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Response

from service.api.bodies import openapi_body
from service.api.deps import EmbedBody, ReadScope, RuntimeDep, TaskDep
from service.api.routes.responses import BODY, INFERENCE, fast_json, problems
from service.api.schemas import EmbedRequest, EmbedResponse
from service.core import gallery
from service.core.state import model_version_of

router = APIRouter(prefix="/v1/tasks/{task}", tags=["inference"], dependencies=[ReadScope])


@router.post("/embed", response_model=EmbedResponse, responses=problems(*INFERENCE, *BODY),
             openapi_extra=openapi_body(EmbedRequest, form="EmbedRequest", raw=True))
async def embed_images(runtime: RuntimeDep, task: TaskDep, images: EmbedBody) -> Response:
    """Embed one or many images (JSON base64 `images`, multipart files named `images`), or one image sent as
    the body itself (`application/octet-stream`)."""
    info = task.info
    vectors = await gallery.embed(runtime, task, images, info)
    # Serialised straight from the array (an EmbedResponse, as documented): no per-float Python objects.
    return fast_json({"embeddings": vectors.astype(np.float64), "dim": vectors.shape[1],
                      "model_version": model_version_of(info)})
