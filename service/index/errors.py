"""Index errors. All are ValueError/RuntimeError subclasses, so the HTTP layer maps them in one place:
DimensionError/ModelVersionError → 422/409, SnapshotError → 500 at startup."""

from __future__ import annotations


class DimensionError(ValueError):
    """Vectors of the wrong shape or dimension, or holding NaN/Inf/zero rows."""


class ModelVersionError(ValueError):
    """Vectors from a model version other than the one the index is bound to."""


class SnapshotError(RuntimeError):
    """A snapshot that is missing, corrupted (checksum mismatch) or of an unknown format."""


class TrainingSizeError(ValueError):
    """Too few vectors to train the index the factory string asks for."""


class IndexUnavailable(RuntimeError):
    """The index engine cannot be reached (a Milvus server down or too slow): the API answers 503 with
    Retry-After and readiness turns false, as for a store outage."""

    http_status = 503

    def __init__(self, detail: str, *, retry_after_s: float = 2.0) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
