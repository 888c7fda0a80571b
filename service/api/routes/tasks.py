"""GET /v1/tasks, and each task's index: GET /v1/tasks/{task}/index, POST /v1/tasks/{task}/index/rebuild."""

from __future__ import annotations

from fastapi import APIRouter

from service.api import gallery
from service.api.deps import AdminScope, ReadScope, RuntimeDep, TaskDep
from service.api.routes.responses import COMMON, problems
from service.api.runtime import TaskRuntime
from service.api.schemas import IndexInfo, RebuildResponse, TaskInfo, TaskList

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


def task_info(task: TaskRuntime) -> TaskInfo:
    index = task.index
    return TaskInfo(
        task=task.task, model_name=task.info.model_name, model_version=task.model_version, version=task.info.version,
        embedding_dim=task.info.embedding_dim, input_size=task.info.input_size,
        verification_threshold=task.info.verification_threshold,
        index_size=len(index) if index is not None else 0, index_type=index.factory if index is not None else "none",
    )


def index_info(task: TaskRuntime) -> IndexInfo:
    index, rebuild = task.index, task.last_rebuild
    state = "unavailable" if index is None else "rebuilding" if task.rebuilding else "ready"
    return IndexInfo(
        task=task.task, model_version=task.model_version, dim=task.info.embedding_dim,
        type=index.factory if index else "none", size=len(index) if index else 0,
        main_size=index.main_size if index else 0, delta_size=index.delta_size if index else 0,
        tombstones=index.tombstones if index else 0, offset=index.offset if index else 0,
        built_at=index.built_at if index else None, last_rebuild_seconds=rebuild.seconds if rebuild else None,
        state=state, detail=task.problem,
    )


@router.get("", response_model=TaskList, dependencies=[ReadScope], responses=problems(401, 403))
async def list_tasks(runtime: RuntimeDep) -> TaskList:
    """The tasks served: model version, embedding dimension, input size, index size and type."""
    return TaskList(tasks=[task_info(t) for t in runtime.tasks.values()])


@router.get("/{task}/index", response_model=IndexInfo, dependencies=[ReadScope], responses=problems(*COMMON))
async def get_index(task: TaskDep) -> IndexInfo:
    """The task's index: type, size, delta, tombstones, change-log offset, last build."""
    return index_info(task)


@router.post("/{task}/index/rebuild", response_model=RebuildResponse, dependencies=[AdminScope],
             responses=problems(*COMMON, 409))
async def rebuild_index(runtime: RuntimeDep, task: TaskDep) -> RebuildResponse:
    """Rebuild the index from the store now (admin scope); searches keep being answered meanwhile."""
    report = await gallery.rebuild(runtime, task)
    return RebuildResponse(task=task.task, count=report.count, offset=report.offset, replayed=report.replayed,
                           seconds=report.seconds, type=task.index.factory if task.index else "none")
