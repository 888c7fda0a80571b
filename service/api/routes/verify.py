"""POST /v1/tasks/{task}/verify: are two images the same identity, at the model's calibrated threshold?"""

from __future__ import annotations

from fastapi import APIRouter

from service.api.bodies import openapi_body
from service.api.deps import ReadScope, RuntimeDep, TaskDep, VerifyBody
from service.api.routes.responses import BODY, INFERENCE, problems
from service.api.schemas import VerifyRequest, VerifyResponse
from service.core import gallery

router = APIRouter(prefix="/v1/tasks/{task}", tags=["inference"], dependencies=[ReadScope])


@router.post("/verify", response_model=VerifyResponse, responses=problems(*INFERENCE, *BODY, 409),
             openapi_extra=openapi_body(VerifyRequest, form="VerifyRequest"))
async def verify_pair(runtime: RuntimeDep, task: TaskDep, images: VerifyBody) -> VerifyResponse:
    """Cosine similarity of two images and `same` at the threshold from the model's manifest."""
    score, same, threshold, model_version = await gallery.verify(runtime, task, *images)
    return VerifyResponse(score=score, same=same, threshold=threshold, model_version=model_version)
