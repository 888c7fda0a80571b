"""A typed Python client of the UFO retrieval gateway: `UFOClient` (blocking) and `AsyncUFOClient`.

Needs only httpx and pydantic; numpy arrays and PIL images are accepted as images when the caller has them.
Usage and details: docs/client.md.
"""

from ufo_client.client import AsyncUFOClient, UFOClient
from ufo_client.errors import (
    APIError,
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    GatewayTimeout,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    UFOConnectionError,
    UFOError,
    Unauthorized,
    UnexpectedResponse,
    UnsupportedMediaType,
)
from ufo_client.models import (
    Embeddings,
    Enrolled,
    Hit,
    IndexStatus,
    Item,
    ModelStatus,
    Readiness,
    RebuildJob,
    SearchResult,
    Task,
    Verification,
)
from ufo_client.retry import NO_RETRY, RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "APIError", "AsyncUFOClient", "BadRequest", "ClientError", "Conflict", "Embeddings", "Enrolled", "Forbidden",
    "GatewayTimeout", "Hit", "IndexStatus", "InvalidInput", "Item", "ModelStatus", "NO_RETRY", "NotFound",
    "PayloadTooLarge", "Readiness", "RebuildJob", "RetryPolicy", "SearchResult", "ServerError",
    "ServiceUnavailable", "Task", "TooManyRequests", "UFOClient", "UFOConnectionError", "UFOError",
    "Unauthorized", "UnexpectedResponse", "UnsupportedMediaType", "Verification", "__version__",
]
