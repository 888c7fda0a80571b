"""POST /v1/tasks/{task}/embed: images → L2-normalised embeddings."""

from __future__ import annotations

from fastapi import APIRouter

from service.api import gallery
from service.api.bodies import openapi_body
from service.api.deps import EmbedBody, ReadScope, RuntimeDep, TaskDep
from service.api.routes.responses import BODY, INFERENCE, problems
from service.api.runtime import model_version_of
from service.api.schemas import EmbedRequest, EmbedResponse

router = APIRouter(prefix="/v1/tasks/{task}", tags=["inference"], dependencies=[ReadScope])


@router.post("/embed", response_model=EmbedResponse, responses=problems(*INFERENCE, *BODY),
             openapi_extra=openapi_body(EmbedRequest, form="EmbedRequest"))
async def embed_images(runtime: RuntimeDep, task: TaskDep, images: EmbedBody) -> EmbedResponse:
    """Embed one or many images (JSON base64 `images`, or multipart files named `images`)."""
    info = task.info
    vectors = await gallery.embed(runtime, task, images, info)
    return EmbedResponse(embeddings=vectors.tolist(), dim=vectors.shape[1], model_version=model_version_of(info))
