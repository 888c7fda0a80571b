"""Gallery records: the `Item` a store keeps, the `Change` its log replays, and their encodings.

Vectors are stored as raw little-endian float32 bytes; metadata as JSON. Both backends share
the validation here, so a record the SQLite store accepts is one the Redis store accepts.
`ItemPage` is the bulk form a full scan (`iter_pages`) returns: one float32 matrix per page instead of an
`Item` and an array per record, so a rebuild's read does little Python work per record.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

import numpy as np

Op = Literal["upsert", "delete"]

MAX_ID_LENGTH = 512


@dataclass(frozen=True, eq=False, slots=True)
class Item:
    """One gallery record.

    `created_at` / `updated_at` are Unix seconds set by the store on write (values passed in are
    ignored); `image_ref` is the content hash of the kept source image, if one is kept.
    Compare items with `same_item`, not `==` (the vector is an array).
    """

    id: str
    vector: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    model_version: str = ""
    image_ref: str | None = None
    created_at: float | None = None
    updated_at: float | None = None

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.vector.shape[0])


@dataclass(frozen=True, eq=False, slots=True)
class ItemPage:
    """Up to one page of records in bulk form: row i of `vectors` (n, d) float32 belongs to `ids[i]`."""

    ids: list[str]
    vectors: np.ndarray
    metadata: list[dict[str, Any]]
    model_versions: list[str]

    def __len__(self) -> int:
        return len(self.ids)


class MixedDimensions(ValueError):
    """A page holds vectors of different lengths (records of two models): it has no single matrix."""


class Change(NamedTuple):
    """One change-log entry: `item` is the record as written at `offset` (None for deletes)."""

    offset: int
    op: Op
    id: str
    item: Item | None


def same_item(a: Item | None, b: Item | None, *, timestamps: bool = True) -> bool:
    """True when two records hold the same id, vector (bit-exact), metadata and version."""
    if a is None or b is None:
        return a is b
    fields_equal = (
        a.id == b.id
        and a.metadata == b.metadata
        and a.model_version == b.model_version
        and a.image_ref == b.image_ref
        and a.vector.shape == b.vector.shape
        and bool(np.array_equal(a.vector, b.vector))
    )
    if not timestamps:
        return fields_equal
    return fields_equal and a.created_at == b.created_at and a.updated_at == b.updated_at


def validate_item(item: Item) -> Item:
    """Check an item before it is written; return it with a C-contiguous float32 vector.

    Raises ValueError naming the problem (bad id, not 1-D, NaN/Inf, metadata not JSON).
    """
    if not isinstance(item.id, str) or not item.id:
        raise ValueError(f"item id must be a non-empty string, got {item.id!r}")
    if len(item.id) > MAX_ID_LENGTH:
        raise ValueError(f"item id longer than {MAX_ID_LENGTH} characters: {item.id[:40]!r}...")
    vector = np.ascontiguousarray(item.vector, dtype=np.float32)
    if vector.ndim != 1 or vector.shape[0] == 0:
        raise ValueError(f"item {item.id!r}: vector must be 1-D and non-empty, got shape {vector.shape}")
    if not np.isfinite(vector).all():
        raise ValueError(f"item {item.id!r}: vector contains NaN or Inf")
    if not isinstance(item.metadata, dict):
        raise ValueError(f"item {item.id!r}: metadata must be a dict, got {type(item.metadata).__name__}")
    encode_metadata(item.metadata, item_id=item.id)  # raises if not JSON
    return replace(item, vector=vector)


def encode_metadata(metadata: dict[str, Any], *, item_id: str = "?") -> str:
    """Metadata as compact JSON; refuses NaN and non-JSON values with a clear ValueError."""
    try:
        return json.dumps(metadata, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"item {item_id!r}: metadata is not JSON-serialisable: {exc}") from exc


def encode_vector(vector: np.ndarray) -> bytes:
    """float32 little-endian bytes."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_vector(blob: bytes) -> np.ndarray:
    """Inverse of `encode_vector`; returns a writable float32 copy."""
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def decode_metadata(text: str | bytes) -> dict[str, Any]:
    """Stored metadata JSON → dict; the common empty one without calling the parser."""
    return {} if text in ("{}", b"{}") else json.loads(text)


_STACK_CHUNK = 1024


def stack_vectors(ids: list[str], blobs: list[bytes | memoryview]) -> np.ndarray:
    """Encoded vectors → one writable (n, d) float32 matrix: one join and one copy, not n arrays."""
    if not blobs:
        return np.zeros((0, 0), np.float32)
    sizes = set(map(len, blobs))
    if len(sizes) != 1:
        first = len(blobs[0])
        other = next(i for i, b in enumerate(blobs) if len(b) != first)
        raise MixedDimensions(f"records {ids[0]!r} ({first // 4} dims) and {ids[other]!r} "
                              f"({len(blobs[other]) // 4} dims) have different dimensions")
    out = np.empty((len(blobs), sizes.pop() // 4), dtype=np.float32)
    for start in range(0, len(blobs), _STACK_CHUNK):  # ~1 MB per join: each GIL hold stays well under 1 ms
        rows = blobs[start : start + _STACK_CHUNK]
        out[start : start + len(rows)] = np.frombuffer(b"".join(rows), dtype="<f4").reshape(len(rows), -1)
    return out


_HEADER = struct.Struct("<I")


def encode_record(item: Item) -> bytes:
    """One binary blob for key-value backends: u32 header length, JSON header, float32 vector.

    `created_at` is kept out of the blob: a backend keeps it beside, so an overwrite can
    preserve it without decoding the old record.
    """
    header = {
        "metadata": item.metadata,
        "model_version": item.model_version,
        "image_ref": item.image_ref,
        "updated_at": item.updated_at,
    }
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    return _HEADER.pack(len(head)) + head + encode_vector(item.vector)


def decode_record(item_id: str, blob: bytes, created_at: float | None) -> Item:
    """Inverse of `encode_record`."""
    (n,) = _HEADER.unpack_from(blob)
    header = json.loads(blob[_HEADER.size : _HEADER.size + n])
    return Item(
        id=item_id,
        vector=decode_vector(blob[_HEADER.size + n :]),
        metadata=header["metadata"],
        model_version=header["model_version"],
        image_ref=header["image_ref"],
        created_at=created_at,
        updated_at=header["updated_at"],
    )


def page_from_records(ids: list[str], blobs: list[bytes]) -> ItemPage:
    """`ItemPage` from `encode_record` blobs (the key-value backends' format)."""
    vectors, metadata, versions = [], [], []
    for blob in blobs:
        (n,) = _HEADER.unpack_from(blob)
        header = json.loads(blob[_HEADER.size : _HEADER.size + n])
        metadata.append(header["metadata"])
        versions.append(header["model_version"])
        vectors.append(memoryview(blob)[_HEADER.size + n :])
    return ItemPage(ids, stack_vectors(ids, vectors), metadata, versions)


def check_offset(offset: int) -> int:
    """Offsets are non-negative ints (0 means 'before the first change')."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative int, got {offset!r}")
    return offset


def check_limit(limit: int) -> int:
    """Page sizes are positive ints."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    return limit

