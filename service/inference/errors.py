"""Inference errors, typed so the HTTP layer maps them to status codes in one place.

Every class carries `http_status`, the status the gateway is meant to answer with; the mapping itself
lives in the API's error handler (TEI's pattern: one error type per cause, one place that maps them).
"""

from __future__ import annotations


class InferenceServiceError(Exception):
    """Base of every error the inference package raises on purpose."""

    http_status = 500


class InvalidInput(InferenceServiceError, ValueError):
    """The caller sent pixels that do not fit the model (shape, dtype, non-finite values)."""

    http_status = 422


class InvalidImage(InvalidInput):
    """Image bytes that cannot be used: empty, not an image, truncated, too many pixels, odd mode.

    `index` is the position of the image in a multi-image request (None for a single image)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message if index is None else f"image {index}: {message}")
        self.index = index


class ModelNotFound(InferenceServiceError, LookupError):
    """No model serves the requested task."""

    http_status = 404


class BackendUnavailable(InferenceServiceError):
    """The backend cannot serve right now (server down, model not ready, timed out, closed).

    `retry_after_s` is how long the caller should wait before retrying (Retry-After header)."""

    http_status = 503

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Overloaded(InferenceServiceError):
    """The request queue is full: shed load instead of queueing without bound (429)."""

    http_status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InferenceError(InferenceServiceError):
    """The model ran and failed, or returned something that breaks the contract."""

    http_status = 500


class RepositoryError(InferenceServiceError, ValueError):
    """The model repository has no usable version for a task, or is ambiguous (the message says which)."""
