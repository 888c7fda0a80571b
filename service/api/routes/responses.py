"""The error responses each route documents (all are problem+json)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

_DESCRIPTIONS = {
    400: "malformed request body (e.g. a broken multipart form)", 401: "no API key, or an unknown one",
    403: "the key lacks the scope", 404: "unknown task or item",
    409: "conflict (model version, missing threshold, rebuild running)", 413: "request body too large",
    415: "unsupported content type", 422: "invalid input: the detail says what was wrong",
    429: "inference queue full: retry after Retry-After", 503: "backend or index unavailable: retry after Retry-After",
    504: "the request ran past the server's time limit",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these statuses."""
    return {s: {"description": _DESCRIPTIONS[s],
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for s in statuses}


COMMON = (401, 403, 404, 413, 415, 422, 503, 504)
INFERENCE = (*COMMON, 429)
BODY = (400,)  # routes that parse a JSON or multipart body themselves (service/api/bodies.py)


def fast_json(content: Any, status_code: int = 200) -> Response:
    """A JSON response serialised by orjson, numpy arrays included, skipping the response model's validation: for
    hot routes whose content already is the documented model. float32 arrays should be cast to float64 first,
    so the numbers are exactly what `ndarray.tolist()` gave (orjson writes float32 in its shortest form)."""
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status_code,
                    media_type="application/json")
