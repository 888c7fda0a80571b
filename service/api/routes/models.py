"""A task's model: GET /v1/tasks/{task}/model (what serves, what the repository holds, the upgrade's progress)
and POST /v1/tasks/{task}/model/upgrade (admin: re-embed the gallery with another version, then cut over)."""

from __future__ import annotations

from fastapi import APIRouter, Body

from service.api.deps import AdminScope, ReadScope, RuntimeDep, TaskDep
from service.api.routes.responses import BODY, COMMON, problems
from service.api.schemas import ModelStatus, UpgradeRequest
from service.core import upgrades
from service.core.state import Runtime, TaskRuntime

router = APIRouter(prefix="/v1/tasks/{task}/model", tags=["models"])


def model_status(runtime: Runtime, task: TaskRuntime) -> ModelStatus:
    return ModelStatus(task=task.task, model_name=task.info.model_name, model_version=task.model_version,
                       version=task.info.version, embedding_dim=task.info.embedding_dim,
                       available_versions=upgrades.repository_versions(runtime, task),
                       loaded_versions=sorted(runtime.backend.versions(task.task)),
                       images_kept=runtime.settings.keep_images,
                       upgrade=task.follower.upgrade.to_dict() if task.follower and task.follower.upgrade else None)


@router.get("", response_model=ModelStatus, dependencies=[ReadScope], responses=problems(*COMMON))
async def get_model(runtime: RuntimeDep, task: TaskDep) -> ModelStatus:
    """The model serving the task, the versions the repository holds, and the running or last upgrade."""
    return model_status(runtime, task)


@router.post("/upgrade", response_model=ModelStatus, status_code=202, dependencies=[AdminScope],
             responses=problems(*COMMON, *BODY, 409))
async def upgrade_model(runtime: RuntimeDep, task: TaskDep,
                        request: UpgradeRequest | None = Body(default=None)) -> ModelStatus:
    """Start re-embedding the gallery with another version of the task's model (default: the repository's
    newest), beside the live index; queries and writes keep using the old model until one atomic cut-over.
    Needs the enrolled images (kept by default): 409 names items without one unless `drop_missing`.
    Poll GET /v1/tasks/{task}/model for the progress."""
    request = request or UpgradeRequest()
    await upgrades.start_upgrade(runtime, task, request.version, drop_missing=request.drop_missing)
    return model_status(runtime, task)
