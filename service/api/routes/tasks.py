"""GET /v1/tasks, and each task's index: GET /v1/tasks/{task}/index, POST /v1/tasks/{task}/index/rebuild."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.deps import AdminScope, ReadScope, RuntimeDep, TaskDep
from service.api.routes.responses import COMMON, problems
from service.api.schemas import IndexInfo, RebuildResponse, TaskInfo, TaskList
from service.core import gallery
from service.core.state import TaskRuntime

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


def task_info(task: TaskRuntime) -> TaskInfo:
    index = task.index
    return TaskInfo(
        task=task.task, model_name=task.info.model_name, model_version=task.model_version, version=task.info.version,
        embedding_dim=task.info.embedding_dim, input_size=task.info.input_size,
        verification_threshold=task.info.verification_threshold,
        index_size=len(index) if index is not None else 0, index_type=index.factory if index is not None else "none",
    )


def index_info(task: TaskRuntime, follower: dict[str, Any] | None = None) -> IndexInfo:
    """The index as the routes report it; `follower` is `IndexFollower.status()` when one runs."""
    index, rebuild, f = task.index, task.last_rebuild, follower or {}
    job = f.get("job") or {}
    busy = task.rebuilding or job.get("state") in ("queued", "running")
    state = "unavailable" if index is None else "rebuilding" if busy else "ready"
    snapshot = f.get("snapshot") or {}
    seconds = job.get("last_build_seconds") or (rebuild.seconds if rebuild else None)
    return IndexInfo(
        task=task.task, model_version=task.model_version, dim=task.info.embedding_dim,
        type=index.factory if index is not None else "none", size=f.get("size", 0), main_size=f.get("main_size", 0),
        delta_size=index.delta_size if index is not None else 0,
        tombstones=index.tombstones if index is not None else 0, offset=index.offset if index is not None else 0,
        built_at=index.built_at if index is not None else None, last_rebuild_seconds=seconds,
        state=state, detail=task.problem or f.get("last_error"), version=snapshot.get("version"),
        search_params=f.get("search_params"), last_build_at=job.get("last_build_at"), job=job or None,
        recall=f.get("recall"), canary_recall=f.get("canary_recall"), canary_k=f.get("canary_k"),
        canary_exact=f.get("canary_exact"), rebuilds=f.get("swaps", 0),
    )


@router.get("", response_model=TaskList, dependencies=[ReadScope], responses=problems(401, 403))
async def list_tasks(runtime: RuntimeDep) -> TaskList:
    """The tasks served: model version, embedding dimension, input size, index size and type."""
    return TaskList(tasks=[task_info(t) for t in runtime.tasks.values()])


@router.get("/{task}/index", response_model=IndexInfo, dependencies=[ReadScope], responses=problems(*COMMON))
async def get_index(task: TaskDep) -> IndexInfo:
    """The task's index: version, type, size, delta, tombstones, change-log offset, last build (time and
    duration), the rebuild job's state, the recall measured at build time and by the live canary."""
    status = await task.follower.status() if task.follower is not None else None
    return index_info(task, status)


@router.post("/{task}/index/rebuild", response_model=RebuildResponse, dependencies=[AdminScope],
             responses=problems(*COMMON, 409))
async def rebuild_index(task: TaskDep) -> RebuildResponse:
    """Queue a background rebuild of the index (admin scope; joins one already queued or running). Searches
    keep being answered from the live index; poll GET /v1/tasks/{task}/index for the job and the new version."""
    job = await gallery.rebuild(task)
    return RebuildResponse(task=task.task, job_id=job.job_id, state=job.state, reason=job.reason,
                           count=len(task.index) if task.index is not None else 0,
                           type=task.index.factory if task.index is not None else "none")
