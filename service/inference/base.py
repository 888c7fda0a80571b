"""The one interface every inference backend implements (TEI's `backends/` pattern).

A backend turns preprocessed pixels into embeddings for a task: `EmbeddedBackend` runs ONNX Runtime in
process behind a dynamic batcher, `TritonBackend` calls a Triton server. Routes only see this interface,
`ModelInfo` (what the manifest says about the served model) and the typed errors, re-exported here.

Lifecycle: `await backend.start()` … `await backend.close()` (or `async with backend:`). Start and close
are async because the Triton client lives on the event loop; the embedded backend loads its sessions in a
worker thread so the loop stays responsive.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from model_store.manifest import Manifest
from service.inference.errors import (
    BackendUnavailable,
    InferenceError,
    InferenceServiceError,
    InvalidImage,
    InvalidInput,
    ModelNotFound,
    Overloaded,
    RepositoryError,
)
from service.inference.preprocess import DEFAULT_MAX_PIXELS, ImageInput, preprocess_many
from service.inference.repository import RepositoryEntry, load_repository

__all__ = [
    "BackendUnavailable",
    "InferenceBackend",
    "InferenceError",
    "InferenceServiceError",
    "InvalidImage",
    "InvalidInput",
    "ModelInfo",
    "ModelNotFound",
    "Overloaded",
    "RepositoryEntry",
    "RepositoryError",
    "check_pixels",
    "load_repository",
]


@dataclass(frozen=True)
class ModelInfo:
    """What a client needs to know about the model serving a task, straight from its manifest."""

    task: str
    model_name: str
    version: int
    embedding_dim: int
    input_size: tuple[int, int]  # (H, W), resized to with no crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    verification_threshold: float | None
    params: int
    flops: int

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ModelInfo:
        return cls(
            task=manifest.task, model_name=manifest.model_name, version=manifest.version,
            embedding_dim=manifest.embedding_dim, input_size=tuple(manifest.input_size),
            mean=tuple(manifest.mean), std=tuple(manifest.std), interpolation=manifest.interpolation,
            verification_threshold=manifest.verification_threshold, params=manifest.params, flops=manifest.flops,
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image's pixel tensor shape, [3, H, W]."""
        return (3, *self.input_size)


def check_pixels(info: ModelInfo, pixels: np.ndarray) -> np.ndarray:
    """float32 C-contiguous [B,3,H,W] matching the model, or InvalidInput naming what is wrong."""
    if not isinstance(pixels, np.ndarray):
        raise InvalidInput(f"pixels must be a numpy array, got {type(pixels).__name__}")
    if pixels.ndim != 4 or pixels.shape[1:] != info.input_shape:
        raise InvalidInput(f"task {info.task!r} expects pixels [B,{','.join(map(str, info.input_shape))}], "
                           f"got {list(pixels.shape)}")
    if pixels.dtype != np.float32:
        raise InvalidInput(f"pixels must be float32, got {pixels.dtype}")
    if not np.isfinite(pixels).all():
        raise InvalidInput("pixels hold NaN or Inf")
    return np.ascontiguousarray(pixels)


class InferenceBackend(abc.ABC):
    """Embeds preprocessed pixels per task. Implementations: embedded (onnxruntime), triton."""

    name: str = "backend"

    @abc.abstractmethod
    async def start(self) -> None:
        """Load models / connect. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish or fail in-flight work and release resources. Idempotent."""

    @abc.abstractmethod
    async def health(self) -> bool:
        """True when every served model can take requests now. Never raises."""

    @abc.abstractmethod
    def models(self) -> dict[str, ModelInfo]:
        """task → the model serving it."""

    @property
    @abc.abstractmethod
    def max_batch_size(self) -> int:
        """The most images one model run takes; larger `embed` calls are split, never refused."""

    @abc.abstractmethod
    async def embed(self, task: str, pixels: np.ndarray, *, version: int | None = None) -> np.ndarray:
        """float32 pixels [B,3,H,W] → float32 L2-normalised embeddings [B,D], with the served version of
        the task's model or, during a model upgrade, another loaded `version`.

        Raises ModelNotFound, InvalidInput, Overloaded, BackendUnavailable or InferenceError."""

    # -- model upgrades: a second version of a task's model, loaded beside the served one ----------

    @abc.abstractmethod
    def versions(self, task: str) -> dict[int, ModelInfo]:
        """The loaded versions of `task`'s model (the served one included)."""

    @abc.abstractmethod
    async def load_version(self, task: str, version: int | None = None) -> ModelInfo:
        """Make `version` (None: the highest usable one in the repository) of the task's model embeddable
        beside the served one. RepositoryError when it is missing or broken, BackendUnavailable when the
        server cannot load it now."""

    @abc.abstractmethod
    def serve_version(self, task: str, version: int) -> None:
        """Serve a loaded `version` from now on (`models()`, `embed` without a version)."""

    @abc.abstractmethod
    async def unload_version(self, task: str, version: int) -> None:
        """Release a loaded version that is no longer served (a no-op for the served one)."""

    def model(self, task: str, version: int | None = None) -> ModelInfo:
        """The model serving `task` (or its loaded `version`), or ModelNotFound."""
        info = self.models().get(task)
        if info is None:
            raise ModelNotFound(f"no model serves task {task!r}; served: {sorted(self.models())}")
        if version is None or version == info.version:
            return info
        loaded = self.versions(task)
        if version not in loaded:
            raise ModelNotFound(f"version {version} of {info.model_name} is not loaded; loaded: {sorted(loaded)}")
        return loaded[version]

    async def embed_images(
        self,
        task: str,
        images: Sequence[ImageInput],
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        executor: Executor | None = None,
        version: int | None = None,
    ) -> np.ndarray:
        """Decode + preprocess `images` (bytes or decoded arrays) off the event loop, then embed them (with
        the served model, or its loaded `version`: each version preprocesses as its own manifest says)."""
        pixels = await preprocess_many(images, self.model(task, version), max_pixels=max_pixels, executor=executor)
        return await self.embed(task, pixels, version=version)

    async def __aenter__(self) -> InferenceBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
