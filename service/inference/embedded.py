"""The default backend: ONNX Runtime in process, a dynamic batcher in front of each task's model.

Per task, `sessions_per_model` sessions of `threads_per_session` intra-op threads each, one batcher worker
thread per session. On small models several 1-thread sessions beat one many-thread session (measured:
two 1-thread sessions ≈ 1.6× one 2-thread session on 2 cores), so that is the default. `max_delay_ms` is
how long a batch may wait for more requests while every other session is busy (see `batcher`); a lone
request on an idle pool never waits. Needs nothing but the model repository: no server, no configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.inference.base import InferenceBackend, ModelInfo, check_pixels
from service.inference.batcher import DynamicBatcher, Runner
from service.inference.errors import BackendUnavailable, InferenceError
from service.inference.repository import RepositoryEntry, load_repository, version_entry

log = logging.getLogger(__name__)

TaskBatchHook = Callable[[str, int, float], None]  # (task, images in the batch, run seconds)
TaskDepthHook = Callable[[str, int], None]  # (task, images queued)


def make_session(
    onnx_path: Path, threads: int = 1, providers: Sequence[str] = ("CPUExecutionProvider",)
) -> ort.InferenceSession:
    """One ONNX Runtime session with `threads` intra-op threads and no inter-op parallelism."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors surface as exceptions; ORT's warnings are noise here
    return ort.InferenceSession(str(onnx_path), options, providers=list(providers))


def session_runner(session: ort.InferenceSession) -> Runner:
    """pixels [B,3,H,W] → embeddings [B,D] with one session (called from its own worker thread)."""
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name

    def run(pixels: np.ndarray) -> np.ndarray:
        return session.run([output_name], {input_name: pixels})[0]

    return run


def check_session(session: ort.InferenceSession, info: ModelInfo) -> None:
    """The graph takes [B,3,H,W] as the manifest says (a mismatch would fail every request later)."""
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or list(shape[1:]) != list(info.input_shape):
        raise InferenceError(f"{info.model_name}/{info.version}: graph input {shape} does not match the "
                             f"manifest's [B,{','.join(map(str, info.input_shape))}]")


def chunks(pixels: np.ndarray, size: int) -> list[np.ndarray]:
    """Consecutive slices of at most `size` rows."""
    return [pixels[i : i + size] for i in range(0, len(pixels), size)]


class EmbeddedBackend(InferenceBackend):
    """ONNX Runtime sessions in this process; `await start()` loads the repository's models."""

    name = "embedded"

    def __init__(
        self,
        repository: Path | str,
        tasks: Iterable[str] | None = None,
        *,
        sessions_per_model: int = 2,
        threads_per_session: int = 1,
        max_batch: int = 32,
        max_delay_ms: float = 2.0,
        max_queue: int = 1024,
        model_names: Mapping[str, str] | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        on_batch: TaskBatchHook | None = None,
        on_queue_depth: TaskDepthHook | None = None,
    ) -> None:
        if sessions_per_model < 1 or threads_per_session < 0 or max_batch < 1:
            raise ValueError("need sessions_per_model >= 1, threads_per_session >= 0 (0: ORT decides), "
                             "max_batch >= 1")
        self.repository = Path(repository)
        self.tasks = None if tasks is None else tuple(tasks)
        self.sessions_per_model = sessions_per_model
        self.threads_per_session = threads_per_session
        self.max_batch = max_batch
        self.max_delay_ms = max_delay_ms
        self.max_queue = max(max_queue, max_batch)
        self.model_names = dict(model_names or {})
        self.providers = tuple(providers)
        self.on_batch = on_batch
        self.on_queue_depth = on_queue_depth
        self.batchers: dict[str, DynamicBatcher] = {}  # task → the served version's batcher
        self._models: dict[str, ModelInfo] = {}
        self._model_dirs: dict[str, Path] = {}
        self._loaded: dict[str, dict[int, tuple[ModelInfo, DynamicBatcher]]] = {}  # task → version → …

    async def start(self) -> None:
        if self.batchers:
            return
        entries = await asyncio.to_thread(load_repository, self.repository, self.tasks, model_names=self.model_names)
        for task, entry in entries.items():
            self._model_dirs[task] = entry.model_dir
            self._loaded[task] = {entry.version: (ModelInfo.from_manifest(entry.manifest),
                                                  await asyncio.to_thread(self._make_batcher, task, entry))}
            self.serve_version(task, entry.version)
        log.info("embedded backend ready: %s", ", ".join(f"{t}={i.model_name}/{i.version}"
                                                          for t, i in self._models.items()))

    def _make_batcher(self, task: str, entry: RepositoryEntry) -> DynamicBatcher:
        info = ModelInfo.from_manifest(entry.manifest)
        sessions = [make_session(entry.onnx_path, self.threads_per_session, self.providers)
                    for _ in range(self.sessions_per_model)]
        check_session(sessions[0], info)
        on_batch = None if self.on_batch is None else lambda n, s, hook=self.on_batch: hook(task, n, s)
        on_depth = None if self.on_queue_depth is None else lambda d, hook=self.on_queue_depth: hook(task, d)
        return DynamicBatcher(
            [session_runner(s) for s in sessions], max_batch=self.max_batch, max_delay_ms=self.max_delay_ms,
            max_queue=self.max_queue, name=f"embed-{task}", on_batch=on_batch, on_queue_depth=on_depth,
        )

    async def close(self) -> None:
        loaded, self._loaded, self.batchers = self._loaded, {}, {}
        for versions in loaded.values():
            for _, batcher in versions.values():
                await asyncio.to_thread(batcher.close)

    async def health(self) -> bool:
        return bool(self.batchers) and all(b.healthy for b in self.batchers.values())

    def models(self) -> dict[str, ModelInfo]:
        return dict(self._models)

    @property
    def max_batch_size(self) -> int:
        return self.max_batch

    def versions(self, task: str) -> dict[int, ModelInfo]:
        return {version: info for version, (info, _) in self._loaded.get(task, {}).items()}

    async def load_version(self, task: str, version: int | None = None) -> ModelInfo:
        self.model(task)  # ModelNotFound for a task not served
        if version in self._loaded[task]:
            return self._loaded[task][version][0]
        entry = await asyncio.to_thread(version_entry, self._model_dirs[task], version)
        if entry.version not in self._loaded[task]:
            batcher = await asyncio.to_thread(self._make_batcher, task, entry)
            self._loaded[task][entry.version] = (ModelInfo.from_manifest(entry.manifest), batcher)
        return self._loaded[task][entry.version][0]

    def serve_version(self, task: str, version: int) -> None:
        info, batcher = self._loaded[task][version]
        self._models[task], self.batchers[task] = info, batcher

    async def unload_version(self, task: str, version: int) -> None:
        if version == self.model(task).version or version not in self._loaded.get(task, {}):
            return
        _, batcher = self._loaded[task].pop(version)
        await asyncio.to_thread(batcher.close)  # finishes requests already queued on it

    async def embed(self, task: str, pixels: np.ndarray, *, version: int | None = None) -> np.ndarray:
        if not self.batchers:
            raise BackendUnavailable("the embedded backend is not started, or closed")
        info = self.model(task, version)
        pixels = check_pixels(info, pixels)
        batcher = self._loaded[task][info.version][1]
        if len(pixels) == 0:
            return np.zeros((0, info.embedding_dim), dtype=np.float32)
        if len(pixels) <= self.max_batch:
            return await batcher.submit(pixels)  # the common case: no task per chunk
        parts = await asyncio.gather(*(batcher.submit(part) for part in chunks(pixels, self.max_batch)))
        return np.concatenate(parts)
