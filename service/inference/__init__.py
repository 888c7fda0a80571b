"""Inference: one backend interface (embedded ONNX Runtime + dynamic batcher, or Triton), preprocessing
from the model manifest, typed errors. Backends live in `service.inference.embedded` and
`service.inference.triton` (imported on demand: the Triton client pulls in grpc and aiohttp)."""

from service.inference.base import (
    BackendUnavailable,
    InferenceBackend,
    InferenceError,
    InferenceServiceError,
    InvalidImage,
    InvalidInput,
    ModelInfo,
    ModelNotFound,
    Overloaded,
    RepositoryEntry,
    RepositoryError,
    check_pixels,
    load_repository,
)

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
